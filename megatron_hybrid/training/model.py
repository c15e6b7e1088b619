"""The one place the trainer touches the model API: preset lookup, config, build, counts.

The trainer needs five things from a model: a typed config with overrides, its checks for a
parallel layout, a Megatron ``TransformerConfig``, ``build_model`` for one pipeline stage (and
virtual stage), and analytic parameter/FLOP counts. ``megatron_hybrid.models`` provides them;
keeping the calls here means a change of that API is a change of this file only.
"""

from __future__ import annotations

import dataclasses

import torch

from megatron_hybrid.models import build_model, presets


def model_config(name: str, overrides: dict | None = None):
    """The preset ``name`` with ``overrides`` applied (unknown fields are errors)."""
    cfg = presets.get(name)
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = set(overrides or {}) - names
    if unknown:
        raise ValueError(f"model_overrides: unknown field(s) {sorted(unknown)} for {type(cfg).__name__}")
    return dataclasses.replace(cfg, **(overrides or {}))


def build(cfg, tcfg, pre_process: bool, post_process: bool, vp_stage: int | None = None, backend: str = "local"):
    """One pipeline stage (or virtual stage) of the model, on this rank's device (``backend``: the linears',
    ``layer_specs.linear_modules``)."""
    model = build_model(
        cfg, tcfg, pre_process=pre_process, post_process=post_process, vp_stage=vp_stage, backend=backend
    )
    if torch.cuda.is_available():
        model = model.cuda(torch.cuda.current_device())
    return model


def builder_name() -> str:
    return "megatron_hybrid.models.build_model"


def flops_per_token(cfg, seq_len: int) -> float:
    return float(cfg.flops_per_token(seq_len))


def num_params(cfg) -> int:
    return int(cfg.num_params())


def config_dict(cfg) -> dict:
    """Plain values of the model config, stored in checkpoints to refuse another model's."""
    return cfg.to_dict()
