"""``critic_report.md``: what the critics judged at each validation, as one readable artifact.

``critic_report.json`` beside it holds the same numbers for scripts (the studies read it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl

from empdg.tracking.resilient_logger import log_artifact

SANITY = {"gold_beats_greedy": 0.8, "gold_beats_mismatch": 0.7}  # the bars a critic that judges fit must clear
#: under the table when a critic fails: what the check is, and when failing is expected
FAILS_REASON = (
    "FAILS: the check asks whether a critic can judge replies at all: it must score the dialogue's own "
    "gold reply above the generator's greedy reply and above the gold reply of another dialogue. A critic "
    "that fails gives the generator a signal that is not yet about fit. A short run is not expected to pass, "
    "least of all a tiny model on the built-in templated corpus (the quickstart), whose template replies "
    "fit many dialogues; docs/critics.md has what passed on real data."
)


def render_critic_report(reports: list[dict[str, float]]) -> str:
    """Markdown: the last report per critic with the sanity bars, then the history of every report."""
    if not reports:
        return "# Critic report\n\nNo validation ran with a critic report.\n"
    last = reports[-1]
    lines = [
        "# Critic report",
        "",
        f"Validation examples with feedback in the report: {int(last.get('wgan/critic/n', 0))} "
        f"(step {int(last['step'])}). A share is how often the critic scores the gold reply above the other.",
        "",
    ]
    counts = ("wgan/critic/n", "wgan/critic/n_emotional")
    critics = sorted({k.split("/")[-1].split("_")[0] for k in last if k.startswith("wgan/critic/") and k not in counts})
    others = ("greedy", "sample", "mismatch", "soft")
    if critics:
        lines += ["| critic | " + " | ".join(f"gold > {o}" for o in others) + " | D(gold) | D(greedy) | verdict |"]
        lines += ["|---" * (len(others) + 4) + "|"]
        failed = False
        for critic in critics:
            shares = [last.get(f"wgan/critic/{critic}_gold_beats_{o}") for o in others]
            cells = ["—" if v is None else f"{v:.1%}" for v in shares]
            verdict = all(last.get(f"wgan/critic/{critic}_{key}", 0.0) >= bar for key, bar in SANITY.items())
            failed = failed or not verdict
            lines.append(
                f"| {critic} | "
                + " | ".join(cells)
                + f" | {last.get(f'wgan/critic/{critic}_score_gold', float('nan')):.3f}"
                + f" | {last.get(f'wgan/critic/{critic}_score_greedy', float('nan')):.3f}"
                + f" | {'passes' if verdict else 'FAILS'} (gold > greedy ≥ 80%, gold > mismatch ≥ 70%) |"
            )
        lines.append("")
        if failed:
            lines += [FAILS_REASON, ""]
        for critic in critics:  # the critics whose rule reports_emotional_mismatch (the emotional one)
            emotional = last.get(f"wgan/critic/{critic}_gold_beats_mismatch_emotional")
            if emotional is not None:
                lines += [
                    f"{critic} on the {int(last.get('wgan/critic/n_emotional', 0))} examples whose gold reply has an "
                    "emotion word (at emotion_floor=0 the only ones it can tell from a mismatch): "
                    f"gold > mismatch {emotional:.1%}.",
                    "",
                ]
    keys = [k for k in last if k != "step" and not k.startswith("wgan/critic/n")]
    lines += ["## Every validation", "", "| step | " + " | ".join(k for k in keys) + " |"]
    lines += ["|---" * (len(keys) + 1) + "|"]
    for report in reports:
        lines.append(
            f"| {int(report['step'])} | " + " | ".join(f"{report.get(k, float('nan')):.4g}" for k in keys) + " |"
        )
    return "\n".join(lines) + "\n"


class CriticReport(pl.Callback):
    """At the end of training write ``critic_report.md`` in the run folder and log it as an artifact."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self.path: Path | None = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        reports = getattr(pl_module, "critic_reports", [])
        if not reports or not trainer.is_global_zero:
            return
        self.path = self.output_dir / "critic_report.md"
        self.path.write_text(render_critic_report(reports), encoding="utf-8")
        numbers = self.output_dir / "critic_report.json"
        numbers.write_text(json.dumps(reports, indent=1) + "\n", encoding="utf-8")
        log_artifact(trainer.logger, self.path)
        log_artifact(trainer.logger, numbers)
