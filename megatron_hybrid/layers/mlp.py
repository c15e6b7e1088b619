"""SwiGLU MLP with an optional norm on its output (Olmo's post-norm blocks).

Megatron's ``MLP`` already does the SwiGLU (``gated_linear_unit=True``, fc1 = [gate; up]); the
subclass adds ``post_norm`` so that a stock ``TransformerLayer`` computes
``h + RMSNorm(mlp(h))`` when its ``pre_mlp_layernorm`` is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import build_module


@dataclass
class PostNormMLPSubmodules(MLPSubmodules):
    post_norm: type | object = IdentityOp


class PostNormMLP(MLP):
    def __init__(self, config, submodules: PostNormMLPSubmodules, **kwargs):
        super().__init__(config=config, submodules=submodules, **kwargs)
        self.post_norm = build_module(
            submodules.post_norm, config=config, hidden_size=config.hidden_size, eps=config.layernorm_epsilon
        )

    def forward(self, hidden_states, *args, **kwargs):
        output, bias = super().forward(hidden_states, *args, **kwargs)
        return self.post_norm(output), bias
