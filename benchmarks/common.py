"""Shared helpers of the benchmark scripts: the machine's name, its matmul peak and useful-FLOP counts."""

from __future__ import annotations

import time
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (what `lscpu` prints as "Model name")."""
    from likra.model.precision import cpu_model_name

    return cpu_model_name() or "unknown"


def cpu_bf16_flags() -> list[str]:
    """The CPU's bf16 matmul instructions (none: bf16 is emulated, slower than fp32)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(ln for ln in lines if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return [f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile")]


def machine() -> dict:
    """What every benchmark figure is recorded with: the CPU's model name and bf16 flags, the threads, the GPU."""
    out = {"cpu": cpu_name(), "cpu_bf16_flags": cpu_bf16_flags(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def matmul_peak_gflops(
    dtype: torch.dtype,
    device: torch.device,
    size: int = 2048,
    repeats: int = 10,
    layout: str = "a@b",
    warmup: int = 2,
) -> float:
    """Best-of-`repeats` GFLOP/s of a square product: the attainable peak to compare against. `layout`: "a@b"
    (both operands row-major) or "linear" (x @ W.T, as nn.Linear computes it; emulated bf16 kernels can differ
    10x between the two on one CPU)."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    product = (lambda: torch.nn.functional.linear(a, b)) if layout == "linear" else (lambda: a @ b)
    for _ in range(warmup):
        product()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        product()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def body_and_head_params(model) -> tuple[int, int]:
    """(parameters used per token by the transformer body, parameters of the output projection)."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = lm.get_output_embeddings().weight.numel()
    embed = lm.get_input_embeddings().weight.numel()
    lora = sum(p.numel() for n, p in lm.named_parameters() if "lora_" in n)
    total = sum(p.numel() for p in lm.parameters())
    body = total - embed - lora - (0 if lm.config.tie_word_embeddings else head)
    return body, head


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
