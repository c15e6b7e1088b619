"""Relative RMS difference of the new tree's saved outputs from the base tree's (dqk_ab.py SAVE files)."""

import sys

import torch

a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
for key in a:
    diffs = []
    for x, y in zip(a[key], b[key]):
        x, y = x.double(), y.double()
        diffs.append(f"{((x - y).pow(2).mean() / y.pow(2).mean().clamp_min(1e-30)).sqrt().item():.2e}")
    print(key, diffs)
