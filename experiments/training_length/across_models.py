#!/usr/bin/env python
"""Training length across models: several finished training-length studies (one model each) in one table.

    experiments/training_length/across_models.py empdg=outputs/training_length_glove \
        moel=outputs/training_length_moel mime=outputs/training_length_mime [--step 8000] [--baseline empdg] \
        [--out outputs/training_length_models.md]

Each NAME=OUT is a folder ``run.py`` wrote (its ``step_<N>/`` evaluations, its ``train/mlflow_run.json``). The first
table has a row per model and checkpoint (the validation perplexity from the run's own MLflow ``val/ppl`` at that
update, where the store is readable); the second compares every model with ``--baseline`` at ``--step``, paired
over the same test examples (bootstrap intervals); the third gives each model's lowest validation perplexity and
where it was reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from empdg.evaluation.bootstrap import compare_prediction_files  # noqa: E402

COLUMNS = (("ppl", "test ppl", 1), ("emotion_acc", "emotion acc.", 3), ("dist_2", "Dist-2 %", 2),
           ("unique_replies", "distinct replies", 0), ("bleu_4", "BLEU-4", 2), ("valence_agreement", "valence", 3),
           ("sim_reference", "sim. ref.", 3), ("reply_emotion_acc", "reply emo. acc.", 3))  # fmt: skip
PAIRED = ("dist_2", "unique_replies", "bleu_4", "valence_agreement", "sim_reference", "reply_emotion_acc")


def steps_of(out: Path) -> list[int]:
    """The update counts of a study's evaluated checkpoints, in order."""
    found = [int(p.name.removeprefix("step_")) for p in out.glob("step_*") if (p / "metrics.json").is_file()]
    return sorted(found)


def validation_ppl(out: Path) -> dict[int, float]:
    """update -> ``val/ppl`` of the study's training run, from the MLflow store its ``mlflow_run.json`` names;
    empty when there is none (the table then says –)."""
    record = out / "train" / "mlflow_run.json"
    if not record.is_file():
        return {}
    run = json.loads(record.read_text(encoding="utf-8"))
    import mlflow

    client = mlflow.MlflowClient(run["tracking_uri"])
    try:
        history = client.get_metric_history(run["run_id"], "val/ppl")
    except Exception:  # a store moved or deleted: the figures from the evaluations still stand
        return {}
    return {int(m.step): float(m.value) for m in history}


def at_update(history: dict[int, float], update: int) -> float | None:
    """The validation value logged at ``update`` (Lightning logs it at step ``update`` or ``update - 1``)."""
    for step in (update, update - 1, update + 1):
        if step in history:
            return history[step]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", metavar="NAME=OUT", help="a model's name and its study folder")
    parser.add_argument("--step", type=int, default=8000, help="the checkpoint the models are compared at")
    parser.add_argument("--baseline", default=None, help="the model the others are compared with (default: first)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    studies: dict[str, Path] = {}
    for item in args.studies:
        name, sep, folder = item.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            parser.error(f"{item!r}: give NAME=OUT with OUT a training-length study's folder")
        studies[name] = Path(folder)
    baseline = args.baseline or next(iter(studies))
    if baseline not in studies:
        parser.error(f"--baseline {baseline} is none of {list(studies)}")
    missing = [name for name, out in studies.items() if args.step not in steps_of(out)]
    if missing:
        parser.error(f"no evaluated step_{args.step} in {', '.join(missing)}: choose --step from their checkpoints")

    header = "| model | updates | val ppl | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 3) + "|"]
    minima = ["| model | lowest val ppl | at update |", "|---|---|---|"]
    for name, out in studies.items():
        history = validation_ppl(out)
        for step in steps_of(out):
            metrics = json.loads((out / f"step_{step}" / "metrics.json").read_text(encoding="utf-8"))
            cells = [f"{metrics[key]:,.{digits}f}" if key in metrics else "–" for key, _, digits in COLUMNS]
            val = at_update(history, step)
            lines.append(f"| {name} | {step:,} | {'–' if val is None else f'{val:.1f}'} | " + " | ".join(cells) + " |")
        if history:
            step, value = min(history.items(), key=lambda item: item[1])
            minima.append(f"| {name} | {value:.1f} | {step + 1 if (step + 1) % 1000 == 0 else step:,} |")
    predictions = {name: out / f"step_{args.step}" / "predictions.jsonl" for name, out in studies.items()}
    comparison = compare_prediction_files(
        predictions, baseline=baseline, subset="all", metrics=PAIRED, n_resamples=args.bootstrap, seed=0
    )
    text = (
        "## Every model's checkpoints (test, all turns, greedy)\n\n" + "\n".join(lines) + "\n"
        + f"\n## At {args.step:,} updates, against {baseline}, paired bootstrap\n\n" + comparison.markdown()
        + "\n## Lowest validation perplexity\n\n" + "\n".join(minima) + "\n"
    )  # fmt: skip
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
