#!/usr/bin/env bash
# Runs one shard of a sweep per Slurm array task: task i of an array of N runs --shard (i+1)/N.
#
#   sbatch --array=0-3 --cpus-per-task=2 scripts/slurm_array.sh sweeps/lego_pretrain.toml results/lego_pretrain
#
# Every task writes its run folders under the same DIR (a shared filesystem); when all tasks are
# done, `skillit collect DIR` rebuilds DIR/metrics.csv and DIR/runs.csv from all of them.
set -euo pipefail
sweep="${1:?usage: slurm_array.sh SWEEP_FILE OUT_DIR [skillit sweep flags]}"
out="${2:?usage: slurm_array.sh SWEEP_FILE OUT_DIR [skillit sweep flags]}"
shift 2
: "${SLURM_ARRAY_TASK_ID:?run this under sbatch --array}"
: "${SLURM_ARRAY_TASK_COUNT:?run this under sbatch --array}"
shard="$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0} + 1))/${SLURM_ARRAY_TASK_COUNT}"
exec "${SKILLIT:-skillit}" sweep "$sweep" --out "$out" --shard "$shard" \
    --jobs "${SLURM_CPUS_PER_TASK:-1}" "$@"
