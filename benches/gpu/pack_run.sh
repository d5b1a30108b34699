#!/usr/bin/env bash
# Issue 24's GPU goals, prepared for a lent device machine (set up as device_run.sh: the binary in
# .gpu/skillit.xz, Vulkan's loader in .gl/): runs·steps per second of one run against packs of R
# runs (`skillit bench --pack R`) for the laptop and paper presets and the base search's model, and
# the packed throughput sweep's wall time against unpacked --jobs. Writes to $OUT; about 8 minutes.
set -uo pipefail
source benches/gpu/setup.sh
run() { echo "+ $*"; timeout 120 "$@"; }
{
  for R in 4 16 64; do
    run $S bench --preset laptop --device wgpu --warmup 10 --steps 50 --evals 1 --pack $R
  done
  for R in 16 64; do
    run $S bench --preset paper --device wgpu --warmup 10 --steps 30 --evals 1 --pack $R
    run $S bench --config benches/base_search_model.toml --device wgpu --warmup 5 --steps 20 --evals 1 --pack $R
  done
  # The CPU side for the ">= 3x the machine's cores" goal: one flex run per core, 16 cores.
  run $S bench --preset laptop --device flex --warmup 5 --steps 50 --evals 1
} 2>&1 | tee "$out/pack_bench.txt"
for pack in 8; do
  start=$(date +%s%N)
  timeout 300 $S sweep benches/sweep_throughput.toml --out /tmp/tp-pack-$pack --device wgpu --jobs 1 --pack $pack > /dev/null 2>"$out/sweep-pack-$pack.err"
  end=$(date +%s%N)
  echo "wgpu jobs=1 pack=$pack: $(( (end - start) / 1000000 )) ms for 8 runs" | tee -a "$out/sweeps.txt"
  cp /tmp/tp-pack-$pack/runs.csv "$out/runs-pack-$pack.csv" 2>/dev/null
done
