"""Pretrained weights by name load through timm's and torchvision's own loaders, offline, from caches
planted in the layout those loaders read; nothing is downloaded (the hub is offline, torch.hub's
urlopen fails as it does without a network)."""

from __future__ import annotations

import socket
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from analysis import load_run
from analysis.cli import main
from analysis.errors import ModelSpecError
from analysis.files import sha256
from analysis.models.spec import build_from_spec, pretrained_weights, state_sha256
from analysis.runs.matching import open_for_run
from analysis.testing.runs import cli_error

timm = pytest.importorskip("timm")
constants = pytest.importorskip("huggingface_hub.constants")

HUB_MODEL = "timm:test_efficientnet.r160_in1k"  # the smallest timm SE model with weights on the hub (356k parameters)
HUB_REPO = "timm/test_efficientnet.r160_in1k"
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "fmnist_se20"
NO_NETWORK = urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


@pytest.fixture()
def caches(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(Hugging Face hub cache, torch hub checkpoints folder), both empty, and no network.

    huggingface_hub reads HF_HUB_CACHE and HF_HUB_OFFLINE into huggingface_hub.constants when it is
    imported, and its downloads read those values when called: they are set there. torch.hub reads
    TORCH_HOME on each call."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise NO_NETWORK

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    return tmp_path / "hf", tmp_path / "torch" / "hub" / "checkpoints"


def planted(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state with every float tensor moved by a seeded draw, so that a model holding it can
    only have loaded it (BatchNorm variances stay positive)."""
    g = torch.Generator().manual_seed(0)
    return {k: v + 0.1 * torch.rand(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()}


def plant_hub(cache: Path, repo: str, state: dict[str, torch.Tensor]) -> None:
    """`state` as the hub's model.safetensors of `repo` in huggingface_hub's cache layout:
    models--ORG--NAME/refs/main names the snapshot folder that holds the file."""
    folder, revision = cache / f"models--{repo.replace('/', '--')}", "1" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "snapshots" / revision / "model.safetensors"))


def assert_holds(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    held = model.state_dict()
    assert list(held) == list(state)
    assert all(torch.equal(held[k], state[k]) for k in state)
    assert not model.training


def test_timm_weights_load_from_the_hugging_face_cache_offline(caches):
    state = planted(timm.create_model("test_efficientnet", pretrained=False))
    plant_hub(caches[0], HUB_REPO, state)
    model, checkpoint = build_from_spec(HUB_MODEL)  # the tag alone implies --pretrained
    assert checkpoint is None
    assert_holds(model, state)


def test_timm_weights_without_a_hub_id_load_from_the_torch_hub_cache(caches):
    """legacy_seresnet* (the README's first command) have only a URL: timm reads them via torch.hub."""
    state = planted(timm.create_model("legacy_seresnet18", pretrained=False))
    caches[1].mkdir(parents=True)
    torch.save(state, caches[1] / "seresnet18-4bb0ce65.pth")
    assert_holds(build_from_spec("timm:legacy_seresnet18", pretrained=True)[0], state)


def test_torchvision_weights_load_from_the_torch_hub_cache(caches):
    """Through the same call as a download (weights.get_state_dict(check_hash=True)): torch.hub checks
    the sha256 prefix in the file name only when it downloads, and reads a cached file as it is, so
    the planted file (whose hash cannot match) loads with the real name and no patched check."""
    from torchvision import models

    state = planted(models.get_model("mobilenet_v3_small", weights=None))
    caches[1].mkdir(parents=True)
    torch.save(state, caches[1] / "mobilenet_v3_small-047dcff4.pth")
    assert not sha256(caches[1] / "mobilenet_v3_small-047dcff4.pth").startswith("047dcff4")
    assert_holds(build_from_spec("torchvision:mobilenet_v3_small", pretrained=True)[0], state)
    assert pretrained_weights("torchvision:mobilenet_v3_small", pretrained=True).record() == {
        "spec": "torchvision:mobilenet_v3_small.IMAGENET1K_V1", "library": "torchvision", "name": "mobilenet_v3_small",
        "tag": "IMAGENET1K_V1", "source": "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
    }


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_cached_torchvision_file_that_would_run_code_is_refused(caches, tmp_path):
    caches[1].mkdir(parents=True)
    torch.save({"x": Exploit(tmp_path / "code_ran")}, caches[1] / "mobilenet_v3_small-047dcff4.pth")
    with pytest.raises(ModelSpecError) as error:
        build_from_spec("torchvision:mobilenet_v3_small.IMAGENET1K_V1")
    assert str(error.value) == (f"the pretrained weights of torchvision:mobilenet_v3_small.IMAGENET1K_V1 in the torch hub "
                                f"cache {caches[1]} do not load: it holds code or objects other than tensors "
                                "(io.open), which se-analysis never runs; delete the cached file to fetch it again.")
    assert "weights_only" not in str(error.value)
    assert not (tmp_path / "code_ran").exists()


def test_an_empty_cached_file_is_named_an_interrupted_download(caches):
    caches[1].mkdir(parents=True)
    (caches[1] / "mobilenet_v3_small-047dcff4.pth").write_bytes(b"")
    with pytest.raises(ModelSpecError, match=r"do not load: it is empty or cut short \(an interrupted download\?\); "
                                             "delete the cached file"):
        build_from_spec("torchvision:mobilenet_v3_small.IMAGENET1K_V1")


def test_collect_records_the_pretrained_weights_and_keeps_them(caches, tmp_path):
    """--pretrained through the CLI: meta.json names the weights and holds their state's hash (BatchNorm
    statistics not recomputed); ablate's open_for_run rebuilds the same weights from the run's job."""
    state = planted(timm.create_model("test_efficientnet", pretrained=False))
    plant_hub(caches[0], HUB_REPO, state)
    reference = timm.create_model("test_efficientnet", pretrained=False)
    reference.load_state_dict(state)
    out = tmp_path / "run"
    assert main(["collect", "--model", "timm:test_efficientnet", "--pretrained", "--data", "synthetic:classes=2,n=8,size=32",
                 "--image-size", "32", "--batch-size", "8", "--out", str(out), "--quiet"]) == 0
    run = load_run(out)
    assert run.document["pretrained"] == {"spec": HUB_MODEL, "library": "timm", "name": "test_efficientnet",
                                      "tag": "r160_in1k", "source": f"hf-hub:{HUB_REPO}"}
    assert run.document["state_sha256"] == state_sha256(reference) and run.document["random_init"] is None
    assert state_sha256(open_for_run(out)[1]) == state_sha256(reference)


def test_no_cache_and_no_network_is_one_sentence_naming_where_it_looked(caches, capsys, tmp_path):
    err = cli_error(capsys, ["collect", "--model", HUB_MODEL, "--data", "synthetic:n=8", "--out", str(tmp_path / "r")])
    assert err == (f"se-analysis: error: {HUB_MODEL} has no pretrained weights in the Hugging Face cache {caches[0]} "
                   f"(looked for {HUB_REPO}), and fetching them from the hub failed: HF_HUB_OFFLINE is set.")
    url = "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth"
    with pytest.raises(ModelSpecError) as error:
        build_from_spec("torchvision:mobilenet_v3_small", pretrained=True)
    assert str(error.value) == (
        f"torchvision:mobilenet_v3_small.IMAGENET1K_V1 has no pretrained weights in the torch hub cache {caches[1]} "
        f"(looked for mobilenet_v3_small-047dcff4.pth), and fetching them from {url} failed: "
        "[Errno -3] Temporary failure in name resolution."
    )


@pytest.mark.parametrize("spec,options,sentence", [
    ("timm:test_efficientnet", {"pretrained": True, "random_init": True},
     "timm:test_efficientnet: --pretrained loads timm's pretrained weights; drop it or --random-init."),
    (HUB_MODEL, {"weights": "w.pth"}, f"{HUB_MODEL}: the tag .r160_in1k loads timm's pretrained weights; drop it or --weights."),
    ("se_resnet20", {"pretrained": True}, "se_resnet20 is a project architecture without pretrained weights; drop --pretrained."),
    (str(SHIPPED), {"pretrained": True}, f"{SHIPPED} is a checkpoint and carries its weights; drop --pretrained."),
    ("timm:no_such_net", {"pretrained": True}, "timm has no model 'no_such_net' (timm.list_models() lists them)."),
    ("timm:test_efficientnet.no_tag", {},
     "timm:test_efficientnet.no_tag names no pretrained weights: test_efficientnet's tags are r160_in1k."),
    ("timm:seresnet18", {"pretrained": True},
     "timm has no pretrained weights for seresnet18; pass --weights FILE or --random-init."),
    ("torchvision:no_such_net.X", {},
     "torchvision has no model 'no_such_net' (torchvision.models.list_models() lists them)."),
    ("torchvision:mobilenet_v3_small.NO", {},
     "torchvision:mobilenet_v3_small.NO names no weights: MobileNet_V3_Small_Weights has IMAGENET1K_V1, DEFAULT."),
])
def test_bad_combinations_and_names_are_one_sentence(caches, spec, options, sentence):
    with pytest.raises(ModelSpecError) as error:
        build_from_spec(spec, **options)
    assert str(error.value) == sentence
