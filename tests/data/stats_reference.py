"""Makes tests/data/results_small/metrics.csv and the reference statistics that tests/stats.rs pins.

Run from the repository root: python3 tests/data/stats_reference.py
Needs numpy, scipy and statsmodels (independent implementations of every statistic skillit computes).

The folder holds one (task, setting) = (lego, pretrain) with k = 2 skills evaluated at steps
0, 50, 100, 150, 200, and four methods:
- stratified: seeds 0..4 (the baseline)
- skill_it[eta=0.5]: seeds 0..4
- random: seeds 0..3 (unequal n for Welch; 4 pairs for the paired test)
- curriculum: seeds 0..4, never reaches accuracy 0.95
Each run's accuracy on skill s rises linearly from 0.5 at step 0 to final[s] at step 200;
loss = 0.7 * (1 - accuracy) + 0.01; weight = 0.5 per skill (1/3, 2/3 for skill_it).
"""
import csv
import json

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

STEPS = [0, 50, 100, 150, 200]
# (method, params) -> {seed: (final accuracy of s1, of s2)}
FINAL = {
    ("stratified", ""): {0: (0.90, 0.80), 1: (0.92, 0.84), 2: (0.88, 0.86), 3: (0.96, 0.80), 4: (0.94, 0.90)},
    ("skill_it", "eta=0.5"): {0: (1.00, 0.96), 1: (0.98, 0.98), 2: (1.00, 0.92), 3: (0.96, 1.00), 4: (1.00, 0.94)},
    ("random", ""): {0: (0.90, 0.80), 1: (0.70, 0.60), 2: (0.88, 0.86), 3: (0.80, 0.84)},
    ("curriculum", ""): {0: (0.80, 0.70), 1: (0.86, 0.80), 2: (0.84, 0.76), 3: (0.90, 0.60), 4: (0.88, 0.74)},
}


def acc(final, step):
    return 0.5 + (final - 0.5) * step / STEPS[-1]


def main():
    rows = []
    for (method, params), seeds in FINAL.items():
        for seed, finals in seeds.items():
            run_id = f"{method}{'-' + params if params else ''}-s{seed}"
            for step in STEPS:
                for skill, f in enumerate(finals, start=1):
                    a = round(acc(f, step), 6)
                    w = (1 / 3 if skill == 1 else 2 / 3) if method == "skill_it" else 0.5
                    rows.append([run_id, "lego", "pretrain", method, params, seed, step, skill,
                                 round(0.7 * (1 - a) + 0.01, 6), a, round(w, 6)])
    with open("tests/data/results_small/metrics.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["run_id", "task", "setting", "method", "params", "seed", "step", "skill",
                    "loss", "accuracy", "weight"])
        w.writerows(rows)

    def label(m, p):
        return f"{m}[{p}]" if p else m

    # Per-seed value: mean over skills at the last step.
    values = {label(m, p): {s: np.mean(f) for s, f in seeds.items()} for (m, p), seeds in FINAL.items()}
    base = values["stratified"]
    out = {}
    tested = []
    for name, v in values.items():
        x = np.array(list(v.values()))
        n = len(x)
        sem = stats.sem(x)
        lo, hi = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=sem)
        r = {"n": n, "mean": x.mean(), "sd": x.std(ddof=1), "ci_low": lo, "ci_high": hi,
             "iqm": stats.trim_mean(x, 0.25)}
        curve_auc = []
        for s, f in FINAL[next(k for k in FINAL if label(*k) == name)].items():
            curve = [np.mean([acc(fi, st) for fi in f]) for st in STEPS]
            curve_auc.append(np.trapezoid(curve, STEPS) / (STEPS[-1] - STEPS[0]))
        r["auc"] = float(np.mean(curve_auc))
        if name != "stratified":
            y = np.array(list(base.values()))
            welch = stats.ttest_ind(x, y, equal_var=False)
            common = sorted(set(v) & set(base))
            paired = stats.ttest_rel([v[s] for s in common], [base[s] for s in common])
            u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
            r.update({"welch_t": welch.statistic, "welch_p": welch.pvalue, "paired_p": paired.pvalue,
                      "p_improve": u / (len(x) * len(y))})
            tested.append(name)
        out[name] = r
    holm = multipletests([out[n]["welch_p"] for n in tested], method="holm")[1]
    for n, p in zip(tested, holm):
        out[n]["holm_p"] = p
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
