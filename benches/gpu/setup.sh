# Sourced by the device scripts here: unpacks Vulkan's loader (.gl/*.deb) and the skillit binary
# (.gpu/skillit.xz) on a lent device machine (the device tool's README), points Vulkan at NVIDIA's
# driver, and records the GPU. Sets S (the binary) and out ($OUT).
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
xz -dc .gpu/skillit.xz > /tmp/skillit && chmod +x /tmp/skillit
S=/tmp/skillit
out=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
