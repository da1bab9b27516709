"""Checkpoints: weights in safetensors beside a JSON file that says how to rebuild the model.

    checkpoints/fmnist_se20/final.safetensors   the weights (no code can run when loading)
    checkpoints/fmnist_se20/final.json          {"arch": ..., "arch_args": {...}, "class_names": [...], ...}

A checkpoint is named by either file, by the path without suffix, or by its folder (which means
`final`). Epoch snapshots sit beside it as `epoch_NNN.*`.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from analysis.errors import AnalysisError, CheckpointError, first_line
from analysis.files import replacing
from analysis.models.architectures import build_model

FORMAT = "se-analysis-checkpoint/1"


def load_failure(error: BaseException) -> str:
    """Why a weights file did not load, in words: torch's refusal of pickled code names what the
    file holds (never its advice to load it with weights_only=False, which would run that code); an
    empty or cut file (an interrupted download) says so."""
    text = str(error)
    cut = ("Ran out of input", "header too small", "not fully covered", "failed finding central directory")
    if isinstance(error, EOFError) or any(sign in text for sign in cut):
        return "it is empty or cut short (an interrupted download?)"
    if "Weights only load failed" in text:
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", text)
        what = f" ({found[1]})" if found else ""
        return f"it holds code or objects other than tensors{what}, which se-analysis never runs"
    return first_line(error).rstrip(".")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a torch.save'd state dict, read with weights_only=True.

    A dict that wraps the weights under "state_dict", "model" or "model_state_dict" is unwrapped,
    and a DataParallel "module." prefix is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist.")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            with warnings.catch_warnings():  # the refusal below is the message; torch's warning adds noise
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse is one user-facing error
        raise CheckpointError(f"{path} is not a readable weights file: {load_failure(e)}.") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def apply_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` strictly; a mismatch names what is missing, unexpected or of another shape."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
        raise CheckpointError(f"the weights in {source} do not fit {type(model).__name__}: {detail}") from None
    parts = []
    if result.missing_keys:
        parts.append(f"{len(result.missing_keys)} missing tensors (e.g. {result.missing_keys[0]})")
    if result.unexpected_keys:
        parts.append(f"{len(result.unexpected_keys)} unexpected tensors (e.g. {result.unexpected_keys[0]})")
    if parts:
        raise CheckpointError(f"the weights in {source} do not fit {type(model).__name__}: {', '.join(parts)}.")


def checkpoint_paths(spec: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) paths named by `spec`; CheckpointError if they are not both there."""
    path = Path(spec)
    if path.is_dir():
        path = path / "final"
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    missing = [str(p) for p in (weights, meta) if not p.is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {spec} is incomplete: {', '.join(missing)} not found.")
    return weights, meta


def snapshots(folder: str | Path) -> list[tuple[int, Path]]:
    """(epoch, checkpoint path without suffix) of every checkpoint in a folder `train` wrote (its
    `epoch_NNN` snapshots and `final`), in epoch order, the epoch read from each checkpoint's JSON.
    Raises CheckpointError for a folder without checkpoints or two checkpoints of one epoch."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a checkpoint folder (a folder holding final.json and epoch_NNN.json).")
    found: dict[int, Path] = {}
    for meta_path in sorted([*folder.glob("epoch_[0-9][0-9][0-9].json"), *folder.glob("final.json")]):
        checkpoint_paths(meta_path)  # its weights are there too
        try:
            epoch = json.loads(meta_path.read_text()).get("epoch")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
            raise CheckpointError(f"{meta_path} is not valid checkpoint JSON: {first_line(e)}.") from None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise CheckpointError(f"{meta_path} records no epoch (a whole number), so its place in training is unknown.")
        if epoch in found:
            raise CheckpointError(f"{found[epoch]}.json and {meta_path} are both of epoch {epoch}.")
        found[epoch] = meta_path.with_suffix("")
    if not found:
        raise CheckpointError(f"{folder} holds no checkpoint (final.json or epoch_NNN.json).")
    return sorted(found.items())


def is_checkpoint(spec: str) -> bool:
    """True when `spec` names something on disk (so it must be a checkpoint, not a model name)."""
    path = Path(spec)
    return path.exists() or path.with_suffix(".safetensors").exists()


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write `path`.safetensors and `path`.json atomically; meta must hold "arch" and "arch_args"."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    full = {"format": FORMAT, **meta}
    with replacing(path.with_suffix(".safetensors")) as tmp:
        save_file(state, str(tmp))
    with replacing(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(full, indent=2))
    return path.with_suffix(".safetensors")


def load_checkpoint(spec: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode, CPU) and metadata of a checkpoint. Never executes code from the files."""
    weights, meta_path = checkpoint_paths(spec)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path} is not valid JSON: {e}.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not an se-analysis checkpoint (format {FORMAT} expected).")
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{weights} is damaged or truncated: {e}.") from None
    try:
        model = build_model(meta["arch"], **meta.get("arch_args", {}))
    except (KeyError, AnalysisError) as e:
        raise CheckpointError(f"{meta_path} names an architecture this toolkit cannot build: {e}") from None
    apply_weights(model, state, str(weights))
    return model.eval(), meta


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
