"""Model families (timm, torchvision): models and their pretrained weights by name, through the libraries' own
builders and loaders and from their caches.

A family is one registration (`register_family`): the specs `PREFIX:NAME[.TAG]` it answers, how it builds
NAME with its initial weights, which pretrained weights a tag names and how they load; the spec parser
(analysis.models.spec), the CLI's help and its errors read FAMILIES. `timm:NAME.TAG` and
`torchvision:NAME.WEIGHTS` name pretrained weights; a bare NAME means the library's default.
timm fetches a tag with a hub id from the Hugging Face hub into its cache (HF_HOME, HF_HUB_CACHE;
HF_HUB_OFFLINE=1 reads only the cache), any other from its URL into torch.hub's cache
(TORCH_HOME/hub/checkpoints), as torchvision does (torchvision has torch.hub check the sha256 prefix
in the file's name when it downloads; a cached file is read as it is). No code runs while loading: timm
reads safetensors or calls torch.load(weights_only=True); torchvision's builders would not (see
`_torchvision_load`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from safetensors import SafetensorError
from torch import nn

from analysis.errors import ModelSpecError, first_line
from analysis.models.checkpoint import load_failure

HUB = "hf-hub:"  # the prefix of a source on the Hugging Face hub


@dataclass(frozen=True)
class NamedWeights:
    """One library's pretrained weights for one architecture, as meta.json records them."""

    library: str  # timm or torchvision
    name: str  # the architecture
    tag: str  # timm's pretrained tag, or the member of torchvision's weights enum
    source: str  # where the library fetches them from: hf-hub:ORG/NAME or a URL

    @property
    def spec(self) -> str:
        return f"{self.library}:{self.name}.{self.tag}"

    def record(self) -> dict[str, Any]:
        return {"spec": self.spec, **asdict(self)}


@dataclass(frozen=True)
class Family:
    """A library of models, named by specs `prefix:NAME[.TAG]`."""

    prefix: str
    form: str  # how its specs are written, for help texts and errors: "timm:NAME[.TAG]"
    build: Callable[[str], nn.Module]  # NAME -> the module with the library's initial weights
    weights: Callable[[str, str], NamedWeights]  # (NAME, TAG or "" for the default) -> weights; ModelSpecError if none
    load: Callable[[NamedWeights], nn.Module]  # the module holding those weights, read without running code


FAMILIES: dict[str, Family] = {}  # prefix -> family, in registration order


def register_family(family: Family) -> Family:
    """Make `family.prefix:NAME` a model spec (a later registration of the same prefix replaces it)."""
    FAMILIES[family.prefix] = family
    return family


def resolve(library: str, name: str) -> NamedWeights:
    """The weights `library:name` names (NAME.TAG, or NAME for the default); ModelSpecError if none."""
    arch, _, tag = name.partition(".")
    return FAMILIES[library].weights(arch, tag)


def _timm_weights(arch: str, tag: str) -> NamedWeights:
    import timm

    if not timm.is_model(arch):
        raise ModelSpecError(f"timm has no model {arch!r} (timm.list_models() lists them).")
    try:
        cfg = timm.models.get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    except RuntimeError:  # timm's "Invalid pretrained tag"
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        tags = [found.partition(".")[2] for found in timm.list_pretrained(f"{arch}.*")]
        if not tags:
            raise ModelSpecError(f"timm has no pretrained weights for {arch}; pass --weights FILE or --random-init.")
        named = f"timm:{arch}.{tag}" if tag else f"timm:{arch}"
        raise ModelSpecError(f"{named} names no pretrained weights: {arch}'s tags are {', '.join(tags)}.")
    # As timm chooses (_resolve_pretrained_source in timm.models._builder): the hub where the tag has a hub id.
    return NamedWeights("timm", arch, cfg.tag, HUB + cfg.hf_hub_id if cfg.hf_hub_id else cfg.url)


def _torchvision_weights(arch: str, tag: str) -> NamedWeights:
    from torchvision import models

    try:
        enum = models.get_model_weights(arch)
    except ValueError:  # torchvision's "Unknown model"
        known = "torchvision.models.list_models() lists them"
        raise ModelSpecError(f"torchvision has no model {arch!r} ({known}).") from None
    try:
        member = enum[tag or "DEFAULT"]
    except KeyError:
        raise ModelSpecError(
            f"torchvision:{arch}.{tag} names no weights: {enum.__name__} has {', '.join(enum.__members__)}."
        ) from None
    return NamedWeights("torchvision", arch, member.name, member.url)


def load(weights: NamedWeights) -> nn.Module:
    """The model holding `weights`, in eval mode on the CPU, read from its library's cache or fetched
    into it; ModelSpecError saying where it looked when they are neither there nor fetchable."""
    where, wanted, origin = _cache(weights)
    try:
        model = FAMILIES[weights.library].load(weights)
    except OSError as e:  # huggingface_hub's LocalEntryNotFoundError and HfHubHTTPError, torch.hub's URLError
        raise ModelSpecError(
            f"{weights.spec} has no pretrained weights in {where} (looked for {wanted}), and fetching them "
            f"from {origin} failed: {_reason(weights, e)}."
        ) from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as e:  # a cached file, not these weights
        raise ModelSpecError(f"the pretrained weights of {weights.spec} in {where} do not load: {load_failure(e)}; "
                             "delete the cached file to fetch it again.") from None
    return model.eval()


def _timm_build(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


def _timm_load(weights: NamedWeights) -> nn.Module:
    import timm

    return timm.create_model(f"{weights.name}.{weights.tag}", pretrained=True)


def _torchvision_build(name: str) -> nn.Module:
    from torchvision import models

    return models.get_model(name, weights=None)


def _torchvision_load(weights: NamedWeights) -> nn.Module:
    """The model torchvision's builder makes for `weights`, their state dict read with weights_only=True:
    the builders read it with torch.hub.load_state_dict_from_url, whose weights_only is False by default
    (torch 2.14), so a pickle could run code. The SE families' builders (EfficientNet, RegNet,
    MobileNetV3) take only the number of classes from the weights."""
    from torchvision import models

    member = models.get_model_weights(weights.name)[weights.tag]
    model = models.get_model(weights.name, weights=None, num_classes=len(member.meta["categories"]))
    model.load_state_dict(member.get_state_dict(progress=True, check_hash=True, weights_only=True))
    return model


def _cache(weights: NamedWeights) -> tuple[str, str, str]:
    """(the cache the library's loader reads, what it looks for there, where it fetches from), as the
    environment sets them now."""
    if weights.source.startswith(HUB):
        from huggingface_hub import constants

        return f"the Hugging Face cache {constants.HF_HUB_CACHE}", weights.source.removeprefix(HUB), "the hub"
    import torch.hub

    where = f"the torch hub cache {Path(torch.hub.get_dir()) / 'checkpoints'}"
    return where, Path(urlparse(weights.source).path).name, weights.source


def _reason(weights: NamedWeights, error: OSError) -> str:
    """Why fetching failed, in a few words: the offline setting, else the network's own error."""
    if weights.source.startswith(HUB):
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return "HF_HUB_OFFLINE is set"
    cause = getattr(error, "reason", None) or error.__cause__  # URLError keeps the socket's error in .reason
    return first_line(cause if isinstance(cause, BaseException) else error).rstrip(".")


register_family(Family("timm", "timm:NAME[.TAG]", _timm_build, _timm_weights, _timm_load))
register_family(Family("torchvision", "torchvision:NAME[.WEIGHTS]", _torchvision_build, _torchvision_weights,
                       _torchvision_load))
