"""torch's fused AdamW kernel for Megatron's optimizer when neither apex nor Transformer Engine is installed.

Without them Megatron builds ``torch.optim.AdamW`` with no ``fused`` flag, so every step runs the foreach
implementation: about ten passes over the parameters, moments and gradients where the fused kernel makes one. The
trainer's ``fused_adam`` switches the inner torch optimizers' groups to the fused kernel after Megatron built them,
and puts the run's choice back after a checkpoint is loaded (loading restores the saved groups, flag included), so a
run resumes a checkpoint saved with the other setting.

The fused kernel reads Adam's ``step`` on the parameters' device (torch keeps it on the CPU otherwise):
``step_tensor`` places a step value as torch would for the parameter's group, which the checkpoint code uses when it
creates or restores steps.
"""

from __future__ import annotations

import torch


def inner_torch_adam(optimizer) -> list[torch.optim.Adam]:
    """The torch Adam / AdamW instances inside Megatron's (chained, distributed) optimizer (none where Megatron
    picked apex's or TE's FusedAdam)."""
    found = []
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", opt)
        if isinstance(inner, torch.optim.Adam):  # AdamW included
            found.append(inner)
    return found


def uses_fused(optimizer) -> bool:
    return any(group.get("fused") for inner in inner_torch_adam(optimizer) for group in inner.param_groups)


def step_tensor(value: float, param: torch.Tensor, fused: bool) -> torch.Tensor:
    """Adam's step count as torch keeps it: fp32 on the parameter's device for the fused kernel, else on the CPU."""
    if fused:
        return torch.tensor(float(value), dtype=torch.float32, device=param.device)
    return torch.tensor(float(value))


def set_fused(optimizer, fused: bool) -> int:
    """Switch every inner torch Adam(W) to the fused kernel, or back to torch's default implementation (``fused`` and
    ``foreach`` None: what Megatron builds), moving Adam's step counts to where that implementation keeps them; returns
    how many were switched (0 where apex's or TE's FusedAdam is in use: nothing to do)."""
    switched = inner_torch_adam(optimizer)
    for inner in switched:
        for group in [inner.defaults, *inner.param_groups]:
            group["fused"], group["foreach"] = (True, False) if fused else (None, None)
        for param, state in inner.state.items():
            if "step" in state:
                state["step"] = step_tensor(float(state["step"]), param, fused=fused)
    return len(switched)
