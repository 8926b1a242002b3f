#!/usr/bin/env python
"""What do EmpDG's interactive critics do to the generator? One shared MLE generator, then arms.

usage: experiments/adversarial_study/run.py (DATA_ROOT | --smoke) [--jobs 2] [hydra overrides...] [--seeds 1 2 3]
       [--minilm DIR [--generator-override KEY=VALUE ...]] [--init CKPT]

``--minilm DIR`` runs the whole study (the shared pre-training included) on the MiniLM BERT2BERT generator
built by ``python -m empdg.make_bert2bert DIR`` (``model=hf_seq2seq``, ``optim=finetune``) instead of
EmpDG, into ``outputs/adversarial_study_minilm``; ``--generator-override`` adds settings of that generator
to every run (``model.freeze_encoder=true``: the CPU budget, docs/pretrained.md).

1. Pre-train one generator with MLE (``--pretrain-updates``, default 2,000), shared by every arm
   (``--init CKPT``: take that checkpoint's generator instead, e.g. the baselines table's ``minilm`` run).
2. From its weights, per seed and arm: critic pre-training, then ``--generator-updates`` (default 500)
   generator updates in adversarial cycles. Arms: the same-batch control (same batches, same critic
   training, no adversarial term), each estimator with mismatched negatives, the word-match critics
   with more critic updates and with an emotional critic that reads the whole reply, and the chosen
   estimator (``--best``) without mismatched negatives and without feedback.
3. Evaluate every arm on the whole test split (greedy); the 2,713-turn feedback subset is read from
   the same predictions.
4. Tables: per arm mean ± std over seeds; pooled over seeds, 95% bootstrap intervals over examples
   and a paired bootstrap test against the control (paired by seed and example); the critic reports.

Every step is skipped when its output exists, so a stopped study resumes where it was. Results go to
``outputs/adversarial_study/`` (``--out``) and MLflow (experiment ``adversarial_study``).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
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

SMOKE = [
    "experiment=quickstart",
    "trainer.val_check_interval=15",
    "training.sample_generations=0",
]
PLAIN = "adversarial.critic.word_match=false"  # the critics of the paper (summary vectors only)
WHOLE_REPLY_FLOOR = 0.3  # a non-emotion word's weight in what the whole-reply emotional critic reads
ARMS: dict[str, list[str]] = {
    "control": ["adversarial.estimator=reinforce", "adversarial.w_adv=0", PLAIN],  # w_adv=0: the same-batch control
    "reinforce": ["adversarial.estimator=reinforce", PLAIN],
    "gumbel": ["adversarial.estimator=gumbel", PLAIN],
    "soft_unit": ["adversarial.estimator=soft", PLAIN],  # soft rescales every position to unit length
    # critics that also match the reply's words to the context's and the feedback's (the default since)
    "gumbel_match": ["adversarial.estimator=gumbel", "adversarial.critic.word_match=true"],
    # the two next steps Reading 2 names: more critic updates (4x the pre-training, see
    # CRITIC_PRETRAIN_FACTOR, and 3 critic updates per cycle: 900 against 250, the same 500 generator
    # updates), and an emotional critic that reads the whole reply with its emotion weights
    "gumbel_match_more_critic": [
        "adversarial.estimator=gumbel",
        "adversarial.critic.word_match=true",
        "adversarial.n_critic=3",
    ],
    "gumbel_match_whole_reply": [
        "adversarial.estimator=gumbel",
        "adversarial.critic.word_match=true",
        f"adversarial.critic.emotion_floor={WHOLE_REPLY_FLOOR}",
    ],
}
#: arms whose critic pre-training is this many times ``--critic-pretrain`` (their ablations too)
CRITIC_PRETRAIN_FACTOR = {"gumbel_match_more_critic": 4}
CRITIC_KEYS = ("gold_beats_greedy", "gold_beats_sample", "gold_beats_mismatch", "gold_beats_soft")
EMOTIONAL_KEY = "gold_beats_mismatch_emotional"
TEST_METRICS = ("ppl", "subword_ppl", "emotion_acc", "dist_1", "dist_2", "bleu_4", "unique_replies",
                "valence_agreement", "sim_reference", "sim_context", "reply_emotion_acc")  # fmt: skip


def arms_for(best: list[str]) -> dict[str, list[str]]:
    """Every arm, then each ``best`` arm without mismatched negatives and without feedback."""
    arms = dict(ARMS)
    for name in best:
        arms[f"{name}_no_mismatch"] = [*ARMS[name], "adversarial.mismatch_weight=0"]
        arms[f"{name}_no_feedback"] = [*ARMS[name], "adversarial.feedback=false"]
    return arms


def critic_pretrain_updates(args, arm: str) -> int:
    """``--critic-pretrain`` times the arm's factor (an ablation ``<arm>_no_*`` inherits its arm's)."""
    factors = [f for name, f in CRITIC_PRETRAIN_FACTOR.items() if arm == name or arm.startswith(name + "_")]
    return args.critic_pretrain * (factors[0] if factors else 1)


def data_overrides(args) -> list[str]:
    if args.smoke:
        return HF_SMOKE if args.minilm else SMOKE
    return real_data(args.data_root)


def generator_overrides(args) -> list[str]:
    """The generator of the pre-training and of every arm: EmpDG, or the MiniLM BERT2BERT (``--minilm``)."""
    if args.minilm:
        return [*minilm_overrides(args.minilm), *args.generator_override]
    return ["model=empdg", *args.generator_override]


def pretrain(args, out: Path, threads: int) -> Path:
    folder = out / "pretrain"
    checkpoint = folder / "checkpoints" / "last.ckpt"
    if checkpoint.exists():
        return checkpoint
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        python(), "train.py", *data_overrides(args), *generator_overrides(args),
        f"training.phases.generator_pretrain={args.pretrain_updates}",
        "training.phases.critic_pretrain=0", "training.phases.adversarial=0",
        "trainer.enable_progress_bar=false", f"experiment_name={out.name}", "run_name=pretrain-mle",
        f"seed={args.seeds[0]}", f"paths.output_dir={folder}", f"hydra.run.dir={folder / 'hydra'}",
        *args.overrides,
    ]  # fmt: skip
    print(f"pre-training the shared generator ({args.pretrain_updates} MLE updates)", flush=True)
    run(command, folder / "train.log", threads)
    return checkpoint


def train_and_evaluate(args, out: Path, arm: str, arm_overrides: list[str], seed: int, init: Path, threads: int):
    folder = out / f"{arm}-s{seed}"
    evaluation = folder / "eval"
    if (evaluation / "metrics.json").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    g_steps = args.g_steps
    cycles = max(1, args.generator_updates // g_steps)
    trained = folder / "TRAINED"  # last.ckpt alone is no proof: it is also written mid-run
    if not trained.exists():
        command = [
            python(), "train.py", *data_overrides(args), *generator_overrides(args), f"model.init_from={init}",
            "training.phases.generator_pretrain=0",
            f"training.phases.critic_pretrain={critic_pretrain_updates(args, arm)}",
            f"training.phases.adversarial={cycles}", f"adversarial.g_steps={g_steps}",
            "trainer.enable_progress_bar=false", f"experiment_name={out.name}",
            f"run_name={arm}-s{seed}", f"seed={seed}",
            f"paths.output_dir={folder}", f"hydra.run.dir={folder / 'hydra'}",
            f"trainer.val_check_interval={args.val_every}", "callbacks.checkpoint.monitor=null",
            *arm_overrides, *args.overrides,
        ]  # fmt: skip
        run(command, folder / "train.log", threads)
        trained.touch()
    command = [
        python(), "-m", "empdg.evaluate", f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}",
        *([] if args.smoke else real_data(args.data_root)),
        "evaluate.subset=all", f"paths.output_dir={evaluation}", f"hydra.run.dir={evaluation / 'hydra'}",
        f"experiment_name={out.name}-eval",
    ]  # fmt: skip
    run(command, folder / "evaluate.log", threads)


def last_critic_report(folder: Path) -> dict[str, float]:
    path = folder / "critic_report.json"
    last = json.loads(path.read_text())[-1] if path.exists() else {}
    # runs before the metric rename (critic/* -> wgan/critic/*) still tabulate
    return {f"wgan/{k}" if k.startswith("critic/") else k: v for k, v in last.items()}


def finished(out: Path, arm: str, seeds: list[int]) -> list[int]:
    return [s for s in seeds if (out / f"{arm}-s{s}" / "eval" / "predictions.jsonl").exists()]


def seed_table(out: Path, arms: list[str], seeds: list[int]) -> str:
    """Per arm, mean ± std over seeds of test metrics (all turns) and the critics' last report."""
    header = ["arm", "seeds", *TEST_METRICS, *(f"sem {k}" for k in CRITIC_KEYS), *(f"emo {k}" for k in CRITIC_KEYS)]
    header.append(f"emo {EMOTIONAL_KEY}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        done = finished(out, arm, seeds)
        metrics = [json.loads((out / f"{arm}-s{s}" / "eval" / "metrics.json").read_text()) for s in done]
        reports = [last_critic_report(out / f"{arm}-s{s}") for s in done]
        cells = [arm, ",".join(map(str, done)) or "–"]
        cells += [mean_std([m[k] for m in metrics if isinstance(m.get(k), (int, float))]) for k in TEST_METRICS]
        for critic in ("sem", "emo"):
            for key in CRITIC_KEYS:
                cells.append(
                    mean_std([r[f"wgan/critic/{critic}_{key}"] for r in reports if f"wgan/critic/{critic}_{key}" in r])
                )
        key = f"wgan/critic/emo_{EMOTIONAL_KEY}"  # replies with an emotion word only (older runs: –)
        cells.append(mean_std([r[key] for r in reports if key in r]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def wilson(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a share (the critic report's shares are counts out of ``n``)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return centre - half, centre + half


def critic_check_table(out: Path, arms: list[str], seeds: list[int]) -> str:
    """The sanity checks pooled over seeds (last report of each run), with 95% Wilson intervals."""
    checks = [
        ("sem", "gold_beats_greedy", "n"),
        ("sem", "gold_beats_mismatch", "n"),
        ("emo", "gold_beats_greedy", "n"),
        ("emo", "gold_beats_mismatch", "n"),
        ("emo", "gold_beats_mismatch_emotional", "n_emotional"),
    ]
    header = ["arm", "examples", *(f"{c} {k} [95% CI]" for c, k, _ in checks)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        reports = [last_critic_report(out / f"{arm}-s{s}") for s in finished(out, arm, seeds)]
        reports = [r for r in reports if "wgan/critic/n" in r]
        cells = [arm, str(int(sum(r["wgan/critic/n"] for r in reports)))]
        for critic, key, count in checks:
            share, total = f"wgan/critic/{critic}_{key}", f"wgan/critic/{count}"
            pairs = [(r[share] * r[total], r[total]) for r in reports if share in r and total in r]
            wins, n = sum(w for w, _ in pairs), sum(n for _, n in pairs)
            low, high = wilson(wins, n)
            cells.append(f"{wins / n:.1%} [{low:.1%}, {high:.1%}]" if n else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


INSTRUMENTS = (
    ("wgan/adv_mle_grad_cos", "mean"),
    ("wgan/adv_mle_grad_ratio", "mean"),
    ("wgan/reinforce_advantage_abs", "mean"),
    ("val/entropy", "last"),
    ("val/max_prob", "last"),
    ("val/greedy_dist_2", "last"),
)


def instrument_table(out: Path, arms: list[str], seeds: list[int]) -> str:
    """What the training runs logged to MLflow: gradient probe, REINFORCE advantage, peakiness (mean over seeds)."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(out.name)
    if experiment is None:
        return "(no MLflow experiment found)\n"
    runs = {r.data.tags.get("empdg.run_folder"): r.info.run_id for r in client.search_runs([experiment.experiment_id])}
    header = ["arm", *(f"{key} ({how})" for key, how in INSTRUMENTS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        values: dict[str, list[float]] = {key: [] for key, _ in INSTRUMENTS}
        for seed in finished(out, arm, seeds):
            run_id = runs.get(str((out / f"{arm}-s{seed}").resolve()))  # runs record absolute folders
            for key, how in INSTRUMENTS if run_id else ():
                history = [m.value for m in client.get_metric_history(run_id, key)]
                if not history and key.startswith("wgan/"):  # a run logged before the rename: train/<name>
                    history = [m.value for m in client.get_metric_history(run_id, "train/" + key.split("/", 1)[1])]
                if history:
                    values[key].append(statistics.mean(history) if how == "mean" else history[-1])
        lines.append("| " + " | ".join([arm, *(mean_std(values[key]) for key, _ in INSTRUMENTS)]) + " |")
    return "\n".join(lines) + "\n"


def pooled_comparison(out: Path, arms: list[str], seeds: list[int], subset: str, n_resamples: int) -> str:
    """95% bootstrap intervals, pooled over seeds, and paired tests against the control."""
    from empdg.evaluation.bootstrap import DEFAULT_METRICS, bootstrap_compare
    from empdg.evaluation.scored_examples import read_scored_examples

    seeds = [s for s in seeds if all(s in finished(out, arm, seeds) for arm in arms)]  # paired: same seeds
    if not seeds:
        return "(no seed finished for every arm yet)\n"
    examples = {}
    for arm in arms:
        pooled = []
        for seed in seeds:
            for example in read_scored_examples(out / f"{arm}-s{seed}" / "eval" / "predictions.jsonl"):
                pooled.append(dataclasses.replace(example, example_id=f"s{seed}:{example.example_id}"))
        examples[arm] = pooled
    metrics = (
        [*DEFAULT_METRICS, "sim_reference", "reply_emotion_acc"]
        if all(e.sim_reference is not None for pooled in examples.values() for e in pooled[:1])
        else None
    )  # the meaning metrics when the evaluations computed them
    comparison = bootstrap_compare(
        examples, baseline="control", subset=subset, metrics=metrics, n_resamples=n_resamples
    )
    comparison.write_csv(out / f"comparison_{subset}_{len(arms)}arms.csv")
    return f"seeds pooled: {', '.join(map(str, seeds))}\n\n" + comparison.markdown()


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--pretrain-updates", type=int, default=2000)
    parser.add_argument("--generator-updates", type=int, default=500)
    parser.add_argument("--g-steps", type=int, default=5)
    parser.add_argument("--critic-pretrain", type=int, default=150)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument(
        "--best",
        nargs="+",
        default=["gumbel", "gumbel_match"],
        choices=[a for a in ARMS if a != "control"],
        help="the arms whose ablations (no mismatch, no feedback) run (default: gumbel and gumbel_match)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--minilm",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the study on the MiniLM BERT2BERT built by python -m empdg.make_bert2bert DIR",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CKPT",
        help="start every arm from this checkpoint instead of pre-training one (e.g. the baselines' minilm row)",
    )
    parser.add_argument(
        "--generator-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override of the generator in every run, e.g. model.freeze_encoder=true",
    )
    default_out = REPO / "outputs" / "adversarial_study"
    args = parse_study_args(parser, default_out, "ARM")
    if args.minilm and not (args.minilm / "config.json").is_file():
        parser.error(f"--minilm {args.minilm}: no config.json there; build it: python -m empdg.make_bert2bert DIR")
    if args.init and not args.init.is_file():
        parser.error(f"--init {args.init}: no such checkpoint")
    if args.minilm and args.out == default_out:  # never resume from the EmpDG study's pre-trained generator
        args.out = default_out.with_name(default_out.name + "_minilm")
    if args.smoke:  # the pipeline in minutes on the built-in corpus: numbers mean nothing
        args.pretrain_updates, args.generator_updates, args.critic_pretrain, args.val_every = 30, 10, 5, 15
        args.bootstrap = min(args.bootstrap, 100)
        args.out = args.out.with_name(args.out.name + "_smoke")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = args.threads
    arms = arms_for(args.best)
    if not args.tables_only:
        # the whole budget: the pre-training runs alone
        init = args.init.resolve() if args.init else pretrain(args, args.out, args.threads * args.jobs)
        jobs = [(arm, overrides, seed) for seed in args.seeds for arm, overrides in arms.items()]
        if args.only:  # e.g. the control and the default arm on every seed first, ablations later
            chosen = [(name, int(seed)) for name, seed in (item.split(":") for item in args.only)]
            jobs = [(name, arms[name], seed) for name, seed in chosen]
            args.seeds = sorted({seed for _, seed in chosen} | set(args.seeds))
        print(f"{len(jobs)} runs ({len(arms)} arms x {len(args.seeds)} seeds), {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(train_and_evaluate, args, args.out, a, o, s, init, threads) for a, o, s in jobs]
            for future in futures:
                future.result()
    # the arms with a finished run (the control first): a study run with --only tabulates what it ran
    names = [arm for arm in arms if finished(args.out, arm, args.seeds)] or list(arms)
    report = ["# Adversarial study: results", "", "## Per arm, mean ± std over seeds (test, all turns)", ""]
    report += [seed_table(args.out, names, args.seeds)]
    report += ["## Critic sanity checks, pooled over seeds (last report of each run)", ""]
    report += [critic_check_table(args.out, names, args.seeds)]
    report += ["## Instruments logged during training (mean over seeds)", ""]
    report += [instrument_table(args.out, names, args.seeds)]
    for subset in ("all", "feedback"):
        report += [f"## Every arm vs the same-batch control, seeds every arm finished (subset {subset})", ""]
        report += [pooled_comparison(args.out, names, args.seeds, subset, args.bootstrap)]
        for arm in names[1:]:  # pooled over more seeds where an arm has them
            both = [s for s in args.seeds if s in finished(args.out, arm, args.seeds)]
            if len(both) > 1 and set(both) <= set(finished(args.out, "control", args.seeds)):
                report += [f"## {arm} vs the same-batch control, seeds {both} (subset {subset})", ""]
                report += [pooled_comparison(args.out, ["control", arm], both, subset, args.bootstrap)]
    text = "\n".join(report)
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
