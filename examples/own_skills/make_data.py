#!/usr/bin/env python3
"""Writes data.jsonl: a small skill-labelled task for `skillit train --data` (README "Your own
skills"). Three named skills over the words w0..w39, prompts of different lengths, answers of one
to three words:

  last      "last : w3 w7 w1 ="     -> "w1"         (2..5 words; answer 1 token)
  copy      "copy : w3 w7 ="        -> "w3 w7"      (2..3 words; answer 2..3 tokens)
  reverse   "reverse : w3 w7 w1 ="  -> "w1 w7 w3"   (2..3 words; answer 2..3 tokens)

1,000 training rows and 100 validation rows per skill (`split`), no prompt twice (so no validation
row is trained on); the same file from the same seed. Run it from this folder:

  python3 make_data.py > data.jsonl
"""
import json
import random

rng = random.Random(0)
WORDS = [f"w{i}" for i in range(40)]
seen = set()


def row(skill):
    if skill == "last":
        xs = rng.choices(WORDS, k=rng.randint(2, 5))
        return f"last : {' '.join(xs)} =", xs[-1]
    xs = rng.choices(WORDS, k=rng.randint(2, 3))
    if skill == "copy":
        return f"copy : {' '.join(xs)} =", " ".join(xs)
    return f"reverse : {' '.join(xs)} =", " ".join(reversed(xs))


for split, n in (("train", 1000), ("val", 100)):
    for i in range(3 * n):
        skill = ("last", "copy", "reverse")[i % 3]
        prompt, answer = row(skill)
        while prompt in seen:
            prompt, answer = row(skill)
        seen.add(prompt)
        print(json.dumps({"skill": skill, "prompt": prompt, "answer": answer, "split": split}))
