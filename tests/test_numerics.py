"""The suite's one rule for comparing kernel-computed values (`numerics`): it accepts what another order of
summation gives and rejects a real change."""

import numpy as np
import pytest
import torch
from numerics import assert_kernel_close, kernel_close, kernel_rtol


def test_another_summation_order_passes_and_a_real_change_fails():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4096, generator=gen)
    forward = x.sum(dim=1)
    backward = x.flip(1).cumsum(dim=1)[:, -1]  # the same sums, in the opposite order
    assert not torch.equal(forward, backward)  # the orders do round differently
    assert_kernel_close(backward, forward)
    changed = forward.clone()
    changed[3] += 1e-3 * forward.abs().max()
    assert not kernel_close(changed, forward)
    with pytest.raises(AssertionError, match="fp32"):
        assert_kernel_close(changed, forward)


def test_bf16_rounding_passes_at_bf16_and_fails_at_fp32():
    values = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    rounded = values.bfloat16().float()
    assert kernel_close(rounded, values, "bf16") and not kernel_close(rounded, values, "fp32")


def test_passes_scale_the_tolerance_and_non_finite_values_must_match():
    assert kernel_rtol("fp32", 3) == 3 * kernel_rtol("fp32")
    assert kernel_close([1.0, -np.inf], [1.0, -np.inf])
    assert not kernel_close([1.0, -np.inf], [1.0, 0.0]) and not kernel_close([np.nan], [1.0])
    with pytest.raises(ValueError):
        kernel_rtol("int8")
