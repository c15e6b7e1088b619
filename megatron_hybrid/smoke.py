"""``make smoke``: the embedded default job, end to end on whatever machine this is.

1. builds a corpus from the Python standard library's own source files (present everywhere)
   and tokenizes it byte-level into a Megatron indexed dataset (``runs/smoke/data``);
2. trains a tiny Olmo Hybrid and a tiny Olmo 3 on the same tokens with the same schedule
   (``launch/configs/smoke.yaml``; GPU + bf16 if there is one, else CPU fp32);
3. writes TensorBoard logs, checkpoints and ``compare.png``, and prints where they are.

``--steps N`` shortens it (the test suite runs it that way); each run starts fresh.
"""

from __future__ import annotations

import argparse
import shutil
import sysconfig
import time
from pathlib import Path

ARMS = (("olmo_hybrid", "tiny_hybrid"), ("olmo3", "tiny_olmo3"))


def stdlib_corpus(out_prefix: Path, max_documents: int) -> dict:
    """Byte-level indexed dataset of the stdlib's top-level modules and packages (tests excluded)."""
    from megatron_hybrid.data.prepare import prepare

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if not {"test", "tests", "idlelib", "site-packages"} & set(p.parts))
    return prepare(
        [str(p) for p in files[:max_documents]], str(out_prefix), tokenizer="byte", workers=1, progress=False
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/smoke", help="folder for data, logs, checkpoints and the plot")
    parser.add_argument("--steps", type=int, default=None, help="training steps per arm (default: smoke.yaml's)")
    parser.add_argument("--documents", type=int, default=600, help="stdlib files in the corpus")
    args = parser.parse_args(argv)

    import torch

    from megatron_hybrid import compare
    from megatron_hybrid.compat.distributed import destroy_distributed
    from megatron_hybrid.training.config import load_config
    from megatron_hybrid.training.trainer import train

    out = Path(args.out)
    t0 = time.perf_counter()
    data = out / "data" / "stdlib_bytes"
    if not data.with_suffix(".idx").exists():
        info = stdlib_corpus(data, args.documents)
        print(f"corpus: {info['documents']} stdlib files, {info['tokens']:,} byte tokens -> {data}.bin/.idx")
    gpu = torch.cuda.is_available()
    results = {}
    try:
        for arm, preset in ARMS:
            tb, ckpt = out / "tensorboard" / arm, out / "checkpoints" / arm
            shutil.rmtree(tb, ignore_errors=True)  # a smoke run is always fresh
            shutil.rmtree(ckpt, ignore_errors=True)
            overrides = {
                "model": preset,
                "data_path": [str(data)],
                "tensorboard_dir": str(tb),
                "save": str(ckpt),
                "data_cache_path": str(out / "data" / "cache"),
                "bf16": gpu,
            }
            if args.steps is not None:
                overrides |= {
                    "train_iters": args.steps,
                    "save_interval": max(1, args.steps // 2),
                    "eval_interval": args.steps,
                    "log_interval": max(1, min(10, args.steps // 4)),
                    "lr_warmup_iters": max(1, args.steps // 10),
                }
            cfg = load_config("smoke", overrides)
            print(f"\n== {arm} ({preset}) on {'GPU, bf16' if gpu else 'CPU, fp32'} ==")
            results[arm] = train(cfg)
    finally:
        destroy_distributed()
    png = out / "compare.png"
    eff = compare.compare(
        str(out / "tensorboard" / ARMS[0][0]), str(out / "tensorboard" / ARMS[1][0]), str(png), window=1
    )
    print("\n" + compare.describe(eff))
    print(f"\nsmoke done in {time.perf_counter() - t0:.0f} s")
    print(f"  TensorBoard:  {out / 'tensorboard'}   (make tensorboard LOGDIR={out / 'tensorboard'})")
    print(f"  checkpoints:  {out / 'checkpoints'}")
    print(f"  comparison:   {png}")
    return {"results": results, "efficiency": eff, "png": str(png)}


if __name__ == "__main__":
    main()
