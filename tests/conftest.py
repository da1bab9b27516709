"""Shared fixtures. Test models, planted statistics and fakes live in `analysis.testing`, imported like
any module (never `from conftest import ...`)."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits

from analysis.testing.nets import PlantedNet, planted_data

# numpy's and scipy's OpenBLAS on one thread: beside torch's threads, two-thread OpenBLAS made
# scikit-learn's reference fits 30x slower on 2 cores (200 s instead of 7 s for one shipped block).
BLAS_THREADS = threadpool_limits(1, user_api="blas")  # kept for the whole session

@pytest.fixture(scope="session")
def planted() -> tuple[PlantedNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x, y = planted_data(1200)
    return PlantedNet().eval(), x, y
