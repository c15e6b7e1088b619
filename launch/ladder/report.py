"""The ladder's report: validation loss against tokens, token efficiency, a fit across sizes.

    python -m launch.ladder.report runs/ladder --out bench/results/ladder

Reads each run's TensorBoard events (``by_tokens/val/loss``, ``by_tokens/train/loss`` and
``perf/tokens_per_s``, as ``training/monitor.py`` writes them) under ``RUNS/tensorboard/<size>_<arm>``
and writes to ``--out``:

- ``ladder.json``: environment (card, versions, commit), the plan, every curve, the summary;
- ``ladder.png``: validation loss vs tokens, one panel per size, one line per arm;
- ``ladder.md``: the summary table and the sentences for the README;
- ``throughput.json``: measured tokens/s per size and arm, for ``run.py --throughput``.

Token efficiency of an arm against the transformer: tokens the transformer needs / tokens the arm
needs for the same validation loss, at the worse of the two final losses (linear interpolation
between validation points; see :func:`efficiency`). Above 1: the arm needs fewer tokens.

Fit across sizes, per arm: final loss = b * N^(-alpha) (a line in log-log) over non-embedding
parameters N. With two sizes it passes through both points: a description, not a scaling law.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from megatron_hybrid.compare import read_curve, tokens_to_reach

VAL, TRAIN, TPS = "by_tokens/val/loss", "by_tokens/train/loss", "perf/tokens_per_s"
ARM_ORDER = ["transformer", "hybrid", "gdn", "hybrid_1to1", "hybrid_7to1"]


def efficiency(reference: tuple, arm: tuple) -> dict:
    """How many times fewer tokens ``arm`` needs than ``reference`` (the transformer) for one loss.

    The loss level is the worse of the two final losses, the one both curves reach:
    - the arm ends lower: ratio = reference tokens / tokens the arm needs to reach the reference's
      final loss (the paper's "reaches Olmo 3's loss with 35% fewer tokens" = ratio 1/0.65);
    - the arm ends higher: ratio = tokens the reference needs to reach the arm's final loss / arm
      tokens (< 1: the arm is the less efficient one).
    Both are "tokens the transformer needs / tokens the arm needs"; with equal budgets the first
    case is the only way to measure it when the arm is better (the transformer never gets there).
    Intermediate points of a decaying schedule sit above a run annealed there, so the ratio
    understates the better arm's advantage a little.
    """
    (t_ref, l_ref), (t_arm, l_arm) = (tuple(np.asarray(x, dtype=np.float64) for x in c) for c in (reference, arm))
    if l_arm[-1] <= l_ref[-1]:
        level = float(l_ref[-1])
        arm_tokens, ref_tokens = tokens_to_reach(t_arm, l_arm, level), float(t_ref[-1])
    else:
        level = float(l_arm[-1])
        arm_tokens, ref_tokens = float(t_arm[-1]), tokens_to_reach(t_ref, l_ref, level)
    ratio = ref_tokens / arm_tokens
    return {
        "loss_level": level,
        "transformer_tokens": ref_tokens,
        "arm_tokens": arm_tokens,
        "ratio": ratio,
        "fewer_tokens_fraction": 1.0 - 1.0 / ratio,
        "arm_better": bool(l_arm[-1] <= l_ref[-1]),
    }


def power_fit(params: list[float], losses: list[float]) -> dict | None:
    """loss = b * N^(-alpha) by least squares in log-log; None with fewer than two sizes."""
    if len(params) < 2:
        return None
    slope, intercept = np.polyfit(np.log(params), np.log(losses), 1)
    return {"alpha": float(-slope), "b": float(math.exp(intercept)), "sizes": len(params)}


def non_embedding_params(size: str, arm: str, overrides: dict) -> int:
    from megatron_hybrid.models import presets

    cfg = presets.ladder(size, arm).replace(**overrides)
    return int(cfg.num_params() - 2 * cfg.vocab_size * cfg.d_model - cfg.d_model)


def collect(runs_dir: Path) -> dict:
    """{run name: {size, arm, curves, tokens/s}} for every run with a validation curve."""
    record = json.loads((runs_dir / "plan.json").read_text()) if (runs_dir / "plan.json").exists() else {}
    planned = {f"{r['size']}_{r['arm']}": r for r in record.get("runs", [])}
    names = planned or {p.name: None for p in sorted((runs_dir / "tensorboard").iterdir()) if p.is_dir()}
    vocab = {"vocab_size": record["vocab_size"]} if "vocab_size" in record else {}
    per_size = record.get("model_overrides", {})
    out = {}
    for name in names:
        tb = runs_dir / "tensorboard" / name
        size, arm = (planned[name]["size"], planned[name]["arm"]) if planned else name.split("_", 1)
        try:
            t_val, l_val = read_curve(tb, VAL)
        except (FileNotFoundError, KeyError) as e:
            print(f"skipping {name}: {e}")
            continue
        entry = {"size": size, "arm": arm, "val": {"tokens": t_val.tolist(), "loss": l_val.tolist()}}
        try:
            t_tr, l_tr = read_curve(tb, TRAIN)
            entry["train"] = {"tokens": t_tr.tolist(), "loss": l_tr.tolist()}
            _, tps = read_curve(tb, "by_tokens/" + TPS)
            entry["tokens_per_s"] = float(np.median(tps[1:] if len(tps) > 1 else tps))  # first window: warmup
        except (FileNotFoundError, KeyError):
            pass
        entry["non_embedding_params"] = non_embedding_params(size, arm, vocab | per_size.get(size, {}))
        if planned:
            entry["plan"] = planned[name]
            entry["wall_s"] = planned[name].get("wall_s")  # whole process: startup and validation included
        out[name] = entry
    return out


def summarize(runs: dict) -> dict:
    sizes = sorted(
        {r["size"] for r in runs.values()},
        key=lambda s: min(r["non_embedding_params"] for r in runs.values() if r["size"] == s),
    )
    arms = [a for a in ARM_ORDER if any(r["arm"] == a for r in runs.values())]
    rows, eff = [], {}
    for size in sizes:
        ref = runs.get(f"{size}_transformer")
        for arm in arms:
            run = runs.get(f"{size}_{arm}")
            if run is None:
                continue
            row = {
                "size": size,
                "arm": arm,
                "params (non-emb.)": run["non_embedding_params"],
                "tokens": int(run["val"]["tokens"][-1]),
                "final val loss": run["val"]["loss"][-1],
                "tokens/s": run.get("tokens_per_s", float("nan")),
                "wall s": run.get("wall_s") or float("nan"),
            }
            if ref is not None and arm != "transformer":
                e = efficiency((ref["val"]["tokens"], ref["val"]["loss"]), (run["val"]["tokens"], run["val"]["loss"]))
                eff[f"{size}_{arm}"] = e
                row["token efficiency vs transformer"] = f"{e['ratio']:.2f}x"
            rows.append(row)
    fits = {}
    for arm in arms:
        pts = [(r["non_embedding_params"], r["val"]["loss"][-1]) for r in runs.values() if r["arm"] == arm]
        fit = power_fit([p for p, _ in pts], [loss for _, loss in pts])
        if fit is not None:
            fits[arm] = fit
    return {"sizes": sizes, "arms": arms, "rows": rows, "efficiency": eff, "fits": fits}


def plot(runs: dict, summary: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on clusters/CI
    import matplotlib.pyplot as plt

    sizes = summary["sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), dpi=120, squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for arm in summary["arms"]:
            run = runs.get(f"{size}_{arm}")
            if run is not None:
                ax.plot(run["val"]["tokens"], run["val"]["loss"], marker="o", markersize=3, label=arm)
        ax.set_title(f"ladder {size}")
        ax.set_xlabel("tokens")
        ax.set_ylabel("validation loss (held-out packages)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out / "ladder.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def sentences(summary: dict) -> str:
    lines = []
    for key, e in summary["efficiency"].items():
        size, arm = key.split("_", 1)
        who = f"the {arm} reaches the transformer's" if e["arm_better"] else f"the transformer reaches the {arm}'s"
        saved = (
            f"{100 * e['fewer_tokens_fraction']:.1f}% fewer tokens for the {arm}"
            if e["ratio"] >= 1
            else f"{100 * (1 / e['ratio'] - 1):.1f}% more tokens for the {arm}"
        )
        lines.append(
            f"- {size}: {who} final validation loss {e['loss_level']:.4f}; the transformer needs "
            f"{e['transformer_tokens']:,.0f} tokens for it, the {arm} {e['arm_tokens']:,.0f}: "
            f"{e['ratio']:.2f}x ({saved})"
        )
    for arm, fit in summary["fits"].items():
        lines.append(
            f"- fit, {arm}: final loss = {fit['b']:.3g} * N^{-fit['alpha']:.3f} (N: non-embedding parameters, "
            f"{fit['sizes']} sizes"
            + ("; two points fix it exactly: a description, not a scaling law)" if fit["sizes"] == 2 else ")")
        )
    return "\n".join(lines)


def _formatted(row: dict) -> dict:
    """Table cells: losses to 4 decimals, counts as integers with separators."""
    out = dict(row)
    out["final val loss"] = f"{row['final val loss']:.4f}"
    for key in ("params (non-emb.)", "tokens", "tokens/s", "wall s"):
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            out[key] = f"{value:,.0f}"
    return out


def report(runs_dir: str | Path, out: str | Path) -> dict:
    from bench.report import environment, markdown_table

    runs_dir, out = Path(runs_dir), Path(out)
    runs = collect(runs_dir)
    if not runs:
        raise FileNotFoundError(f"{runs_dir}: no run with a {VAL} curve")
    summary = summarize(runs)
    out.mkdir(parents=True, exist_ok=True)
    png = plot(runs, summary, out)
    env = environment()
    plan = json.loads((runs_dir / "plan.json").read_text()) if (runs_dir / "plan.json").exists() else None
    (out / "ladder.json").write_text(
        json.dumps({"environment": env, "plan": plan, "runs": runs, "summary": summary}, indent=2)
    )
    throughput = {}
    for r in runs.values():
        if "tokens_per_s" in r:
            throughput.setdefault(r["size"], {})[r["arm"]] = round(r["tokens_per_s"])
    (out / "throughput.json").write_text(json.dumps({"card": env["card"], "tokens_per_s": throughput}, indent=2))
    columns = [
        "size",
        "arm",
        "params (non-emb.)",
        "tokens",
        "final val loss",
        "token efficiency vs transformer",
        "tokens/s",
        "wall s",
    ]
    header = "\n".join(f"- {k}: `{v}`" for k, v in env.items())
    text = f"# Ladder: hybrid vs transformer at small scale\n\n{header}\n\n![validation loss](ladder.png)\n\n"
    text += markdown_table([_formatted(row) for row in summary["rows"]], columns) + "\n\n" + sentences(summary) + "\n"
    (out / "ladder.md").write_text(text)
    return {"summary": summary, "png": str(png), "markdown": str(out / "ladder.md")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", default="runs/ladder", help="run.py's --out folder")
    parser.add_argument("--out", default="bench/results/ladder", help="where to write JSON, PNG and Markdown")
    args = parser.parse_args(argv)
    result = report(args.runs, args.out)
    print(Path(result["markdown"]).read_text())
    return result


if __name__ == "__main__":
    main()
