"""Turn a model spec string into a model, and load weights without executing code.

Specs: a checkpoint (`checkpoints/fmnist_se20`, see analysis.models.checkpoint), `se_resnet20` (a project
architecture, see analysis.models.architectures.ARCHITECTURES), or a registered model family's
`timm:seresnet50`, `torchvision:efficientnet_b0` (analysis.models.pretrained.FAMILIES; `spec_forms()`).
A timm or torchvision model's weights come from a local file (`weights=`), from its library's
pretrained weights (`pretrained=`, or a tag: `timm:legacy_seresnet50.in1k`, fetched into and read
from the library's cache, see analysis.models.pretrained), or are random (`random_init=`).
Random-init models are the untrained control's networks (analysis.models.controls): drawn from
`seed`, no zero-initialised BatchNorm, and, once the data is known (`open_model_and_data`),
BatchNorm statistics recomputed on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from analysis.models.checkpoint import apply_weights, is_checkpoint, load_checkpoint, load_state_dict
from analysis.errors import ModelSpecError
from analysis.data import DataSource, open_data
from analysis.data.selection import select
from analysis.models.architectures import ARCHITECTURES, build_model
from analysis.models.controls import recompute_batchnorm, seeded, untrained
from analysis.models.pretrained import FAMILIES, NamedWeights, load, resolve


def spec_forms() -> str:
    """The kinds of model spec, as the CLI's help and the errors list them."""
    return f"a checkpoint file or folder, {', '.join(f.form for f in FAMILIES.values())} or one of {', '.join(ARCHITECTURES)}"


def build_from_spec(
    spec: str,
    *,
    weights: str | Path | None = None,
    random_init: bool = False,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_channels: int | None = None,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, Any] | None]:
    """(model in eval mode, checkpoint metadata or None) for `spec`.

    Other than for a checkpoint, one of `weights`, `pretrained` (see `pretrained_weights`) or
    `random_init` is needed; random weights are drawn from `seed` (see
    analysis.models.controls.untrained). `num_classes` and `in_channels` size the project's own
    architectures (for timm and torchvision models the head size does not matter to the gates, so
    their defaults stay).
    """
    if is_checkpoint(spec):
        if weights is not None or pretrained:
            given = "--pretrained" if pretrained else "--weights"
            raise ModelSpecError(f"{spec} is a checkpoint and carries its weights; drop {given}.")
        return load_checkpoint(spec)
    kind, _, name = spec.partition(":")
    if not (kind in FAMILIES or (not name and kind in ARCHITECTURES)):
        raise ModelSpecError(f"unknown model spec {spec!r}: no checkpoint is there; use {spec_forms()}.")
    if pretrained and kind not in FAMILIES:
        raise ModelSpecError(f"{spec} is a project architecture without pretrained weights; drop --pretrained.")
    named = pretrained_weights(spec, pretrained)
    if named is not None:
        if weights is not None or random_init:
            given = "--pretrained" if pretrained else f"the tag .{name.partition('.')[2]}"
            raise ModelSpecError(
                f"{spec}: {given} loads {kind}'s pretrained weights; drop it or "
                f"{'--weights' if weights is not None else '--random-init'}."
            )
        return load(named), None
    if weights is None and not random_init:
        raise ModelSpecError(
            f"{spec} needs weights: pass {'--pretrained, ' if kind in FAMILIES else ''}--weights FILE, "
            "or --random-init to study an untrained model."
        )
    try:
        with seeded(seed):  # parameters that no reset_parameters() covers are drawn from the seed too
            model = _construct(kind, name, num_classes, in_channels)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ModelSpecError(f"cannot build {spec}: {e}") from None
    if weights is not None:
        apply_weights(model, load_state_dict(weights), str(weights))
        return model.eval(), None
    return untrained(model, seed), None


def open_model(
    spec: str,
    *,
    weights: str | Path | None = None,
    pretrained: bool = False,
    random_init: bool = False,
    num_classes: int | None = None,
    in_channels: int | None = None,
    seed: int = 0,
) -> nn.Module:
    """The model `spec` names, in eval mode: a checkpoint, a project architecture, `timm:NAME[.TAG]` or
    `torchvision:NAME[.WEIGHTS]`, with the weights of `build_from_spec` (which also returns a
    checkpoint's metadata). ModelSpecError or CheckpointError when it cannot be opened."""
    return build_from_spec(spec, weights=weights, random_init=random_init, pretrained=pretrained,
                           num_classes=num_classes, in_channels=in_channels, seed=seed)[0]


def _construct(kind: str, name: str, num_classes: int | None, in_channels: int | None) -> nn.Module:
    """The module a non-checkpoint spec names, with its library's initial weights."""
    if not name and kind in ARCHITECTURES:
        return build_model(kind, num_classes=num_classes or 10, in_channels=in_channels or 3)
    return FAMILIES[kind].build(name)  # build_from_spec checked that the spec names a family


def pretrained_weights(spec: str, pretrained: bool = False) -> NamedWeights | None:
    """The library weights a timm or torchvision `spec` is loaded with, None for others.

    A tag (`timm:NAME.TAG`, `torchvision:NAME.WEIGHTS`) names pretrained weights and implies
    `pretrained`, as timm's create_model reads a tag; a bare NAME with `pretrained` means the
    library's default weights.
    """
    kind, _, name = spec.partition(":")
    if kind in FAMILIES and (pretrained or "." in name):
        return resolve(kind, name)
    return None


def input_shape(model: nn.Module) -> tuple[int, int | None]:
    """(input channels, preferred image size or None) from the first conv and timm's config."""
    channels = next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), 3)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size", (None, None, None))[-1]
    return channels, size


def state_sha256(model: nn.Module) -> str:
    """sha256 over the state dict the model holds: each tensor's name, dtype, shape and bytes, in order.

    Unlike a weights file's hash it also identifies random weights, and the weights a model holds
    after any conversion, so that a run says exactly which numbers made it.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def open_model_and_data(
    model: str, data: str, *, weights: Path | None = None, random_init: bool = False, pretrained: bool = False,
    image_size: int | None = None, seed: int = 0, classes: Sequence[str] | None = None, per_class: int | None = None,
) -> tuple[nn.Module, dict[str, Any] | None, DataSource]:
    """(model, checkpoint metadata or None, data source) with the data shaped for the model.

    A project architecture is sized to the data (classes, channels); other models keep their
    shape and the data is converted to their channels and preferred image size. `classes` and
    `per_class` select samples (analysis.data.selection, drawn with `seed`). Random weights are
    drawn from `seed`, with BatchNorm statistics recomputed on the selected data (as the untrained
    control's).
    """
    if model in ARCHITECTURES:
        source = select(open_data(data, image_size=image_size), classes=classes, per_class=per_class, seed=seed)
        channels = source.dataset[0][0].shape[0]
        net, checkpoint = build_from_spec(
            model, weights=weights, random_init=random_init, pretrained=pretrained, num_classes=source.num_classes,
            in_channels=channels, seed=seed,
        )
    else:
        net, checkpoint = build_from_spec(model, weights=weights, random_init=random_init, pretrained=pretrained,
                                          seed=seed)
        channels, size = input_shape(net)
        source = open_data(data, image_size=image_size or size, channels=channels)
        source = select(source, classes=classes, per_class=per_class, seed=seed)
    if random_init and checkpoint is None and weights is None:  # build_from_spec drew random weights
        recompute_batchnorm(net, source)
    return net, checkpoint, source
