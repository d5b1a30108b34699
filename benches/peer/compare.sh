#!/usr/bin/env bash
# skillit's training step and evaluation pass on flex next to PyTorch eager's, same model, batch and
# optimizer, same machine, and the ratio (skillit time / PyTorch time: below 1 is faster).
#
#   bash benches/peer/compare.sh            # both presets
#   PRESETS=laptop bash benches/peer/compare.sh
#
# Installs torch into a virtual environment (default ~/.cache/skillit-peer; SKILLIT_PEER_VENV) on
# its first run. flex trains a run on one thread (its matrix products use more only when large:
# RAYON_NUM_THREADS=1 pins them), so the peer runs with 1 thread; its 2-thread figure is printed too.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${SKILLIT_PEER_VENV:-$HOME/.cache/skillit-peer}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch
fi
presets=${PRESETS:-"laptop paper"}
out=$(mktemp -d)
for preset in $presets; do
  RAYON_NUM_THREADS=1 cargo bench --profile dev --bench train_step -- "flex/$preset/" \
    --warm-up-time 2 --measurement-time 6 2>/dev/null | tee "$out/rust-$preset.txt" | grep -E "time:" || true
  for threads in 1 2; do
    "$venv/bin/python" benches/peer/torch_step.py --preset "$preset" --threads "$threads" \
      > "$out/torch-$preset-$threads.json"
  done
done
python3 - "$out" $presets <<'PY'
import json, re, sys
out, presets = sys.argv[1], sys.argv[2:]
unit = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
print(f"{'preset':8} {'what':5} {'skillit flex':>13} {'torch 1 thr':>12} {'ratio':>6} {'torch 2 thr':>12} {'ratio':>6}")
for preset in presets:
    text = open(f"{out}/rust-{preset}.txt").read()
    rust = {}
    for what in ("step", "eval"):
        m = re.search(rf"flex/{preset}/{what}\s+time:\s+\[\S+ \S+ (\S+) (\S+)", text)
        rust[what] = float(m.group(1)) * unit[m.group(2)]
    t1 = json.load(open(f"{out}/torch-{preset}-1.json"))
    t2 = json.load(open(f"{out}/torch-{preset}-2.json"))
    for what in ("step", "eval"):
        a, b, c = rust[what], t1[f"{what}_ms"], t2[f"{what}_ms"]
        print(f"{preset:8} {what:5} {a:10.2f} ms {b:9.2f} ms {a / b:6.2f} {c:9.2f} ms {a / c:6.2f}")
print(f"torch {t1['torch']}")
PY
