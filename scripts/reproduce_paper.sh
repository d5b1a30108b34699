#!/usr/bin/env bash
# Regenerates every results folder of the paper's synthetic experiments (issue 12), one sweep after
# another, each followed by its report: LEGO and addition continual pre-training, ordered skills,
# fine-tuning, the ablations and the learned graphs, with the from-scratch `paper` preset.
#
#   bash scripts/reproduce_paper.sh [skillit sweep flags, e.g. --jobs 2 --device wgpu]
#
# Every sweep is resumable: killed at any point, the same command continues where it stopped
# (finished runs are kept, unfinished ones resume from their last round). On the 2-core development
# machine the whole set is 195 runs of 6,000 steps, about 17 hours with --jobs 2 (a LEGO run takes
# 10-19 minutes there, an addition run 4). The 10 runs lego_ablations and lego_graphs share with
# lego_pretrain (Skill-It, eta 0.5, the published graph) are copied from it (--reuse), not trained.
set -euo pipefail
cd "$(dirname "$0")/.."
skillit=(cargo run --quiet --)
[ -n "${SKILLIT:-}" ] && skillit=("$SKILLIT")
for name in lego_pretrain addition_pretrain ordered_skills addition_ordered_skills lego_finetune \
    addition_finetune lego_ablations lego_graphs; do
    echo "== $name" >&2
    reuse=()
    case $name in lego_ablations | lego_graphs) reuse=(--reuse results/lego_pretrain) ;; esac
    "${skillit[@]}" sweep "sweeps/$name.toml" --out "results/$name" "${reuse[@]}" "$@"
    "${skillit[@]}" report "results/$name"
done
