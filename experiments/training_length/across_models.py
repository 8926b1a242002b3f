#!/usr/bin/env python
"""Training length across models: several finished training-length studies (one model each) in one table.

    experiments/training_length/across_models.py empdg=outputs/training_length_glove \
        moel=outputs/training_length_moel mime=outputs/training_length_mime [--step 8000|best] [--baseline empdg] \
        [--out outputs/training_length_models.md]

Each NAME=OUT is a folder ``run.py`` wrote (its ``step_<N>/`` evaluations, its ``train/mlflow_run.json``). The first
table has a row per model and checkpoint (the validation perplexity from the run's own MLflow ``val/ppl`` at that
update, where the store is readable); the second compares every model with ``--baseline`` at ``--step`` (an
update count, or ``best``: each model's evaluated checkpoint with the lowest validation perplexity, since models
overfit at different speeds), paired over the same test examples (bootstrap intervals); the third gives each
model's lowest validation perplexity and where it was reached.
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


def validation_ppl(out: Path, steps: list[int]) -> dict[int, float]:
    """update -> ``val/ppl`` of the study's training run (its evaluated ``steps`` end where the run ended), from the
    MLflow store its ``mlflow_run.json`` names; empty when there is none (the table then says –)."""
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
    return by_update({int(m.step): float(m.value) for m in history}, steps[-1] if steps else None)


def by_update(logged: dict[int, float], last_update: int | None) -> dict[int, float]:
    """MLflow step -> value as update -> value: a validation during training, after update ``u``, is logged at
    step ``u - 1``; the one when training ends, after the run's ``last_update``, at step ``last_update``."""
    result = {}
    for step, value in sorted(logged.items()):
        update = step if step == last_update else step + 1
        result.setdefault(update, value)  # the end's validation repeats the last one when they coincide
    return result


def best_step(steps: list[int], history: dict[int, float]) -> int:
    """The evaluated checkpoint whose validation perplexity is lowest (checkpoints without one are passed over)."""
    scored = [(history[step], step) for step in steps if step in history]
    return min(scored)[1] if scored else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", metavar="NAME=OUT", help="a model's name and its study folder")
    parser.add_argument(
        "--step", default="8000", help="the update the models are compared at, or 'best': each model's evaluated "
        "checkpoint with the lowest validation perplexity (models overfit at different speeds)"
    )  # fmt: skip
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
    steps = {name: steps_of(out) for name, out in studies.items()}
    histories = {name: validation_ppl(out, steps[name]) for name, out in studies.items()}
    if args.step == "best":
        unknown = [name for name, history in histories.items() if not history]
        if unknown:
            parser.error(f"--step best needs the validation perplexity, and {', '.join(unknown)} has none recorded")
        chosen = {name: best_step(steps[name], histories[name]) for name in studies}
    elif args.step.isdigit():
        chosen = {name: int(args.step) for name in studies}
    else:
        parser.error(f"--step {args.step}: give an update count or 'best'")
    missing = [name for name in studies if chosen[name] not in steps[name]]
    if missing:
        parser.error(f"no evaluated step_{args.step} in {', '.join(missing)}: choose --step from their checkpoints")

    header = "| model | updates | val ppl | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 3) + "|"]
    minima = ["| model | lowest val ppl | at update |", "|---|---|---|"]
    for name, out in studies.items():
        history = histories[name]
        for step in steps[name]:
            metrics = json.loads((out / f"step_{step}" / "metrics.json").read_text(encoding="utf-8"))
            cells = [f"{metrics[key]:,.{digits}f}" if key in metrics else "–" for key, _, digits in COLUMNS]
            val = history.get(step)
            lines.append(f"| {name} | {step:,} | {'–' if val is None else f'{val:.1f}'} | " + " | ".join(cells) + " |")
        if history:
            step, value = min(history.items(), key=lambda item: item[1])
            minima.append(f"| {name} | {value:.1f} | {step:,} |")
    label = {name: f"{name}@{chosen[name]}" if args.step == "best" else name for name in studies}
    predictions = {label[name]: out / f"step_{chosen[name]}" / "predictions.jsonl" for name, out in studies.items()}
    comparison = compare_prediction_files(
        predictions, baseline=label[baseline], subset="all", metrics=PAIRED, n_resamples=args.bootstrap, seed=0
    )
    where = "each model's best evaluated checkpoint" if args.step == "best" else f"{int(args.step):,} updates"
    text = (
        "## Every model's checkpoints (test, all turns, greedy)\n\n" + "\n".join(lines) + "\n"
        + f"\n## At {where}, against {baseline}, paired bootstrap\n\n" + comparison.markdown()
        + "\n## Lowest validation perplexity\n\n" + "\n".join(minima) + "\n"
    )  # fmt: skip
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
