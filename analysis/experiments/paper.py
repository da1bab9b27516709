"""The SE paper's "Role of Excitation" study (Hu et al., Squeeze-and-Excitation Networks, TPAMI,
section 7.2, Figs. 6 and 7) as data, and the numbers it draws, read from a run folder.

    choice = choose(Protocol(), {g.name: g.channels for g in gates}, source)   # before collecting
    run.add_table("paper", paper_table(run, choice, Protocol().channels, seed=0))

As published: SE-ResNet-50 on ImageNet's validation set; 50 images of each of goldfish, pug, plane
and cliff; in SE_2_3, SE_3_4, SE_4_6 (the last block of stages 2-4, before each downsampling) and
SE_5_1..SE_5_3 (all of stage 5), 50 channels sampled uniformly. Fig. 6: the class-mean gate of each
sampled channel per class, beside the mean over all 1000 classes; Fig. 7: the mean and standard
deviation within goldfish and within plane.

Decisions. "plane" is ambiguous in ImageNet, so both are drawn: carpenter's plane (726) and
airliner (404). The "all" curve is each channel's mean gate over every image of the same run,
which `se-analysis paper` collects over `per_class` images of every class (50 of each of the 1000
classes is ImageNet's whole validation set): the mean over all classes' images, each class weighed
by its images. A block's channels are drawn without replacement, uniformly, by numpy's default
generator seeded with (seed, crc32 of the block name), so that a block's sample does not depend on
which other blocks are drawn; they are drawn in channel order. Models and data without the paper's
blocks or classes get defaults of the same kind (`choose`).

Table `paper`, one row per (block, drawn series, sampled channel), blocks and series in drawing order:

* `block`; `position`: the channel's place among the block's sampled channels (the figures' x);
  `channel`: its index in the gate;
* `class`: the class label, or ALL (-1) for the mean over all images; `class_name` (ALL_NAME for ALL);
* `mean`, `std`: the gate's mean and population standard deviation over the class's images (all
  images for ALL); `count`: those images;
* `spread`: whether the series is drawn in Fig. 7 too (mean and spread within the class).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, NamedTuple

import numpy as np
import pandas as pd

from analysis.data.selection import PER_CLASS, class_indices
from analysis.data.source import DataSource, present_classes
from analysis.errors import DataError, OptionError
from analysis.experiments.interventions import stages
from analysis.options import Help, Range, check_fields
from analysis.runs.folder import Run


class PaperClass(NamedTuple):
    name: str
    index: int  # ImageNet-1k output index
    wnid: str  # WordNet id, the name of its class folder


PAPER_CLASSES = (PaperClass("goldfish", 1, "n01443537"), PaperClass("pug", 254, "n02110958"),
                 PaperClass("plane", 726, "n03954731"), PaperClass("airliner", 404, "n02690373"),
                 PaperClass("cliff", 972, "n09246464"))
SPREAD_CLASSES = ("goldfish", "plane", "airliner")  # Fig. 7: goldfish and (both) plane
PAPER_BLOCKS = ("SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3")
PAPER_CHANNELS = 50  # sampled per block
PAPER_PER_CLASS = 50  # images per class
OTHER_CLASSES = 4  # drawn where the data lacks the paper's classes: spread over its classes, as the paper's four
ALL, ALL_NAME = -1, "all classes"
SATURATED_BLOCK = "SE_5_2"  # the paper: "a tendency towards a saturated state ... most activations close to one"


@dataclass(frozen=True)
class Protocol:
    """What the study draws; None picks the paper's choice where the model and data have it (`choose`)."""

    classes: Annotated[tuple[str, ...] | None, Help(
        "Fig. 6's classes: names, WordNet ids or indices (unset: the paper's where the data has them)")] = None
    blocks: Annotated[tuple[str, ...] | None, Help(
        "SE blocks to draw, one panel each (unset: the paper's where the model has them)")] = None
    channels: Annotated[int | None, Range(1), Help(
        "channels sampled per block with --seed (unset: 50, or all of a smaller block)")] = None
    per_class: Annotated[int, PER_CLASS, Help(
        "images of every class collected, drawn with --seed (all of a class with fewer)")] = PAPER_PER_CLASS

    def __post_init__(self) -> None:
        check_fields(self)
        empty = [name for name in ("classes", "blocks") if getattr(self, name) == ()]
        if empty:  # `--blocks ''`: an empty list is no choice, and would fail only after the collection
            raise OptionError(f"--{empty[0]} names none; name at least one, or leave it out for the paper's choice.")


@dataclass(frozen=True)
class Choice:
    """The protocol resolved against one model and data set."""

    classes: tuple[int, ...]  # labels drawn in Fig. 6
    spread: tuple[int, ...]  # labels drawn in Fig. 7, some of `classes`
    blocks: tuple[str, ...]


def _paper_labels(source: DataSource, present: np.ndarray) -> dict[str, int] | None:
    """The label of each of the paper's classes by name, when the data holds images of every one."""
    try:
        return {c.name: class_indices(source, [c.wnid], present)[0] for c in PAPER_CLASSES}
    except DataError:
        return None


def _classes(protocol: Protocol, source: DataSource) -> tuple[list[int], list[int]]:
    """(Fig. 6 labels, Fig. 7 labels): those asked for, else the paper's where the data has every one,
    else OTHER_CLASSES spread over the data's classes. Fig. 7 draws the paper's goldfish and planes
    among them, else the first two."""
    present = np.asarray(present_classes(source))
    paper = _paper_labels(source, present)
    if protocol.classes is not None:
        chosen = class_indices(source, protocol.classes, present)
    elif paper is not None:
        chosen = list(paper.values())
    else:
        chosen = present[np.unique(np.linspace(0, len(present) - 1, OTHER_CLASSES).round().astype(int))].tolist()
    spread = {paper[name] for name in SPREAD_CLASSES} if paper is not None else set()
    return chosen, [k for k in chosen if k in spread] or chosen[:2]


SPREAD_BLOCKS = 6  # blocks drawn by default from a model without stage names, spread over its depth


def spread_out(items: list, n: int) -> list:
    """n items evenly spaced over the list (all of them if there are at most n)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def default_blocks(names: list[str], include: Iterable[str] = ()) -> list[str]:
    """The blocks drawn when none are chosen, in forward order: the paper's where the model has all of
    them; else those it has, with the last block of each stage and every block of the last stage (the
    paper's choice on SE-ResNet-50); a model without stage names gets SPREAD_BLOCKS spread over its
    depth. Always with the blocks of `include` (a run's onsets: where the class structure begins)."""
    by_stage = list(stages(names).values())
    if all(b in names for b in PAPER_BLOCKS):
        keep = set(PAPER_BLOCKS)
    elif by_stage:
        keep = {b for b in PAPER_BLOCKS if b in names} | {blocks[-1] for blocks in by_stage} | set(by_stage[-1])
    else:
        keep = set(spread_out(names, SPREAD_BLOCKS))
    keep |= set(include)
    return [name for name in names if name in keep]


def choose(protocol: Protocol, channels: dict[str, int | None], source: DataSource) -> Choice:
    """The protocol resolved against a model's blocks (name -> channels in forward order; None where
    not known before collecting) and a data source. OptionError or DataError, in one sentence, for a
    block the model lacks, more channels than a block has, or a class the data lacks."""
    names = list(channels)
    blocks = list(protocol.blocks) if protocol.blocks is not None else default_blocks(names)
    for block in blocks:
        if block not in channels:
            raise OptionError(f"the model has no SE block {block!r}; its blocks are {', '.join(names)}.")
        size = channels[block]
        if protocol.channels is not None and size is not None and protocol.channels > size:
            raise OptionError(f"--channels {protocol.channels} is more than the {size} channels of {block}.")
    classes, spread = _classes(protocol, source)
    return Choice(tuple(classes), tuple(spread), tuple(blocks))


def sample_channels(block: str, size: int, n: int, seed: int) -> np.ndarray:
    """[n] channel indices of a block of `size` channels, drawn uniformly without replacement with
    (seed, crc32 of the block name), in increasing order."""
    return np.sort(np.random.default_rng([seed, zlib.crc32(block.encode())]).choice(size, n, replace=False))


def paper_table(run: Run, choice: Choice, channels: int | None, seed: int) -> pd.DataFrame:
    """The `paper` table (module docstring) of `choice` from the run's class means and channel table;
    `channels` per block (None: PAPER_CHANNELS), or all of a smaller block (`choose` refused that for
    the blocks asked for; an onset block added after collection may be one)."""
    sizes = run.blocks.set_index("block")["channels"]
    means = run.class_means
    means = means[means["block"].isin(choice.blocks) & means["class"].isin(choice.classes)]
    totals = run.channels[run.channels["block"].isin(choice.blocks)]
    samples = run.meta.stats.samples
    parts = []
    for block in choice.blocks:
        size = int(sizes[block])
        picked = sample_channels(block, size, min(channels or PAPER_CHANNELS, size), seed)
        rows = means[means["block"] == block].set_index(["class", "channel"])
        for k in choice.classes:
            found = rows.loc[k].loc[picked]  # every chosen class has images (choose checked the data)
            parts.append(_series(block, picked, k, str(found["class_name"].iloc[0]), found, k in choice.spread))
        found = totals[totals["block"] == block].set_index("channel").loc[picked].assign(count=samples)
        parts.append(_series(block, picked, ALL, ALL_NAME, found, False))
    return pd.concat(parts, ignore_index=True)


def _series(block: str, picked: np.ndarray, k: int, name: str, found: pd.DataFrame, spread: bool) -> pd.DataFrame:
    return pd.DataFrame({
        "block": block, "position": np.arange(len(picked), dtype=np.int64), "channel": picked.astype(np.int64),
        "class": np.int64(k), "class_name": name, "mean": found["mean"].to_numpy(np.float64),
        "std": found["std"].to_numpy(np.float64), "count": found["count"].to_numpy(np.int64), "spread": spread,
    })


# The blocks-table columns beside the figures: specificity with its chance level and controls, the
# shape of the class curves with its controls, the probe with its, class modulation and saturation.
NUMBER_COLUMNS = ("block", "channels", "samples", "eta2_mean", "eta2_null", "eta2_perm", "perm_p", "eta2_untrained",
                  "shape_sep", "shape_sep_perm", "shape_sep_perm_max", "shape_sep_untrained", "probe_acc",
                  "probe_chance", "probe_perm", "probe_untrained", "class_mod", "sat_high", "sat_low", "gate_mean")


def numbers(run: Run, blocks: list[str]) -> pd.DataFrame:
    """The run's blocks-table rows of `blocks`, in that order, in NUMBER_COLUMNS (those the run has)."""
    table = run.blocks.set_index("block").loc[blocks].reset_index()
    return table[[c for c in NUMBER_COLUMNS if c in table]]


def last_stage(names: list[str]) -> str:
    """The group name of the model's last stage (`SE_5_*` on SE-ResNet-50), whose gates the paper removed."""
    by_stage = stages(names)
    if not by_stage:
        raise OptionError(f"the model's blocks ({names[0]}, ...) have no stage names, so it has no last stage to remove.")
    return list(by_stage)[-1]
