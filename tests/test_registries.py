"""A data source and a model family are each one registration: open_data and model specs, the CLI's help
and its errors then know them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from analysis.capture.gates import find_gates
from analysis.cli import main
from analysis.data import SOURCES, DataSource, open_data, register_source, spec_forms
from analysis.errors import DataError, ModelSpecError
from analysis.models.architectures import SqueezeExcite
from analysis.models.pretrained import FAMILIES, Family, NamedWeights, register_family
from analysis.models.spec import build_from_spec, pretrained_weights
from analysis.models.spec import spec_forms as model_forms


class Constant(torch.utils.data.Dataset):
    """`n` images of value label / 10, labels 0..3 in turn."""

    def __init__(self, n: int, size: int, channels: int) -> None:
        self.n, self.size, self.channels = n, size, channels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return torch.full((self.channels, self.size, self.size), (i % 4) / 10), i % 4, i


@pytest.fixture
def constant_source() -> Iterator[None]:
    @register_source("constant", "constant:N")
    def open_constant(spec: str, rest: str, *, split: str | None, image_size: int | None,
                      channels: int | None) -> DataSource:
        return DataSource(spec, Constant(int(rest or 8), image_size or 16, channels or 3), list("abcd"), "constant")

    yield
    del SOURCES["constant"]


def test_a_registered_data_source_opens_by_spec_and_is_listed(constant_source, capsys):
    source = open_data("constant:12", image_size=8, channels=1)
    assert len(source.dataset) == 12 and source.dataset[5][0].shape == (1, 8, 8) and source.dataset[5][1] == 1
    assert "constant:N" in spec_forms()
    with pytest.raises(DataError, match="has no samples"):  # the checks common to every source apply
        open_data("constant:0")
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    assert "constant:N" in capsys.readouterr().out.replace("\n", "").replace(" ", "")


def test_an_unknown_data_spec_lists_the_registered_forms():
    with pytest.raises(DataError) as e:
        open_data("mnist")
    assert all(kind.form in str(e.value) for kind in SOURCES.values()) and len(SOURCES) == 3


class Tiny(nn.Module):
    """One SE block on a 1x1 convolution: its gate is SE_1."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.se = SqueezeExcite(8, reduction=2)
        nn.init.constant_(self.conv.weight, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x)).mean((2, 3))


@pytest.fixture
def toy_family() -> Iterator[None]:
    register_family(Family(
        "toy", "toy:NAME[.TAG]", build=lambda name: Tiny(),
        weights=lambda name, tag: NamedWeights("toy", name, tag or "v1", "nowhere"),
        load=lambda weights: Tiny(value=0.5),
    ))
    yield
    del FAMILIES["toy"]


def test_a_registered_model_family_builds_loads_and_is_listed(toy_family):
    model, checkpoint = build_from_spec("toy:tiny", random_init=True, seed=1)
    assert isinstance(model, Tiny) and checkpoint is None and not model.training
    assert [g.name for g in find_gates(model)] == ["SE_1"]
    assert pretrained_weights("toy:tiny.v2") == NamedWeights("toy", "tiny", "v2", "nowhere")
    loaded, _ = build_from_spec("toy:tiny", pretrained=True)
    assert torch.all(loaded.conv.weight == 0.5)
    assert "toy:NAME[.TAG]" in model_forms()
    with pytest.raises(ModelSpecError, match="needs weights: pass --pretrained, --weights FILE"):
        build_from_spec("toy:tiny")


def test_the_model_help_and_errors_list_every_family(toy_family, capsys):
    with pytest.raises(ModelSpecError) as e:
        build_from_spec("nonsense", random_init=True)
    assert all(f.form in str(e.value) for f in FAMILIES.values())
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "toy:NAME[.TAG]" in capsys.readouterr().out.replace("\n", "").replace(" ", "")
