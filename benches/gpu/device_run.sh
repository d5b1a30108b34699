#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, as run on a lent device machine (an H100/H200 with
# no Rust toolchain): the skillit binary travels built and compressed in .gpu/skillit.xz, Vulkan's
# loader as Debian packages in .gl/ (see the device tool's README). Writes JSON lines to $OUT.
set -uo pipefail
source benches/gpu/setup.sh
nproc | tee -a "$out/gpu.txt"
run() { echo "+ $*"; "$@"; }
{
  run $S bench --preset laptop --device wgpu --warmup 20 --steps 200 --evals 5
  run $S bench --preset paper --device wgpu --warmup 20 --steps 200 --evals 5
  run $S bench --preset laptop --device flex --warmup 5 --steps 50 --evals 3
  run $S bench --preset paper --device flex --warmup 5 --steps 30 --evals 2
  run $S bench --config benches/gpt_neo_125m_shape.toml --device wgpu --warmup 5 --steps 20 --evals 2
  run $S bench --config benches/gpt_neo_125m_ctx128.toml --device wgpu --warmup 3 --steps 20 --evals 2
  run $S bench --config benches/gpt_neo_125m.toml --device wgpu --warmup 3 --steps 20 --evals 2
} 2>&1 | tee "$out/bench.txt"
for jobs in 1 4 8; do
  start=$(date +%s%N)
  $S sweep benches/sweep_throughput.toml --out /tmp/tp-wgpu-$jobs --device wgpu --jobs $jobs > /dev/null 2>"$out/sweep-wgpu-$jobs.err"
  end=$(date +%s%N)
  echo "wgpu jobs=$jobs: $(( (end - start) / 1000000 )) ms for 8 runs" | tee -a "$out/sweeps.txt"
done
start=$(date +%s%N)
$S sweep benches/sweep_throughput.toml --out /tmp/tp-flex-8 --device flex --jobs 8 > /dev/null 2>"$out/sweep-flex-8.err"
end=$(date +%s%N)
echo "flex jobs=8: $(( (end - start) / 1000000 )) ms for 8 runs" | tee -a "$out/sweeps.txt"
cp /tmp/tp-wgpu-1/runs.csv "$out/runs-wgpu-1.csv" 2>/dev/null
cp /tmp/tp-wgpu-8/runs.csv "$out/runs-wgpu-8.csv" 2>/dev/null
cmp /tmp/tp-wgpu-1/metrics.csv /tmp/tp-wgpu-8/metrics.csv && echo "wgpu metrics identical across --jobs" | tee -a "$out/sweeps.txt"
