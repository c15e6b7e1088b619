"""Per-source-line summary of an ncu source page exported with --page source --csv --print-source cuda,sass:
stall samples (share, top stall reasons), instructions, excessive global sectors and shared wavefronts per line.

    python ncu_lines.py src_cuda_sass.csv [--top 15]
"""

import argparse
import collections
import csv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    agg = collections.defaultdict(collections.Counter)
    text = {}
    fn = path = hdr = None
    for r in csv.reader(open(args.csv)):
        if not r:
            continue
        if r[0] == "File Path":
            path = r[1].rsplit("/", 1)[-1]
        elif r[0] == "Function Name":
            fn = r[1]
        elif r[0] == "Line No":
            hdr = r
        elif r[0] and r[2] == "-":  # one source line's totals (its SASS rows follow with an empty line number)
            key = (fn, path, int(r[0]))
            text[key] = r[1].strip()
            for name, val in zip(hdr[4:], r[4:]):
                try:
                    agg[key][name] += float(val.replace(",", ""))
                except ValueError:
                    pass
    total = "Warp Stall Sampling (All Samples)"
    for kernel in sorted({k[0] for k in agg}):
        lines = {k: v for k, v in agg.items() if k[0] == kernel}
        all_samples = sum(v[total] for v in lines.values()) or 1
        gx = sum(v["L2 Theoretical Sectors Global Excessive"] for v in lines.values())
        gs = sum(v["L2 Theoretical Sectors Global"] for v in lines.values())
        print(f"== {kernel}: {all_samples:.0f} stall samples; global sectors {gs:.0f}, excessive {gx:.0f}")
        for key, v in sorted(lines.items(), key=lambda kv: -kv[1][total])[: args.top]:
            stalls = sorted(((n[6:], c) for n, c in v.items() if n.startswith("stall_") and "Not Issued" not in n),
                            key=lambda x: -x[1])[:3]  # fmt: skip
            why = " ".join(f"{n}:{c / max(v[total], 1) * 100:.0f}%" for n, c in stalls if c)
            gx, shx = v["L2 Theoretical Sectors Global Excessive"], v["L1 Wavefronts Shared Excessive"]
            print(f"{v[total] / all_samples * 100:5.1f}%  inst {v['Instructions Executed']:>9.0f}  gx {gx:>8.0f}  "
                  f"shx {shx:>8.0f}  {key[1]}:{key[2]}  [{why}]  {text[key][:90]}")  # fmt: skip


if __name__ == "__main__":
    main()
