"""Human-readable evaluation reports: a markdown metrics table and two matplotlib figures.

Figures use the Agg backend so evaluation runs on headless machines and in CI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The order of the paper's tables, then anything else.
METRIC_ORDER = (
    "ppl", "subword_ppl", "emotion_acc", "emotion_macro_f1", "dist_1", "dist_2",
    "bleu_1", "bleu_2", "bleu_3", "bleu_4", "avg_len", "rep_3",
    "unique_replies", "unique_reply_share", "valence_agreement", "valence_neutral_share",
    "sim_reference", "sim_context", "reply_emotion_acc", "n_examples",
)
# What the rows mean, for the metrics the paper's table does not have (shown under the table).
METRIC_NOTES = {
    "subword_ppl": "perplexity per subword token of a pretrained model's tokenizer: not comparable with ppl (per word)",
    "unique_replies": "distinct replies after whitespace normalisation (unique_reply_share: / n_examples)",
    "valence_agreement": (
        "share of replies whose VADER compound is >= +0.05 for a positive-group gold emotion or <= -0.05 for a "
        "negative-group one (MIME's grouping); valence_neutral_share: -0.05 < compound < +0.05"
    ),
}


def _format(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def metrics_markdown(metrics: Mapping[str, object], title: str, subset: str, source: str) -> str:
    """A two-column markdown table; the subset is part of the heading so tables are never mixed up."""
    keys = [k for k in METRIC_ORDER if k in metrics] + sorted(k for k in metrics if k not in METRIC_ORDER)
    lines = [f"### {title}", "", f"- source: `{source}`", f"- subset: **{subset}**", "", "| metric | value |"]
    lines.append("|---|---|")
    lines.extend(f"| {key} | {_format(metrics[key])} |" for key in keys if key != "subset")
    notes = [f"- {key}: {text}" for key, text in METRIC_NOTES.items() if key in metrics]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (rows: gold emotion, columns: predicted)."""
    counts = [list(map(float, row)) for row in matrix]
    normalised = [[c / max(sum(row), 1.0) for c in row] for row in counts]
    size = max(6.0, 0.28 * len(labels))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted emotion")
    ax.set_ylabel("gold emotion")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of gold row")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_length_histogram(pred_lengths: Sequence[int], ref_lengths: Sequence[int], path: Path, title: str) -> Path:
    """Generated vs reference response lengths (whitespace tokens)."""
    top = max([*pred_lengths, *ref_lengths, 1])
    bins = range(0, top + 2)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(ref_lengths, bins=bins, alpha=0.5, label="reference")
    ax.hist(pred_lengths, bins=bins, alpha=0.6, label="generated")
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("responses")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
