#!/usr/bin/env python
"""Every model of the framework with the same budget: Transformer, Multi-TRS, EmoPrepend, MoEL, MIME, Seq2Seq, EmpDG.

usage: experiments/baselines/run.py (DATA_ROOT | --smoke) [--jobs 2] [--seeds 1 2 3] [--only MODEL:SEED ...]
       [--updates 1500] [--minilm DIR [--minilm-updates N] [--minilm-override KEY=VALUE ...]] [hydra overrides...]

Each model trains ``--updates`` generator updates at its paper size (the defaults of its
``conf/model`` file) with the same optimiser, batch size and data, then is evaluated with greedy
decoding on every listener turn of the test split. The baselines train with MLE alone
(``adversarial=none``, as their papers did); EmpDG spends the same number of generator updates
as ``--updates - --adversarial-updates`` MLE updates, critic pre-training, then adversarial cycles
against its two critics (the default ``conf/adversarial``), so it is compared at equal generator
updates, not equal compute. ``--minilm DIR`` adds the row ``minilm``: the BERT2BERT generator built by
``python -m empdg.make_bert2bert DIR`` (``model=hf_seq2seq``, ``optim=finetune``), MLE alone, for
``--minilm-updates`` updates (default ``--updates``), with ``--minilm-override`` settings of its own
(``model.freeze_encoder=true``: the CPU budget, docs/pretrained.md). Its perplexity is per WordPiece
(``subword_ppl``), not comparable with the word-level ``ppl``; its parameters are the trainable ones.
Throughput is the generator's MLE steps per second, training steps only (``throughput.json`` of each
run), with ``--jobs`` runs sharing the machine: compare it within one study, not across machines.

Every step is skipped when its output exists, so a stopped study resumes. Results:
``outputs/baselines/results.md`` and MLflow (experiments ``baselines`` and ``baselines-eval``).
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from study_common import (  # noqa: E402
    HF_SMOKE,
    REPO,
    mean_std,
    minilm_overrides,
    parse_study_args,
    python,
    real_data,
    run,
    study_parser,
)

#: model -> overrides; the order of the table
MODELS: dict[str, list[str]] = {
    "transformer": ["model=transformer", "adversarial=none"],
    "multi_trs": ["model=multi_trs", "adversarial=none"],
    "emoprepend": ["model=emoprepend", "adversarial=none"],
    "moel": ["model=moel", "adversarial=none"],
    "mime": ["model=mime", "adversarial=none"],
    "seq2seq": ["model=seq2seq", "adversarial=none"],
    "empdg": ["model=empdg", "ablation=none"],
}
METRICS = (
    "ppl", "subword_ppl", "emotion_acc", "dist_1", "dist_2", "bleu_4", "unique_replies", "valence_agreement",
    "sim_reference", "sim_context", "reply_emotion_acc",  # the metrics that read meaning (docs/real_weights.md)
)  # fmt: skip
SMOKE = ["experiment=quickstart", "training.sample_generations=0"]


def models(args) -> dict[str, list[str]]:
    """The table's models: MODELS, and the MiniLM generator with ``--minilm``."""
    if not args.minilm:
        return MODELS
    return {**MODELS, "minilm": [*minilm_overrides(args.minilm), "adversarial=none", *args.minilm_override]}


def budget(args, model: str) -> list[str]:
    """The phases of one model: MLE only, or (EmpDG) MLE, critic pre-training and adversarial cycles."""
    if model != "empdg":
        updates = args.minilm_updates if model == "minilm" else args.updates
        return [f"training.phases.generator_pretrain={updates}", "training.phases.critic_pretrain=0",
                "training.phases.adversarial=0"]  # fmt: skip
    cycles = args.adversarial_updates // args.g_steps
    return [
        f"training.phases.generator_pretrain={args.updates - cycles * args.g_steps}",
        f"training.phases.critic_pretrain={args.critic_pretrain}",
        f"training.phases.adversarial={cycles}",
        f"adversarial.g_steps={args.g_steps}",
    ]


def train_and_evaluate(args, model: str, seed: int, threads: int) -> None:
    folder = args.out / f"{model}-s{seed}"
    if (folder / "eval" / "metrics.json").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    data = (HF_SMOKE if model == "minilm" else SMOKE) if args.smoke else real_data(args.data_root)
    if not (folder / "checkpoints" / "last.ckpt").exists():
        command = [
            python(), "train.py", *data, *models(args)[model], *budget(args, model), f"seed={seed}",
            f"experiment_name={args.out.name}", f"run_name={model}-s{seed}", f"paths.output_dir={folder}",
            f"hydra.run.dir={folder / 'hydra'}", f"trainer.val_check_interval={args.val_every}",
            "callbacks.checkpoint.monitor=null",
            "trainer.enable_progress_bar=false", "training.sample_generations=0", *args.overrides,
        ]  # fmt: skip
        run(command, folder / "train.log", threads)
    command = [
        python(), "-m", "empdg.evaluate", f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}",
        *([] if args.smoke else real_data(args.data_root)), "evaluate.subset=all",
        f"paths.output_dir={folder / 'eval'}", f"hydra.run.dir={folder / 'eval' / 'hydra'}",
        f"experiment_name={args.out.name}-eval",
    ]  # fmt: skip
    run(command, folder / "evaluate.log", threads)


def finished(out: Path, model: str, seeds: list[int]) -> list[int]:
    return [s for s in seeds if (out / f"{model}-s{s}" / "eval" / "metrics.json").exists()]


def table(out: Path, seeds: list[int], names: list[str]) -> str:
    """One row per model: test metrics, trainable parameters and MLE throughput, mean ± std over seeds."""
    header = ["model", "seeds", "n", *METRICS, "parameters", "in-run MLE steps/s", "in-run MLE examples/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in names:
        done = finished(out, model, seeds)
        if not done:
            continue
        metrics = [json.loads((out / f"{model}-s{s}" / "eval" / "metrics.json").read_text()) for s in done]
        speed = [json.loads((out / f"{model}-s{s}" / "throughput.json").read_text()) for s in done]
        mle = [t["phases"]["generator_pretrain"] for t in speed if "generator_pretrain" in t["phases"]]
        cells = [model, ",".join(map(str, done)), "/".join(sorted({str(m["n_examples"]) for m in metrics}))]
        cells += [mean_std([m[k] for m in metrics if isinstance(m.get(k), (int, float))]) for k in METRICS]
        cells += [f"{speed[0]['generator_parameters'] / 1e6:.2f} M"]
        cells += [mean_std([p["steps_per_s"] for p in mle]), mean_std([p["examples_per_s"] for p in mle])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--updates", type=int, default=1500, help="generator updates of every model")
    parser.add_argument("--adversarial-updates", type=int, default=500, help="EmpDG's share in adversarial cycles")
    parser.add_argument("--g-steps", type=int, default=5)
    parser.add_argument("--critic-pretrain", type=int, default=100)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument(
        "--minilm",
        type=Path,
        default=None,
        metavar="DIR",
        help="add the MiniLM generator row: a folder made by python -m empdg.make_bert2bert",
    )
    parser.add_argument("--minilm-updates", type=int, default=None, help="its MLE updates (default: --updates)")
    parser.add_argument(
        "--minilm-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override of its runs alone, e.g. model.freeze_encoder=true (repeatable)",
    )
    args = parse_study_args(parser, REPO / "outputs" / "baselines", "MODEL")
    if args.minilm and not (args.minilm / "config.json").is_file():
        parser.error(f"--minilm {args.minilm}: no config.json there; build it: python -m empdg.make_bert2bert DIR")
    if args.smoke:  # the pipeline in minutes on the built-in corpus: numbers mean nothing
        args.updates, args.adversarial_updates, args.critic_pretrain, args.val_every = 30, 10, 5, 15
        args.minilm_updates = min(args.minilm_updates or args.updates, args.updates)
        args.out = args.out.with_name(args.out.name + "_smoke")
    args.minilm_updates = args.minilm_updates or args.updates
    names = list(models(args))
    args.out.mkdir(parents=True, exist_ok=True)
    threads = args.threads
    jobs = [(model, seed) for seed in args.seeds for model in names]
    if args.only:
        jobs = [(name, int(seed)) for name, seed in (item.split(":") for item in args.only)]
        unknown_models = sorted({name for name, _ in jobs} - set(names))
        if unknown_models:
            parser.error(f"unknown model(s) {unknown_models}; choose from {names} (minilm needs --minilm DIR)")
        args.seeds = sorted({seed for _, seed in jobs} | set(args.seeds))
    if not args.tables_only:
        print(f"{len(jobs)} runs, {args.jobs} at a time, {threads} thread(s) each", flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(train_and_evaluate, args, m, s, threads) for m, s in jobs]:
                future.result()
    text = "# Baselines: results\n\n" + table(args.out, args.seeds, names)
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
