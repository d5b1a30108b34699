#!/usr/bin/env bash
# A sweep trained on a lent device machine's GPU as packs (issue 24): every run of one pack key
# (the paper's experiments from `bases/chains8p` share one) trained R at a time as one model
# through wgpu, for at most SECONDS, then the sweep folder brought back as device_sweep.sh does.
# Set up as device_run.sh (the binary in .gpu/skillit.xz, Vulkan's loader in .gl/). A pack's
# checkpoints are 20 MB per run of the base's model, more than comes back for a large pack, so
# size R and the sweep for packs that finish within one call. Usage: gpu_sweep.sh SWEEP.toml
# SECONDS PACK
set -uo pipefail
sweep=${1:?sweep file}
limit=${2:-480}
pack=${3:-8}
name=$(basename "$sweep" .toml)
source benches/gpu/setup.sh
start=$(date +%s)
timeout -k 15 "$limit" $S sweep "$sweep" --out "results/$name" --device wgpu --jobs 1 \
  --pack "$pack" > "$out/sweep.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s" >> "$out/sweep.log"
source benches/gpu/collect_sweep.sh
collect_sweep "results/$name" "$out"
