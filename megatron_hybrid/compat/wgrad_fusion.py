"""Weight-gradient GEMMs that accumulate straight into Megatron's fp32 ``main_grad``, without apex or TE.

Megatron's local linears fuse the wgrad GEMM with the accumulation into the DDP's fp32 gradient buffer
(``gradient_accumulation_fusion``) only through apex's ``fused_weight_gradient_mlp_cuda`` extension or Transformer
Engine. Without them every weight gradient is a bf16 GEMM, then an fp32 add into ``main_grad`` in the DDP hook: 131 ms
of a 3.7 s step (3.5%) of the 4-GPU 7B hybrid in the session-6 profile (``bench/results/profile/``). torch's
``addmm`` with ``out_dtype`` (CUDA) does the same product with cuBLAS accumulating into the fp32 output (beta = 1),
so this module provides the extension's two functions on top of it and hands them to Megatron.

The trainer turns it on (its ``gradient_accumulation_fusion``: null = when usable); it needs every linear weight to
have a ``main_grad`` (the DDP wrapper's buffer), so a bare model's backward must not use it.
"""

from __future__ import annotations

import functools
import os
import types

import torch

ENV = "MEGATRON_HYBRID_WGRAD_FUSION"


def wgrad_gemm_accum_fp32(total_input: torch.Tensor, grad_output: torch.Tensor, main_grad: torch.Tensor) -> None:
    """main_grad [out, in] (fp32) += grad_output [n, out]^T total_input [n, in] (16-bit), in one cuBLAS GEMM."""
    torch.addmm(main_grad, grad_output.t(), total_input, out_dtype=torch.float32, out=main_grad)


def wgrad_gemm_accum_fp16(total_input: torch.Tensor, grad_output: torch.Tensor, main_grad: torch.Tensor) -> None:
    """main_grad (in the inputs' 16-bit dtype) += grad_output^T total_input."""
    main_grad.addmm_(grad_output.t(), total_input)


# the extension's interface, as Megatron calls it
TORCH_IMPL = types.SimpleNamespace(
    wgrad_gemm_accum_fp32=wgrad_gemm_accum_fp32, wgrad_gemm_accum_fp16=wgrad_gemm_accum_fp16
)


def _torch_has_out_dtype() -> bool:
    return hasattr(torch.ops.aten.addmm, "dtype_out")


@functools.cache  # looked up in every fused backward: a failed import is not cached by Python itself
def apex_extension():
    try:
        import fused_weight_gradient_mlp_cuda  # apex's, when installed

        return fused_weight_gradient_mlp_cuda
    except ImportError:
        return None


def usable() -> bool:
    """CUDA, and apex's extension or a torch with ``addmm(..., out_dtype=)``. MEGATRON_HYBRID_WGRAD_FUSION=0: no."""
    if os.environ.get(ENV, "1") == "0" or not torch.cuda.is_available():
        return False
    return apex_extension() is not None or _torch_has_out_dtype()


def install() -> str | None:
    """Make Megatron's local linears able to fuse the wgrad accumulation; returns which implementation ("apex" or
    "torch") or None when not usable. Idempotent."""
    if not usable():
        return None
    from megatron.core.tensor_parallel import layers

    if apex_extension() is not None:
        return "apex"  # Megatron imported it itself
    layers.fused_weight_gradient_mlp_cuda = TORCH_IMPL
    layers._grad_accum_fusion_available = True
    return "torch"


def accumulate_wgrad(weight: torch.Tensor, total_input: torch.Tensor, grad_output: torch.Tensor):
    """``weight.main_grad += grad_output^T total_input`` in one GEMM (2-D operands), for a fused op that computes a
    Megatron linear's weight gradient itself. Returns what Megatron's linears return then: a placeholder gradient
    that the DDP hook does not add again (``grad_added_to_main_grad``), or None for a weight outside the DDP."""
    impl = apex_extension() or TORCH_IMPL
    main_grad = weight.main_grad
    if main_grad.dtype == torch.float32:
        impl.wgrad_gemm_accum_fp32(total_input, grad_output, main_grad)
    else:
        impl.wgrad_gemm_accum_fp16(total_input, grad_output, main_grad)
    if not hasattr(weight, "grad_added_to_main_grad"):
        return None
    weight.grad_added_to_main_grad = True
    make = torch.zeros if getattr(weight, "zero_out_wgrad", False) else torch.empty
    return make(main_grad.shape, dtype=total_input.dtype, device=main_grad.device)


def weight_grad(weight: torch.Tensor, total_input: torch.Tensor, grad_output: torch.Tensor, fused: bool):
    """A linear's weight gradient ``grad_output^T total_input`` (operands flattened to 2-D): into ``weight.main_grad``
    with ``fused`` (``accumulate_wgrad``'s return value), else as a tensor, as Megatron's linears return it."""
    x2 = total_input.reshape(-1, total_input.shape[-1])
    g2 = grad_output.reshape(-1, grad_output.shape[-1])
    if fused:
        return accumulate_wgrad(weight, x2, g2)
    return torch.matmul(g2.t(), x2)
