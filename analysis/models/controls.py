"""The untrained-network control: the same architecture with fresh, seeded weights.

    control = untrained(trained_model, seed=3, data=source)   # a new module; `trained_model` is untouched

Class-specific gates in an untrained network are class information that the input already carries
(Adebayo et al. 2018's model randomisation), so the trained network's numbers mean something only
beside it. Two things make a naive re-initialisation useless here:

* timm's ResNets zero the last BatchNorm of every residual branch (`zero_init_last`), so the SE block
  sees a zero input, every gate is sigmoid(bias), a constant, and eta-squared is 0 everywhere;
* BatchNorm running statistics of a fresh network (mean 0, variance 1) do not match its activations,
  so in eval mode they grow or shrink with depth and the gates saturate or sit at one value.

So: every submodule's `reset_parameters()` (BatchNorm weights back to 1), then the model's own
`init_weights(zero_init_last=False)` where it has one (timm), all under the seed on the CPU (same
seed, same weights, on any device); then BatchNorm statistics are recomputed on the first samples of
the data. `--random-init` models are built through the same function (analysis.models.spec).

One untrained network is a noisy reference (over 5 seeds the shipped SE_2_1's untrained eta2 spans
0.13-0.61), so a run holds several: seeds `untrained_seeds(seed, n)`, each a run folder of its own at
`RUN/untrained/seed_S/` (`control_folder`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from analysis.data import DataSource, make_loader
from analysis.errors import ModelSpecError

CONTROLS = ("untrained",)  # the controls `collect --control` can add to a run
CONTROL_SEEDS = 3  # untrained networks per run: the band's upper end then has 1 in 4 chance to be passed by one more
BN_SAMPLES = 256  # samples whose BatchNorm statistics replace the fresh network's
BN_BATCH = 64


def untrained_seeds(seed: int, count: int) -> list[int]:
    """The weight seeds of a run's `count` untrained controls: seed+1 .. seed+count, so that none is
    the seed a `--random-init` model of the same run was drawn from."""
    return list(range(seed + 1, seed + 1 + count))


def control_folder(kind: str, seed: int) -> str:
    """Where a control lives inside its run folder, relative to it: `untrained/seed_3`."""
    return f"{kind}/seed_{seed}"


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The CPU random generator set to `seed` inside, and given back as it was after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Fresh weights for `model` in place, on the CPU, drawn from `seed` alone."""
    model.cpu()
    with seeded(seed):
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
        init = getattr(model, "init_weights", None)
        if callable(init):
            takes_flag = "zero_init_last" in inspect.signature(init).parameters
            init(zero_init_last=False) if takes_flag else init()
    with torch.no_grad():
        for bn in _batchnorms(model):  # an init that zeroed a residual branch's last BatchNorm anyway
            if bn.weight is not None and not bn.weight.any():
                bn.weight.fill_(1.0)
    return model


def recompute_batchnorm(model: nn.Module, data: DataSource | Iterable, within: Sequence[nn.Module] | None = None) -> None:
    """Replace every BatchNorm's running statistics (of those inside the modules `within`, if given)
    by their plain average over the first BN_SAMPLES samples of `data` (train-mode BatchNorm with
    momentum=None, no grad; the rest of the model in eval mode, so dropout and the other BatchNorms
    do not touch them)."""
    inside = None if within is None else {id(bn) for module in within for bn in _batchnorms(module)}
    norms = [bn for bn in _batchnorms(model) if inside is None or id(bn) in inside]
    loader = make_loader(data, BN_BATCH, limit=BN_SAMPLES) if isinstance(data, DataSource) else data
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    samples = 0
    try:
        with torch.no_grad():
            for batch in loader:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x.to(device))
                samples += len(x)
                if samples >= BN_SAMPLES:
                    break
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.eval()
    if norms and samples == 0:
        raise ModelSpecError("the data gave no samples to recompute the untrained network's BatchNorm statistics on.")


def untrained(model: nn.Module, seed: int, data: DataSource | Iterable | None = None) -> nn.Module:
    """The architecture of `model` (copied; `model` is untouched) with fresh weights from `seed`, in eval
    mode on the CPU; with `data`, its BatchNorm statistics recomputed on that data. A model spec's
    random-init model (`build_from_spec(spec, random_init=True)`) is drawn through here."""
    fresh = reinitialise(copy.deepcopy(model), seed)
    if data is not None:
        recompute_batchnorm(fresh, data)
    return fresh.eval()


def randomised(model: nn.Module, paths: Sequence[str], seed: int, data: DataSource | Iterable) -> nn.Module:
    """A copy of `model` (on the CPU, eval mode; `model` is untouched) whose submodules at `paths`
    hold the weights `untrained(model, seed)` draws for them, their BatchNorm statistics recomputed on
    `data`; every other weight and statistic stays `model`'s. With every top-level module it is
    `untrained(model, seed, data)`; the cascading randomisation (analysis.experiments.cascade) draws
    the later part of a network this way, the earlier part keeping its trained weights and statistics."""
    fresh = reinitialise(copy.deepcopy(model), seed)
    part = copy.deepcopy(model).cpu()
    for path in paths:
        part.get_submodule(path).load_state_dict(fresh.get_submodule(path).state_dict())
    recompute_batchnorm(part, data, within=[part.get_submodule(path) for path in paths])
    return part.eval()


def untrained_record(model: nn.Module, seed: int, data: DataSource | None) -> dict[str, Any]:
    """What meta.json says about an untrained control or a random-init model: the seed and the recipe."""
    init = "reset_parameters() of every submodule"
    if callable(getattr(model, "init_weights", None)):
        init += ", then the model's init_weights(zero_init_last=False)"
    norms = len(_batchnorms(model))
    return {
        "seed": seed,
        "init": f"{init}; BatchNorm weights 1 (no zero-initialised residual branch)",
        "batchnorm": {
            "layers": norms, "recomputed_on": data.spec, "samples": min(BN_SAMPLES, len(data.dataset)),
            "batch_size": BN_BATCH, "how": "running statistics reset, then averaged (momentum=None) in train "
            "mode without grad over the first samples, the rest of the model in eval mode",
        } if data is not None and norms else "not recomputed",
    }
