"""The shipped checkpoints load and still reach the accuracy recorded when they were trained.

Evaluated on the whole Fashion-MNIST test set on the CPU in fp32, the recorded number must come
back to within 0.1 percentage point (room for BLAS summation order and, for the GPU-trained
files, their bf16 evaluation; measured: at most 0.06), so any silent change of the model code fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.models.checkpoint import load_checkpoint
from analysis.data import make_loader, open_data
from analysis.data.fashion_mnist import FASHION_MNIST_DIR
from analysis.models.train import evaluate

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
SHIPPED = sorted(p.parent for p in CHECKPOINTS.glob("**/final.safetensors"))

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs dataset-fashion-mnist")


@pytest.mark.parametrize("folder", SHIPPED, ids=[str(p.relative_to(CHECKPOINTS)) for p in SHIPPED])
def test_shipped_checkpoint_reaches_its_recorded_accuracy(folder):
    model, meta = load_checkpoint(folder)
    accuracy, _ = evaluate(model, make_loader(open_data(meta["test_data"]), 500), torch.device("cpu"))
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=0.001)


def test_the_demo_checkpoint_is_shipped_and_accurate():
    _, meta = load_checkpoint(CHECKPOINTS / "fmnist_se20")
    assert meta["test_accuracy"] >= 0.93
    assert meta["arch"] == "se_resnet20" and meta["arch_args"]["se"] == "se"
