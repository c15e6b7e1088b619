"""Relative RMS difference of the op's input gradients between two trees' SAVE files (stage_time5.py)."""

import json
import sys

import torch

a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
out = {}
for shape in a:
    for n, x, y in zip(["dq", "dk", "dv", "dg", "dbeta"], a[shape], b[shape]):
        x, y = x.double(), y.double()
        out[f"{shape} {n}"] = float(f"{((x - y).norm() / y.norm()).item():.3e}")
print(json.dumps(out))
