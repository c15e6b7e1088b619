"""Compare two runs: loss against tokens, and how many fewer tokens one needs to match the other.

    python -m megatron_hybrid.compare runs/tb/olmo_hybrid_7b runs/tb/olmo3_7b --out compare.png

RUN_A / RUN_B are TensorBoard folders written by the trainer (``--tensorboard-dir``). The curves
are ``by_tokens/train/loss`` (or ``--tag``), smoothed with a trailing mean over ``--smooth``
points. Token efficiency is the paper's measure: for the run with the lower final loss, the
first token count at which its smoothed loss reaches the other run's final smoothed loss, as a
fraction of the other run's tokens ("A reaches B's final loss with 35% fewer tokens").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def read_curve(run: str | Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, values) of one scalar from every event file under ``run``, sorted by tokens."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(run).rglob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"{run}: no TensorBoard event files")
    points: dict[int, float] = {}
    for f in files:  # a resumed run writes several files; later ones win on overlaps
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            for ev in acc.Scalars(tag):
                points[int(ev.step)] = float(ev.value)
    if not points:
        raise KeyError(f"{run}: no scalar {tag!r} in its event files")
    steps = np.array(sorted(points))
    return steps.astype(np.float64), np.array([points[s] for s in steps])


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1:
        return values
    out = np.empty_like(values)
    for i in range(len(values)):
        out[i] = values[max(0, i - window + 1) : i + 1].mean()
    return out


def tokens_to_reach(tokens: np.ndarray, loss: np.ndarray, target: float) -> float | None:
    """First token count where ``loss`` <= target, linearly interpolated; None if never."""
    below = np.nonzero(loss <= target)[0]
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(tokens[0])
    t0, t1, l0, l1 = tokens[i - 1], tokens[i], loss[i - 1], loss[i]
    return float(t0 + (t1 - t0) * (l0 - target) / (l0 - l1)) if l0 != l1 else float(t1)


def token_efficiency(a: tuple, b: tuple, names: tuple[str, str]) -> dict:
    """Which run is better at the end, and what fraction of tokens it saves to match the other."""
    (ta, la), (tb, lb) = a, b
    better, worse = (0, 1) if la[-1] <= lb[-1] else (1, 0)
    curves, final_tokens = [(ta, la), (tb, lb)], [ta[-1], tb[-1]]
    target = curves[worse][1][-1]
    reach = tokens_to_reach(*curves[better], target)
    result = {
        "better": names[better],
        "worse": names[worse],
        "target_loss": float(target),
        "final_loss": {names[0]: float(la[-1]), names[1]: float(lb[-1])},
        "tokens_to_reach": reach,
        "worse_tokens": float(final_tokens[worse]),
    }
    result["fewer_tokens_fraction"] = None if reach is None else 1.0 - reach / final_tokens[worse]
    return result


def plot(curves: dict, out: str, tag: str, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on clusters/CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, (tokens, raw, smoothed) in curves.items():
        line = ax.plot(tokens, smoothed, label=name)[0]
        ax.plot(tokens, raw, color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax.set_xlabel("tokens")
    ax.set_ylabel(tag.split("/")[-1])
    ax.set_title(title or f"{tag} vs tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def compare(
    run_a: str,
    run_b: str,
    out: str | None,
    tag: str = "by_tokens/train/loss",
    window: int = 5,
    names: tuple[str, str] | None = None,
) -> dict:
    names = names or (Path(run_a).name, Path(run_b).name)
    curves = {}
    for name, run in zip(names, (run_a, run_b)):
        tokens, loss = read_curve(run, tag)
        curves[name] = (tokens, loss, smooth(loss, window))
    eff = token_efficiency(
        (curves[names[0]][0], curves[names[0]][2]), (curves[names[1]][0], curves[names[1]][2]), names
    )
    if out:
        plot(curves, out, tag)
    return eff


def describe(eff: dict) -> str:
    finals = ", ".join(f"{k} {v:.4f}" for k, v in eff["final_loss"].items())
    if eff["fewer_tokens_fraction"] is None:
        return f"final loss: {finals}; {eff['better']} never reaches {eff['worse']}'s final loss"
    return (
        f"final loss: {finals}\n{eff['better']} reaches {eff['worse']}'s final loss ({eff['target_loss']:.4f}) after "
        f"{eff['tokens_to_reach']:,.0f} tokens vs {eff['worse_tokens']:,.0f}: "
        f"{100 * eff['fewer_tokens_fraction']:.1f}% fewer tokens"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", help="TensorBoard folder of the first run")
    parser.add_argument("run_b", help="TensorBoard folder of the second run")
    parser.add_argument("--out", default="compare.png", help="where to write the plot (PNG)")
    parser.add_argument("--tag", default="by_tokens/train/loss", help="scalar to compare (x axis = its step)")
    parser.add_argument("--smooth", type=int, default=5, help="trailing-mean window, in logged points")
    parser.add_argument("--names", nargs=2, default=None, help="legend names for the two runs")
    args = parser.parse_args(argv)
    eff = compare(args.run_a, args.run_b, args.out, args.tag, args.smooth, tuple(args.names) if args.names else None)
    print(describe(eff))
    print(f"plot: {args.out}")
    return eff


if __name__ == "__main__":
    main()
