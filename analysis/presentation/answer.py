"""The run's answer in words: one plain line per onset with the numbers that make it certain, and
the rules in full for whoever wants them. The terminal, the reports, the PDF and the dashboard's
overview print these lines, so the answer reads the same everywhere.

    for line in onset_lines(run): print(line)
    for label, rule in onset_rules(run): ...     # an expander, a "rules" section
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.presentation import views
from analysis.runs.folder import Run
from analysis.runs.meta import SHAPE_NOT_MEASURED


def _number(value: float) -> str:
    """A measure in a sentence: 3 significant digits, NaN as 'not measured'."""
    return "not measured" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:#.3g}"


def _interval(row: pd.Series, column: str) -> str:
    low, high = row.get(f"{column}_ci_low", math.nan), row.get(f"{column}_ci_high", math.nan)
    return "" if math.isnan(low) or math.isnan(high) else f" (95% interval {_number(low)}-{_number(high)})"


def _shape(block: str | None, blocks: pd.DataFrame) -> str:
    if block is None:
        return ("none: in no block from which on to the last the class curves differ beyond a per-class shift and "
                "scale above their controls.")
    row = blocks.loc[block]
    controls = [f"{_number(row['shape_sep_perm_max'])} with shuffled labels"]
    if not math.isnan(row.get("shape_sep_untrained", math.nan)):
        controls.insert(0, f"{_number(row['shape_sep_untrained'])} untrained")
    unchecked = "" if len(controls) == 2 else " Not checked against an untrained network (--control untrained)."
    return (f"{block}. From this block on, the class curves differ beyond a per-class shift and scale of the "
            f"all-class curve: shape_sep {_number(row['shape_sep'])}{_interval(row, 'shape_sep')} against "
            f"{' and '.join(controls)}, and above them in every later block.{unchecked}")


def _detectable(block: str | None, blocks: pd.DataFrame) -> str:
    if block is None:
        return "none: no block's gates carry class information clearly above chance."
    row = blocks.loc[block]
    return (f"{block}. The first block whose gates carry class information clearly above chance: eta2 "
            f"{_number(row['eta2_mean'])}{_interval(row, 'eta2')} against {_number(row['eta2_null'])} by chance; "
            f"{row['frac_significant']:.0%} of its channels significant.")


_LINES = {"block": _shape, "detectable": _detectable}

def _certainty(notion) -> str:
    """How sure a notion's block is: the share of its draws giving it, over how many resamples and
    control seeds."""
    seeds = ", ".join(str(seed) for seed in notion.control_seeds)
    over = f"{notion.resamples} resamples x untrained seeds {seeds}" if seeds else f"{notion.resamples} resamples"
    if notion.certainty is None:
        return f"certainty not estimated ({over})"
    return f"certainty {notion.certainty:.0%} of {notion.draws} draws ({over})"


def _label(name: str) -> str:
    return f"onset ({name})"


def notion_line(name: str, notion) -> str:
    """One notion of meta.json's onset record (runs.meta's NotionRecord) in one line: its block, the
    statistic there against its null and its untrained band, and its certainty with the control seeds
    behind it. An undetermined notion says why; no notion reads a bare "none"."""
    label = _label(name)
    if notion.status == "undetermined":
        return f"{label}: undetermined ({notion.reason})."
    if notion.block is None:
        return f"{label}: no block, from which block on: {notion.meaning}; {_certainty(notion)}."
    null = "chance" if notion.control == "chance" else "shuffled labels"
    against = [f"{null} {_number(notion.null_value)}"] if notion.null_value is not None else []
    if notion.band:
        against.append(f"untrained {_number(notion.band[0])}-{_number(notion.band[-1])}")
    return (f"{label}: {notion.block}, from which block on: {notion.meaning}. {notion.statistic} "
            f"{_number(notion.value)}{' against ' + ' and '.join(against) if against else ''}; {_certainty(notion)}.")


def onset_lines(run: Run) -> list[str]:
    """One line per onset of the run, in plain words, with its numbers against its controls: per
    notion where the run records them (issue 23 on), else its two onsets."""
    notions = getattr(run.meta.onset, "notions", None)
    if notions:
        return [notion_line(name, notion) for name, notion in notions.items()]
    blocks = run.blocks.set_index("block")
    lines = []
    for onset in views.onsets(run):
        if onset["rule"] == SHAPE_NOT_MEASURED:
            lines.append(f"{onset['label']}: {onset['rule']}.")
        else:
            lines.append(f"{onset['label']}: {_LINES[onset['key']](onset['block'], blocks)}")
    return lines


def onset_rules(run: Run) -> list[tuple[str, str]]:
    """(label, the rule in full as meta.json records it, with what the onset means) per onset: per
    notion, with how its certainty is counted, where the run records them, else its two onsets."""
    notions = getattr(run.meta.onset, "notions", None)
    if notions:
        return [(_label(name), f"{n.meaning}. Rule: {n.rule}; {n.certainty_rule}.") for name, n in notions.items()]
    return [(o["label"], f"{o['meaning']}. Rule: {o['rule']}.") for o in views.onsets(run)]
