"""Shared helpers of the benchmark scripts: the machine's matmul peak and useful-FLOP counts."""

from __future__ import annotations

import time

import torch


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Best-of-`repeats` GFLOP/s of a square matmul: the attainable peak to compare against."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
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
