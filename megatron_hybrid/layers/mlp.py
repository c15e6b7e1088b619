"""SwiGLU MLPs: Megatron's ``MLP`` with the activation as one fused op, and an optional norm on its output.

Megatron's ``MLP`` already does the SwiGLU (``gated_linear_unit=True``, fc1 = [gate; up]). Without Transformer Engine
or bias fusion it runs it as four torch ops that keep three extra ``[T, ffn]`` tensors for the backward;
``SwiGLUMLP`` calls ``ops.swiglu`` instead (one Triton kernel each way, only the fc1 output kept). ``PostNormMLP``
adds ``post_norm`` so that a stock ``TransformerLayer`` computes ``h + RMSNorm(mlp(h))`` when its
``pre_mlp_layernorm`` is the identity (Olmo's post-norm blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import build_module

from megatron_hybrid import ops


class SwiGLUMLP(MLP):
    def _fused_swiglu(self, per_token_scale) -> bool:
        cfg = self.config
        return (
            per_token_scale is None
            and cfg.gated_linear_unit
            and self.activation_func is F.silu
            and not cfg.use_te_activation_func
            and cfg.activation_func_clamp_value is None
            and cfg.glu_linear_offset == 0.0
        )

    def forward(self, hidden_states, per_token_scale=None, **kwargs):
        if not self._fused_swiglu(per_token_scale):  # a configuration this path does not cover: Megatron's own
            return super().forward(hidden_states, per_token_scale, **kwargs)
        intermediate, bias = self.linear_fc1(hidden_states)
        if bias is not None:
            intermediate = intermediate + bias
        return self.linear_fc2(ops.swiglu(intermediate))


@dataclass
class PostNormMLPSubmodules(MLPSubmodules):
    post_norm: type | object = IdentityOp


class PostNormMLP(SwiGLUMLP):
    def __init__(self, config, submodules: PostNormMLPSubmodules, **kwargs):
        super().__init__(config=config, submodules=submodules, **kwargs)
        self.post_norm = build_module(
            submodules.post_norm, config=config, hidden_size=config.hidden_size, eps=config.layernorm_epsilon
        )

    def forward(self, hidden_states, *args, **kwargs):
        output, bias = super().forward(hidden_states, *args, **kwargs)
        return self.post_norm(output), bias
