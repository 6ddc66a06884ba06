"""How far apart two computations of one value may lie when kernels compute it: one rule for the whole suite.

Kernels differ by CPU, so two paths to the same value agree only as far as their kernels allow:
- fp32 matrix products sum in an order set by the instruction set (AVX2, AVX512, AMX's neighbours in oneDNN) and
  by the shapes (a padded batch, a packed row, one question alone, bitsandbytes' 4-bit gemm against its gemv): a
  forward pass's output moves by up to a few hundred units of fp32's roundoff (u = 2^-24) between two such paths;
  the largest seen, 1.1e-6 relative (~18 u), was a 4-bit base scored two ways on an AMD EPYC with AVX512-BF16;
- bf16 rounds every product's result to 8 significant bits (u = 2^-8), and native instructions, AMX tiles and
  emulation accumulate in different orders: a few units of bf16's roundoff;
- bitsandbytes' CPU backend repacks a 4-bit weight on its first forward where the CPU has AVX512-BF16 or AMX and
  rounds each block's scale to bf16 on the way (2^-8); taken back to the stored layout (double quantization), the
  scales are quantized to 8 bits again: a dequantized weight moves by up to 2^-7 of its block's largest value (so
  of the tensor's; 5.6e-3 measured on an AMD EPYC with AVX512-BF16).
A value that an optimizer step feeds into the next forward pass carries that pass's rounding along: comparisons
after training scale the tolerance with the passes behind the values (`passes`).

Every comparison is normwise: max|got - want| <= rtol * max|want| over the compared values, as a kernel's error is
relative to the size of what it sums, not to each result (a log-likelihood near 0 in a row of -100s is held to the
row's scale). No tolerance here is 0: a test that needs bit-identical values compares one kernel with itself (the
same process, shapes and weights), never two paths.
"""

from __future__ import annotations

import numpy as np
import torch

# Relative (normwise) tolerance of one forward (or forward and backward) pass, per dtype or kind of kernel.
RTOL = {
    "fp32": 2.0**-16,  # 256 u: a few hundred reorderings of fp32 sums
    "bf16": 2.0**-5,  # 8 u of bf16: one rounding of each product's result, in any order of accumulation
    "fp16": 2.0**-8,  # 8 u of fp16
    "nf4": 2.0**-7,  # a 4-bit weight dequantized after the CPU repack (scales to bf16, then to 8 bits again)
}


def kernel_rtol(kind: str = "fp32", passes: int = 1) -> float:
    """The relative tolerance for values computed by `kind` kernels through `passes` dependent passes."""
    if kind not in RTOL:
        raise ValueError(f"unknown kernel kind {kind!r}; one of {', '.join(RTOL)}")
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    return RTOL[kind] * passes


def _flat(values) -> np.ndarray:
    if torch.is_tensor(values):
        return values.detach().double().cpu().numpy().ravel()
    if isinstance(values, (list, tuple)) and values and not np.isscalar(values[0]):
        return np.concatenate([_flat(v) for v in values]) if values else np.zeros(0)
    return np.asarray(values, dtype=np.float64).ravel()


def kernel_difference(got, want) -> tuple[float, float]:
    """(max |got - want|, max |want|) over the values, flattened (arrays, tensors, lists of either, scalars)."""
    a, b = _flat(got), _flat(want)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} != {b.shape}")
    if not len(a):
        return 0.0, 0.0
    if not (np.isfinite(a) == np.isfinite(b)).all() or not (a[~np.isfinite(a)] == b[~np.isfinite(b)]).all():
        return float("inf"), float(np.abs(b[np.isfinite(b)]).max(initial=0.0))
    finite = np.isfinite(a)
    return float(np.abs(a[finite] - b[finite]).max(initial=0.0)), float(np.abs(b[finite]).max(initial=0.0))


def kernel_close(got, want, kind: str = "fp32", passes: int = 1) -> bool:
    """Whether `got` and `want` agree as far as `kind` kernels allow (see the module docstring)."""
    diff, scale = kernel_difference(got, want)
    return diff <= kernel_rtol(kind, passes) * scale


def assert_kernel_close(got, want, kind: str = "fp32", passes: int = 1, what: str = "") -> None:
    """Assert `kernel_close`, saying by how much it missed."""
    diff, scale = kernel_difference(got, want)
    bound = kernel_rtol(kind, passes) * scale
    if not diff <= bound:
        raise AssertionError(
            f"{what + ': ' if what else ''}max |difference| {diff:.3g} > {bound:.3g} "
            f"({kind}, {passes} pass(es): rtol {kernel_rtol(kind, passes):.3g} x max |value| {scale:.3g})"
        )
