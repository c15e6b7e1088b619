"""Read and write Hugging Face model directories, and build Megatron models from them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from megatron_hybrid.hf.mapping import (
    check_hf_state,
    from_hf_disk_format,
    hf_config_from_model_config,
    hf_to_mcore,
    mcore_to_hf,
    to_hf_disk_format,
)
from megatron_hybrid.hf.mapping import model_config_from_hf as _model_config_from_hf
from megatron_hybrid.models.config import HybridModelConfig


def load_hf_config(hf_dir: str | os.PathLike):
    from transformers import AutoConfig

    path = Path(hf_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; pass a directory written by save_pretrained()")
    return AutoConfig.from_pretrained(path, local_files_only=True)


def model_config_from_hf_dir(hf_dir) -> HybridModelConfig:
    return _model_config_from_hf(load_hf_config(hf_dir))


def load_hf_state(hf_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors or .bin directory, under transformers' module names."""
    return from_hf_disk_format(_read_tensors(Path(hf_dir)), load_hf_config(hf_dir).model_type)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    files = sorted(path.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    if files:
        from safetensors.torch import load_file

        for file in files:
            state.update(load_file(file))
        return state
    bins = sorted(path.glob("pytorch_model*.bin"))
    if not bins:
        raise FileNotFoundError(f"{path}: no *.safetensors or pytorch_model*.bin weights")
    for file in bins:
        state.update(torch.load(file, map_location="cpu", weights_only=True))
    return state


def mcore_model_from_hf(hf_dir, dtype: torch.dtype = torch.float32, device="cpu"):
    """A TP=1 Megatron-Core ``GPTModel`` holding the weights of an Olmo 3 / Olmo Hybrid directory.

    Sets up a one-process group when torch.distributed is not initialised. The model is in eval
    mode; ``model(input_ids=ids, position_ids=pos, attention_mask=None)`` gives ``[b, s, vocab]``
    logits.
    """
    from megatron.core import parallel_state

    from megatron_hybrid.compat.distributed import init_distributed
    from megatron_hybrid.models.build import build_model

    cfg = model_config_from_hf_dir(hf_dir)
    hf_state = load_hf_state(hf_dir)
    check_hf_state(hf_state, cfg)  # fail before building anything
    if not parallel_state.model_parallel_is_initialized():
        init_distributed()
    elif parallel_state.get_tensor_model_parallel_world_size() != 1:
        raise ValueError("mcore_model_from_hf builds a TP=1 model; convert to a distributed checkpoint for TP>1")
    tcfg = cfg.transformer_config(
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu_initialization=True,
        perform_initialization=False,
    )
    model = build_model(cfg, tcfg)
    state = {k: v.to(dtype) for k, v in hf_to_mcore(hf_state, cfg).items()}
    # A_log / dt_bias stay fp32 parameters in the model; load_state_dict casts to each param's dtype.
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def save_hf_dir(state: dict[str, torch.Tensor], cfg: HybridModelConfig, out_dir, dtype=None) -> Path:
    """Write an HF directory (config.json + model.safetensors) atomically: nothing half-written."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out directory")
    hf_state = to_hf_disk_format(mcore_to_hf(state, cfg), cfg)
    if dtype is not None:
        hf_state = {k: v.to(dtype) for k, v in hf_state.items()}
    hf_config = hf_config_from_model_config(cfg)
    if dtype is not None:
        hf_config.dtype = str(dtype).removeprefix("torch.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        hf_config.save_pretrained(tmp)
        save_file({k: v.detach().cpu().contiguous() for k, v in hf_state.items()}, tmp / "model.safetensors")
        (tmp / "megatron_hybrid.json").write_text(json.dumps({"source": "megatron_hybrid", "model": cfg.name}))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
