"""The autocast context: None leaves the dtype alone, a known name casts, another name is refused."""

from __future__ import annotations

import pytest
import torch

from analysis.errors import AnalysisError
from analysis.models.precision import autocast


def test_none_keeps_float32_and_bf16_casts_matmuls():
    a = torch.randn(4, 4)
    with autocast("cpu", None):
        assert (a @ a).dtype == torch.float32
    context = autocast(torch.device("cpu"), "bf16")
    for _ in range(2):  # reusable, as collect enters it once per batch
        with context:
            assert (a @ a).dtype == torch.bfloat16
    assert (a @ a).dtype == torch.float32


def test_an_unknown_name_is_an_analysis_error():
    with pytest.raises(AnalysisError, match="amp must be one of bf16, fp16 or None, not 'fp8'"):
        autocast("cpu", "fp8")
