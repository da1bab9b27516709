"""Data files written by tests: Fashion-MNIST's gzipped IDX format (read by analysis.data.fashion_mnist)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, magic: bytes = b"\x00\x00\x08") -> None:
    """A gzipped IDX file holding `array` as unsigned bytes (`magic`: another type code, to plant a bad file)."""
    header = magic + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
