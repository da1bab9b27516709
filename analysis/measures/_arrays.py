"""What every measure reads its inputs with: CPU tensors or NumPy arrays, and a thread pool."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

Array = np.ndarray | torch.Tensor  # CPU tensors and NumPy arrays are both read without a copy
R = TypeVar("R")


def as_numpy(x: Array) -> np.ndarray:
    """NumPy view of a CPU tensor or array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def parallel(fn: Callable[[np.ndarray], R], n: int) -> list[R]:
    """fn over contiguous parts of range(n), on as many threads as torch uses for intra-op work
    (NumPy releases the GIL inside its loops, so this divides the wall time of the big passes)."""
    parts = np.array_split(np.arange(n), max(1, min(torch.get_num_threads(), n)))
    if len(parts) == 1:
        return [fn(parts[0])]
    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(fn, parts))
