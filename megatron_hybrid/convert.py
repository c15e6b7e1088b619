"""Convert between Hugging Face Olmo 3 / Olmo Hybrid directories and Megatron distributed checkpoints.

    python -m megatron_hybrid.convert hf-to-mcore --hf DIR --out CKPT [--tp N --pp M]
    python -m megatron_hybrid.convert mcore-to-hf --ckpt CKPT --out DIR [--dtype bfloat16]

A Megatron distributed checkpoint is layout-free: ``hf-to-mcore`` writes it from one process and
it loads at any TP/PP (``--tp/--pp`` only check that the target layout can hold the model).
The checkpoint uses the trainer's layout (``CKPT/iter_0000000`` + ``latest`` + ``meta.json``
holding the model config), so a run can start from it; ``mcore-to-hf`` accepts a trainer
checkpoint directory or one of its ``iter_*`` folders and writes only complete outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch

from megatron_hybrid.models.config import HybridModelConfig

META = "meta.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hf_to_mcore(hf_dir, out_dir, tp: int = 1, pp: int = 1) -> Path:
    """Write the HF model as a distributed checkpoint ``out_dir/iter_0000000`` (+ ``latest``)."""
    from megatron.core import dist_checkpointing

    from megatron_hybrid.hf.io import mcore_model_from_hf, model_config_from_hf_dir

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose a new directory")
    cfg = model_config_from_hf_dir(hf_dir)
    cfg.validate(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)  # before loading weights
    model = mcore_model_from_hf(hf_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "iter_0000000.tmp"
    tmp.mkdir()
    try:
        dist_checkpointing.save({"model0": model.sharded_state_dict()}, str(tmp))
        meta = {
            "model_config": cfg.to_dict(),
            "layout": {"tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1},
            "step": 0,
            "weights_only": True,
            "source": str(Path(hf_dir).resolve()),
            "intended_layout": {"tensor_model_parallel_size": tp, "pipeline_model_parallel_size": pp},
        }
        (tmp / META).write_text(json.dumps(meta, indent=2))
        os.replace(tmp, out / "iter_0000000")
        (out / "latest").write_text("iter_0000000")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "iter_0000000"


def resolve_checkpoint(ckpt) -> Path:
    """A trainer checkpoint directory (follows ``latest``) or one ``iter_*`` folder."""
    path = Path(ckpt)
    if (path / "latest").is_file():
        path = path / (path / "latest").read_text().strip()
    if not (path / META).is_file():
        raise FileNotFoundError(f"{path}: no {META}; pass a checkpoint directory written by the trainer or hf-to-mcore")
    return path


def load_mcore_state(ckpt) -> tuple[HybridModelConfig, dict[str, torch.Tensor]]:
    """The model config and TP=1/PP=1 model tensors of a distributed checkpoint (one process)."""
    from megatron.core import dist_checkpointing, parallel_state

    from megatron_hybrid.compat.distributed import init_distributed
    from megatron_hybrid.models.build import build_model

    path = resolve_checkpoint(ckpt)
    cfg = HybridModelConfig.from_dict(json.loads((path / META).read_text())["model_config"])
    if not parallel_state.model_parallel_is_initialized():
        init_distributed()
    tcfg = cfg.transformer_config(use_cpu_initialization=True, perform_initialization=False)
    model = build_model(cfg, tcfg)
    loaded = dist_checkpointing.load({"model0": model.sharded_state_dict()}, str(path))
    model.load_state_dict(loaded["model0"])
    return cfg, {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


def mcore_to_hf(ckpt, out_dir, dtype: torch.dtype | None = None) -> Path:
    from megatron_hybrid.hf.io import save_hf_dir

    cfg, state = load_mcore_state(ckpt)
    return save_hf_dir(state, cfg, out_dir, dtype=dtype)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m megatron_hybrid.convert", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    to_mcore = sub.add_parser("hf-to-mcore", help="HF directory -> Megatron distributed checkpoint")
    to_mcore.add_argument("--hf", required=True, help="directory with config.json and *.safetensors")
    to_mcore.add_argument("--out", required=True, help="new checkpoint directory")
    to_mcore.add_argument("--tp", type=int, default=1, help="tensor-parallel size to check the model against")
    to_mcore.add_argument("--pp", type=int, default=1, help="pipeline-parallel size to check the model against")
    to_hf = sub.add_parser("mcore-to-hf", help="Megatron distributed checkpoint -> HF directory")
    to_hf.add_argument("--ckpt", required=True, help="checkpoint directory (follows `latest`) or an iter_* folder")
    to_hf.add_argument("--out", required=True, help="new HF directory")
    to_hf.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast weights (default: as stored)")
    args = parser.parse_args(argv)
    if args.command == "hf-to-mcore":
        print(f"wrote {hf_to_mcore(args.hf, args.out, args.tp, args.pp)}")
    else:
        print(f"wrote {mcore_to_hf(args.ckpt, args.out, DTYPES.get(args.dtype))}")


if __name__ == "__main__":
    main()
