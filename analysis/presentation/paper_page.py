"""The SE paper's "Role of Excitation" study drawn from a run: Figs. 6 and 7, the toolkit's numbers
for the same blocks, and the paper's two claims beside what the run measured.

    write_paper_page(run)    # RUN/paper.html, one self-contained file; `se-analysis report` copies it

The figures read the run's `paper` table (analysis.experiments.paper) and compute nothing.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis.experiments.paper import ALL, PAPER_BLOCKS, PAPER_CLASSES, SATURATED_BLOCK, last_stage, numbers
from analysis.files import replacing
from analysis.measures.saturation import GATE_HIGH, GATE_LOW, SATURATION_RULE, saturated
from analysis.measures.schema import doc
from analysis.presentation import views
from analysis.presentation.captions import caption
from analysis.presentation.profile_figure import Scale, class_profiles
from analysis.presentation.html import figure, html_page, png, table, text_list
from analysis.presentation.numbers import text_table
from analysis.presentation.style import class_styles
from analysis.runs.folder import Run

PAGE = "paper.html"


def excitation_profiles(paper: pd.DataFrame, spread: bool = False, scale: Scale = "deviation") -> Figure:
    """Fig. 6 from the `paper` table, drawn by figures.class_profiles (as the reports and the dashboard
    draw it): per block, the class-mean gate of each sampled channel per class beside the mean over
    all images (the all-class curve). With `spread`, Fig. 7: the classes drawn with their spread,
    each with a band of +- one standard deviation over the class's images, in Fig. 6's colours."""
    series = paper[paper["class"] != ALL]
    names = list(dict.fromkeys(series["class_name"]))
    profiles, common = {}, {}
    for block, rows in paper.groupby("block", sort=False):
        table = rows[rows["class"] != ALL].pivot(index="class_name", columns="position", values=["mean", "std"])
        profiles[block] = (table["mean"].loc[names].to_numpy(), table["std"].loc[names].to_numpy())
        common[block] = rows.loc[rows["class"] == ALL].sort_values("position")["mean"].to_numpy()
    drawn = list(range(len(names)))
    if spread:
        shown = set(series.loc[series["spread"], "class_name"])
        drawn = [i for i, name in enumerate(names) if name in shown]
    return class_profiles(profiles, drawn, names, spread=spread, scale=scale, common=common,
                          colors=class_styles(range(len(names))), xlabel="sampled channel (in channel order)")


def _stage_removal(run: Run) -> pd.DataFrame:
    """The interventions rows that set the last stage's gates to 1 (empty when not measured)."""
    if not run.has_table("interventions"):
        return pd.DataFrame()
    t = run.table("interventions")
    return t[(t["group"] == last_stage(views.block_names(run))) & (t["intervention"] == "ones")]


def _claims(run: Run) -> list[str]:
    """The paper's two claims about the last stage, each beside what the run measured."""
    b, names = run.blocks.set_index("block"), views.block_names(run)
    if SATURATED_BLOCK in b.index:
        r = b.loc[SATURATED_BLOCK]
        lines = [f"{SATURATED_BLOCK} (the paper: a tendency towards a saturated state, most activations close to one): "
                 f"{r['sat_high']:.1%} of its gates >= {GATE_HIGH}, {r['sat_low']:.1%} <= {GATE_LOW}, "
                 f"mean gate {r['gate_mean']:.3f} +- {r['gate_std']:.3f}."]
    else:
        lines = [f"The model has no {SATURATED_BLOCK}, the block the paper found saturated."]
    found = ", ".join(run.blocks.loc[saturated(run.blocks), "block"]) or "none"
    lines.append(f"Saturated blocks ({SATURATION_RULE}): {found}.")
    removal, group = _stage_removal(run), last_stage(names)
    if removal.empty:
        return [*lines, f"Removing {group}'s gates was not measured in this run."]
    r = removal.iloc[0]
    return [*lines, f"Removing the last stage's gates ({group} set to 1, SE removed; the paper: at a marginal loss in "
                    f"accuracy): top-1 {r['acc_base']:.2%} -> {r['acc']:.2%}, {100 * r['acc_change']:+.2f} points "
                    f"(95% CI {100 * r['acc_change_ci_low']:+.2f} to {100 * r['acc_change_ci_high']:+.2f}) on "
                    f"{r['samples']} images."]


def summary_lines(run: Run) -> list[str]:
    """What was drawn, how, and the paper's claims beside the run's numbers: the page's text and
    what `se-analysis paper` prints."""
    paper, names = run.table("paper"), views.block_names(run)
    blocks = list(dict.fromkeys(paper["block"]))
    first = paper[paper["block"] == blocks[0]]
    series = first[first["class"] != ALL].drop_duplicates("class")
    spread = series.loc[series["spread"], "class_name"]
    channels = paper.groupby("block", sort=False)["position"].max() + 1
    sizes = run.blocks.set_index("block")["channels"]
    missing = [b for b in PAPER_BLOCKS if b not in names]
    paper_classes = ", ".join(f"{c.name} ({c.index})" for c in PAPER_CLASSES)
    samples, k = run.meta.stats.samples, int(run.blocks["classes"].iloc[0])
    model, data = views.model_and_data(run)
    return [
        f"The SE paper's Role of Excitation study (Hu et al., TPAMI, section 7.2, Figs. 6-7) on {model}, "
        f"data {data}: {samples} images of {k} classes.",
        "Classes: " + ", ".join(f"{r['class_name']} (label {r['class']}, {r['count']} images)" for _, r in series.iterrows())
        + f"; Fig. 7: {', '.join(spread)}. The paper's: {paper_classes} (its plane: carpenter's plane or airliner).",
        f"Blocks: {', '.join(blocks)}" + (" (the paper's)." if blocks == list(PAPER_BLOCKS) else
                                          f"; the model lacks the paper's {', '.join(missing)}." if missing else ".")
        + (f" The run's onsets: {', '.join(onsets)}." if (onsets := views.onset_blocks(run)) else ""),
        "Channels per block: " + ", ".join(f"{b} {n} of {sizes[b]}" for b, n in channels.items())
        + f", drawn uniformly without replacement (seed {run.meta.job.seed if run.meta.job else '?'} and the block's "
          "name), in channel order.",
        f"The 'all classes' curve: each channel's mean gate over all {samples} images of the run (as many of every "
        "class as the data has, up to the per-class count): the paper's mean over all classes.",
        *_claims(run),
        *(f"Warning from the run: {w}" for w in views.run_warnings(run)),
    ]


def _numbers(run: Run) -> pd.DataFrame:
    """The blocks-table numbers of the drawn blocks, without the controls the run lacks."""
    shown = numbers(run, list(dict.fromkeys(run.table("paper")["block"])))
    return shown[views.present(run, tuple(shown))]


def format_paper(run: Run) -> str:
    """What `se-analysis paper` prints: the summary, the numbers and where the page is."""
    return "\n".join([*summary_lines(run), text_table(_numbers(run)), f"page {views.shown_path(run.path / PAGE)}"])


def page_html(run: Run) -> str:
    """The paper page of a run that has its `paper` table."""
    paper, shown = run.table("paper"), _numbers(run)
    docs = {c: doc("blocks", c) for c in shown}
    columns = "".join(f"<dt>{html.escape(c)}</dt><dd>{html.escape(d)}</dd>" for c, d in docs.items())
    removal = _stage_removal(run)
    body = (
        f"<h1>Role of Excitation: {html.escape(run.path.name)}</h1>{text_list(summary_lines(run))}"
        f"{figure('Fig. 6: class-mean activations of the sampled channels', png(excitation_profiles(paper)), caption('profiles'))}"
        f"{figure('Fig. 7: mean and spread of the activations within a class', png(excitation_profiles(paper, True)), caption('profiles_spread'))}"
        f"<h2>The toolkit's numbers for these blocks</h2>{table(shown, docs)}<dl>{columns}</dl>"
        + (f"<h2>Removing the last stage's gates</h2>{table(removal)}" if not removal.empty else "")
        + f"<p><small>run folder {html.escape(views.shown_path(run.path))}</small></p>"
    )
    return html_page(f"Role of Excitation: {run.path.name}", body)


def write_paper_page(run: Run) -> Path:
    """Write the paper page RUN/paper.html atomically."""
    path = run.path / PAGE
    with replacing(path) as tmp:
        tmp.write_text(page_html(run))
    return path
