#!/usr/bin/env bash
# One lent device machine call (an H100/H200 with 16 cores, no Rust toolchain) put to two uses at
# once: a resumable paper-preset sweep on its CPU cores (flex, one run per core) for a fixed time,
# and on its GPU the GPT-Neo-125M step timings (docs/performance.md) and then issue 4's depth run.
# The binary travels built and compressed in .gpu/skillit.xz, Vulkan's loader as Debian packages in
# .gl/ (the device tool's README). Usage: device_sweep.sh SWEEP.toml SECONDS JOBS
# What comes back in $OUT: the sweep folder as parts of one tar.gz (finished runs: manifest and
# metrics; unfinished ones: their checkpoint too, while it fits), the logs, the GPU's results.
set -uo pipefail
sweep=${1:?sweep file}
limit=${2:-480}
jobs=${3:-15}
name=$(basename "$sweep" .toml)
out=${OUT:-/tmp/out}
mkdir -p "$out"
xz -dc .gpu/skillit.xz > /tmp/skillit && chmod +x /tmp/skillit
S=/tmp/skillit
start=$(date +%s)
{ nproc; lscpu | grep 'Model name'; } > "$out/machine.txt"
export RAYON_NUM_THREADS=1
timeout -k 15 "$limit" $S sweep "$sweep" --out "results/$name" --jobs "$jobs" \
  > "$out/sweep.log" 2>&1 &
sweep_pid=$!
(
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  run() { echo "+ $*"; "$@"; }
  run timeout 150 $S bench --config benches/gpt_neo_125m_ctx128.toml --device wgpu --warmup 3 --steps 10 --evals 2
  run timeout 120 $S bench --config benches/gpt_neo_125m.toml --device wgpu --warmup 3 --steps 10 --evals 2
  left=$(( limit - ($(date +%s) - start) - 5 ))
  echo "+ depth run, $left s left"
  [ "$left" -gt 60 ] && timeout -k 10 "$left" $S train --config benches/gpu/depth_l4_k3.toml --device wgpu \
    --method stratified --out /tmp/depth
  cp /tmp/depth/metrics.csv "$out/depth_metrics.csv"
  cp /tmp/depth/manifest.json "$out/depth_manifest.json" 2>/dev/null
) > "$out/gpu.log" 2>&1 &
gpu_pid=$!
wait $sweep_pid
wait $gpu_pid
echo "done after $(( $(date +%s) - start )) s" >> "$out/sweep.log"
source benches/gpu/collect_sweep.sh
collect_sweep "results/$name" "$out"
