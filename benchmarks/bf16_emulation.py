"""bf16 numerics at fp32 speed on a CPU without bf16 instructions, to measure what bf16 does to accuracy there.

On such a CPU torch runs a bf16 matrix product emulated, 100-150x slower than fp32 (`bench_matmul.py`), so a bf16
curve would take many hours. A native bf16 GEMM (AVX512-BF16, AMX, a GPU's tensor cores) multiplies bf16 inputs
exactly and accumulates in fp32; the product of two bf16 numbers is exact in fp32. So inside `fast_bf16()` every
matrix product (linear, matmul, bmm, mm, addmm, baddbmm, scaled_dot_product_attention) whose operands are bf16,
or that CPU autocast would run in bf16, is computed as fp32 on the operands rounded to bf16, and its result rounded
to bf16: the numerics of a native bf16 kernel up to the order of summation (the same kind of difference as
between two CPUs' kernels). Everything else (norms, activations, softmax, the optimizer) runs as it would in bf16.
Gradients flow through the casts, so training under autocast is emulated too.

    python benchmarks/bf16_emulation.py curve --dtype bf16 --out runs/demo-bf16     # any likra command line

A measurement tool, not a likra option: on hardware with bf16 instructions run `likra curve --dtype bf16`."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

BF16 = torch.bfloat16
GEMMS = {
    F.linear,
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.bmm,
    torch.Tensor.bmm,
    torch.mm,
    torch.Tensor.mm,
    torch.addmm,
    torch.baddbmm,
    F.scaled_dot_product_attention,
}


def _autocast_bf16() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == BF16


def _as_bf16_fp32(x):
    """A floating tensor rounded to bf16 and held in fp32 (exact); anything else unchanged."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.to(BF16).float()
    return x


class FastBF16(TorchFunctionMode):
    """See the module's docstring. `calls` counts the products it computed this way."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in GEMMS:
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
            floating = [t for t in tensors if t.is_floating_point()]
            if floating and all(t.device.type == "cpu" for t in tensors):
                if any(t.dtype == BF16 for t in floating) or _autocast_bf16():
                    self.calls += 1
                    args = tuple(_as_bf16_fp32(a) for a in args)
                    kwargs = {k: _as_bf16_fp32(v) for k, v in kwargs.items()}
                    with torch.autocast("cpu", enabled=False):
                        out = func(*args, **kwargs)
                    return out.to(BF16)
        return func(*args, **kwargs)


@contextmanager
def fast_bf16():
    mode = FastBF16()
    with mode:
        yield mode


def main(argv: list[str] | None = None) -> int:
    from likra.cli import main as likra_main

    with fast_bf16():
        return likra_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
