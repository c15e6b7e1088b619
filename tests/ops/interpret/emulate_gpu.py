"""Make the Triton interpreter round like an H100 (a context manager; not a test module).

The stock interpreter (Triton 3.7) runs ``tl.dot`` as a numpy matmul of the stored bits: bf16 dots come out as
garbage (bf16 is held as uint16), fp32 dots are exact (no tf32), and fp32 -> bf16 casts truncate. Inside
``gpu_roundings()``:
- bf16 operands are widened exactly; products are exact and accumulate in fp32 (as the tensor cores do),
- fp32 operands of a dot with the default input precision (tf32) lose their low 13 mantissa bits: truncation, which is
  what the GPU's tf32 path reproduced here (CPU model vs H100, g = 0 case: o 4.49e-3 vs 4.5e-3, dk 5.71e-3 vs 5.7e-3,
  dv 4.04e-3 vs 4.0e-3; rounding to nearest gave 4.26e-3, 4.99e-3, 3.71e-3),
- fp32 -> bf16 casts round to nearest even (``.to(tl.bfloat16)`` and stores into bf16 tensors on the GPU).
With this, the bf16 kernels run under TRITON_INTERPRET=1 and their error against fp64 models the GPU's.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import triton.language as tl
from triton.runtime import interpreter as _interp


def _widen(x: np.ndarray, dt) -> np.ndarray:
    if dt == tl.bfloat16:
        return (x.astype(np.uint32) << 16).view(np.float32)
    return x.astype(np.float32)


def _tf32(x: np.ndarray, mode: str) -> np.ndarray:
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    if mode == "rn":
        b = b + np.uint32(0x1000)
    return (b & np.uint32(0xFFFFE000)).view(np.float32)


@contextlib.contextmanager
def gpu_roundings(tf32: str = "trunc"):
    """tf32: 'trunc' (as the H100 numbers say), 'rn' (round to nearest), or 'off' (exact fp32 products)."""
    B = _interp.InterpreterBuilder
    old_dot, old_cast = B.create_dot, B.cast_impl

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        da, db = a.dtype.scalar, b.dtype.scalar
        x, y = _widen(a.data, da), _widen(b.data, db)
        if tf32 != "off" and "IEEE" not in str(input_precision).upper() and da == tl.float32 and db == tl.float32:
            x, y = _tf32(x, tf32), _tf32(y, tf32)
        out = np.matmul(x.astype(np.float64), y.astype(np.float64)).astype(np.float32) + d.data
        return _interp.TensorHandle(out.astype(d.data.dtype), d.dtype.scalar)

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            t = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16)
            return _interp.TensorHandle(t.view(torch.int16).numpy().view(np.uint16), dst_type.scalar)
        return old_cast(self, src, dst_type)

    B.create_dot, B.cast_impl = create_dot, cast_impl
    try:
        yield
    finally:
        B.create_dot, B.cast_impl = old_dot, old_cast
