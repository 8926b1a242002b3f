#!/usr/bin/env python
"""Training length across models: several finished training-length studies (one model each) in one table.

    experiments/training_length/across_models.py empdg=outputs/training_length_glove \
        moel=outputs/training_length_moel mime=outputs/training_length_mime [--step 8000|best] [--baseline empdg] \
        [--out outputs/training_length_models.md]
    experiments/training_length/across_models.py empdg=OUT_S1,OUT_S2,OUT_S3 transformer=OUT_S1,OUT_S2,OUT_S3 ...

Each NAME=OUT is a folder ``run.py`` wrote (its ``step_<N>/`` evaluations, its ``train/mlflow_run.json``); several
folders after one name, comma-separated, are that model's seeds. The first table has a row per model, seed and
checkpoint (the validation perplexity from the run's own MLflow ``val/ppl`` at that update, where the store is
readable; a pretrained generator's ``val/subword_ppl``, per subword piece, which the tables name); the second
compares every model's first folder with the baseline's at ``--step`` (an update count, or
``best``: each run's evaluated checkpoint with the lowest validation perplexity, since models overfit at different
speeds), paired over the same test examples (bootstrap intervals); the third gives each run's lowest validation
perplexity and where it was reached. With seeds, two more: each model's mean and sample standard deviation over
its seeds at ``--step``, and in how many seeds a model is above the baseline, its i-th folder against the
baseline's i-th (seed variation that a bootstrap over test examples cannot show).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study_common import perplexity_key  # noqa: E402

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
    try:  # a pretrained generator logs its perplexity per subword piece, under its own name
        history = client.get_metric_history(run["run_id"], "val/ppl") or client.get_metric_history(
            run["run_id"], "val/subword_ppl"
        )
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


def seed_of(out: Path, default: int) -> int:
    """The ``seed`` of the study's training run (its ``train/config.yaml``), else ``default``."""
    config = out / "train" / "config.yaml"
    if config.is_file():
        for line in config.read_text(encoding="utf-8").splitlines():
            if line.startswith("seed:"):
                return int(line.partition(":")[2].strip())
    return default


def mean_sd(values: list[float], digits: int) -> str:
    """``mean ± sd`` (sample standard deviation) of the finite values; the mean alone for one; – for none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "–"
    if len(finite) == 1:
        return f"{finite[0]:,.{digits}f}"
    return f"{statistics.fmean(finite):,.{digits}f} ± {statistics.stdev(finite):,.{digits}f}"


def above(values: list[float], baseline: list[float]) -> str:
    """In how many seed pairs (i-th with i-th) the model's value is above the baseline's: ``k of n``."""
    pairs = [(v, b) for v, b in zip(values, baseline) if math.isfinite(v) and math.isfinite(b)]
    return f"{sum(v > b for v, b in pairs)} of {len(pairs)}" if pairs else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", metavar="NAME=OUT[,OUT...]",
                        help="a model's name and its study folder (several: its seeds)")  # fmt: skip
    parser.add_argument(
        "--step", default="8000", help="the update the models are compared at, or 'best': each run's evaluated "
        "checkpoint with the lowest validation perplexity (models overfit at different speeds)"
    )  # fmt: skip
    parser.add_argument("--baseline", default=None, help="the model the others are compared with (default: first)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    studies: dict[str, list[Path]] = {}
    for item in args.studies:
        name, sep, folders = item.partition("=")
        paths = [Path(folder) for folder in folders.split(",")] if sep else []
        if not name or not paths or not all(path.is_dir() for path in paths):
            parser.error(f"{item!r}: give NAME=OUT (or NAME=OUT,OUT,... for seeds) with OUT a training-length study")
        studies[name] = paths
    baseline = args.baseline or next(iter(studies))
    if baseline not in studies:
        parser.error(f"--baseline {baseline} is none of {list(studies)}")
    runs = {(name, i): out for name, paths in studies.items() for i, out in enumerate(paths)}
    run_name = {key: key[0] if len(studies[key[0]]) == 1 else f"{key[0]} s{seed_of(out, key[1] + 1)}"
                for key, out in runs.items()}  # fmt: skip
    steps = {key: steps_of(out) for key, out in runs.items()}
    histories = {key: validation_ppl(out, steps[key]) for key, out in runs.items()}
    if args.step == "best":
        unknown = [run_name[key] for key, history in histories.items() if not history]
        if unknown:
            parser.error(f"--step best needs the validation perplexity, and {', '.join(unknown)} has none recorded")
        chosen = {key: best_step(steps[key], histories[key]) for key in runs}
    elif args.step.isdigit():
        chosen = {key: int(args.step) for key in runs}
    else:
        parser.error(f"--step {args.step}: give an update count or 'best'")
    missing = [run_name[key] for key in runs if chosen[key] not in steps[key]]
    if missing:
        parser.error(f"no evaluated step_{args.step} in {', '.join(missing)}: choose --step from their checkpoints")

    header = "| model | updates | val ppl | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 3) + "|"]
    minima = ["| model | lowest val ppl | at update |", "|---|---|---|"]
    at_step: dict[tuple[str, int], dict[str, float]] = {}
    subword: set[str] = set()
    for key, out in runs.items():
        history = histories[key]
        for step in steps[key]:
            metrics = json.loads((out / f"step_{step}" / "metrics.json").read_text(encoding="utf-8"))
            if perplexity_key(metrics) == "subword_ppl":  # shown in the ppl columns; named under the tables
                metrics["ppl"] = metrics["subword_ppl"]
                subword.add(key[0])
            cells = [f"{metrics[k]:,.{digits}f}" if k in metrics else "–" for k, _, digits in COLUMNS]
            val = history.get(step)
            lines.append(f"| {run_name[key]} | {step:,} | {'–' if val is None else f'{val:.1f}'} | "
                         + " | ".join(cells) + " |")  # fmt: skip
            if step == chosen[key]:
                at_step[key] = {"val_ppl": math.nan if val is None else val, **metrics}
        if history:
            step, value = min(history.items(), key=lambda item: item[1])
            minima.append(f"| {run_name[key]} | {value:.1f} | {step:,} |")
    first = {name: (name, 0) for name in studies}
    label = {name: f"{name}@{chosen[key]}" if args.step == "best" else name for name, key in first.items()}
    predictions = {label[name]: runs[key] / f"step_{chosen[key]}" / "predictions.jsonl" for name, key in first.items()}
    comparison = compare_prediction_files(
        predictions, baseline=label[baseline], subset="all", metrics=PAIRED, n_resamples=args.bootstrap, seed=0
    )
    where = "each run's best evaluated checkpoint" if args.step == "best" else f"{int(args.step):,} updates"
    seeds = "" if all(len(paths) == 1 for paths in studies.values()) else " (each model's first folder)"
    text = (
        "## Every model's checkpoints (test, all turns, greedy)\n\n" + "\n".join(lines) + "\n"
        + f"\n## At {where}, against {baseline}{seeds}, paired bootstrap\n\n" + comparison.markdown()
        + "\n## Lowest validation perplexity\n\n" + "\n".join(minima) + "\n"
    )  # fmt: skip
    if seeds:
        text += "\n" + seed_tables(studies, at_step, baseline, where)
    if subword:
        text += (f"\nThe perplexities of {', '.join(sorted(subword))} are per subword piece of a pretrained tokenizer "
                 "(`subword_ppl`), not comparable with the others' per-word values.\n")  # fmt: skip
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text)


def seed_tables(
    studies: dict[str, list[Path]], at_step: dict[tuple[str, int], dict[str, float]], baseline: str, where: str
) -> str:
    """Mean ± sd over each model's seeds, and how many of them are above the baseline's (i-th seed with i-th)."""
    columns = (("val_ppl", "val ppl", 1), *COLUMNS)
    value = {(name, k): [at_step[(name, i)].get(k, math.nan) for i in range(len(paths))]
             for name, paths in studies.items() for k, _, _ in columns}  # fmt: skip
    means = ["| model | seeds | " + " | ".join(h for _, h, _ in columns) + " |", "|---" * (len(columns) + 2) + "|"]
    wins = ["| model | pairs | " + " | ".join(h for k, h, _ in columns if k in PAIRED) + " |",
            "|---" * (len(PAIRED) + 2) + "|"]  # fmt: skip
    for name, paths in studies.items():
        means.append(f"| {name} | {len(paths)} | "
                     + " | ".join(mean_sd(value[(name, k)], digits) for k, _, digits in columns) + " |")  # fmt: skip
        if name != baseline:
            cells = [above(value[(name, k)], value[(baseline, k)]) for k, _, _ in columns if k in PAIRED]
            wins.append(f"| {name} | {min(len(paths), len(studies[baseline]))} | " + " | ".join(cells) + " |")
    return (
        f"## At {where}, over seeds (mean ± sample sd)\n\n" + "\n".join(means) + "\n"
        + f"\n## Seeds above {baseline} (the i-th folder of each against the i-th of {baseline})\n\n"
        + "\n".join(wins) + "\n"
    )  # fmt: skip


if __name__ == "__main__":
    main()
