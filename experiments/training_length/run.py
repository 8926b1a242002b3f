#!/usr/bin/env python
"""Training length: does a generator say more distinct things, greedily, when it trains longer?

One MLE run (no critics) keeps a checkpoint every ``--every`` updates up to ``--updates``; each is decoded
greedily on every test turn and scored with every metric (the meaning metrics included); each later
checkpoint is compared with the first one, paired over the same test examples (bootstrap intervals). On the
real sample one epoch is 168 updates of 16, so 10,000 updates are about 60 epochs: the test perplexity says
where the model stops generalising and starts reciting.

    experiments/training_length/run.py ../shared/data/ed-real-sample --updates 10000 --every 2000 \
        [--seed 1] [--out outputs/training_length] [--threads 1] [hydra overrides for the training run]
    experiments/training_length/run.py --smoke           # the built-in corpus, tiny budgets: numbers mean nothing

The generator is ``model=empdg`` unless an override says otherwise (the GloVe EmpDG of the other studies:
``model.emb_dim=50 model.embeddings.source=glove-6b-50d``; a pretrained generator's perplexity is per subword
piece, ``subword ppl``). A finished training run (its ``TRAINED`` marker)
and every finished evaluation are reused. Results: OUT/results.md and OUT/comparison.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study_common import (  # noqa: E402
    REPO,
    evaluate_test_split,
    perplexity_key,
    point_table,
    python,
    real_data,
    run,
)

from empdg.data.ed_csv import load_ed_splits  # noqa: E402
from empdg.data.examples import listener_turns  # noqa: E402
from empdg.data.text import normalize  # noqa: E402
from empdg.evaluation.bootstrap import compare_prediction_files  # noqa: E402

SMOKE = ["experiment=quickstart", "training.sample_generations=0"]
POINT = (("ppl", "ppl", 1), ("emotion_acc", "emotion acc.", 3), ("dist_1", "Dist-1", 2), ("dist_2", "Dist-2", 2),
         ("bleu_4", "BLEU-4", 2), ("unique_replies", "unique", 0), ("avg_len", "avg len", 1),
         ("valence_agreement", "valence agr.", 3), ("sim_reference", "sim. ref.", 3),
         ("sim_context", "sim. last turn", 3), ("reply_emotion_acc", "reply emotion acc.", 3))  # fmt: skip
PAIRED = ("dist_2", "unique_replies", "bleu_4", "valence_agreement", "sim_reference", "reply_emotion_acc")


def point_columns(metrics: dict) -> tuple:
    """POINT, its perplexity per subword piece for a pretrained generator's ``metrics``."""
    return POINT if perplexity_key(metrics) == "ppl" else (("subword_ppl", "subword ppl", 1), *POINT[1:])


def steps(args) -> list[int]:
    """The checkpoints' update counts: every ``--every`` updates (``--updates`` is a multiple of it)."""
    return list(range(args.every, args.updates + 1, args.every))


def data(args) -> list[str]:
    return SMOKE if args.smoke else real_data(Path(args.data_root).resolve())


def train(args) -> Path:
    """The one MLE run, a checkpoint kept every ``--every`` updates; its checkpoints folder."""
    folder = args.out / "train"
    marker = folder / "TRAINED"  # a checkpoint alone is no proof: they are written as the run goes
    if not marker.exists():
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            python(), "train.py", *data(args), "model=empdg", "adversarial=none",
            f"training.phases.generator_pretrain={args.updates}",
            "callbacks.checkpoint.monitor=null", "callbacks.checkpoint.save_top_k=-1",
            f"callbacks.checkpoint.every_n_train_steps={args.every}", "trainer.enable_progress_bar=false",
            f"seed={args.seed}", f"experiment_name={args.out.name}", f"run_name=mle-{args.updates}-s{args.seed}",
            f"paths.output_dir={folder.resolve()}", f"hydra.run.dir={(folder / 'hydra').resolve()}",
            *args.overrides,
        ]  # fmt: skip
        run(command, folder / "train.log", args.threads)
        marker.touch()
    return folder / "checkpoints"


def evaluate(args, checkpoint: Path, name: str) -> Path:
    """Greedy decoding of every test turn into OUT/<name>/ (kept when already there); its predictions."""
    overrides = ["decoding=greedy", *args.eval_override]  # --smoke leaves data_root None: the checkpoint's data
    return evaluate_test_split(checkpoint, args.data_root, args.out / name, overrides, args.threads)


def copy_table(data_root: str, predictions: dict[str, Path]) -> str:
    """How many greedy replies are a training-split listener reply word for word (normalised as the data are):
    a model that recites its training replies would say many distinct things without composing any."""
    conversations = load_ed_splits(Path(data_root))[0]["train"]
    training = {" ".join(normalize(c.utterances[t])) for c in conversations for t in listener_turns(c)}
    lines = ["| updates | replies that are a training reply | distinct replies that are one |", "|---|---|---|"]
    for name, path in predictions.items():
        replies = [json.loads(line)["pred"] for line in path.read_text(encoding="utf-8").splitlines()]
        copied, distinct = sum(r in training for r in replies), set(replies)
        share = copied / max(1, len(replies))
        row = f"{share:.1%} ({copied:,} of {len(replies):,}) | {len(distinct & training):,} of {len(distinct):,}"
        lines.append(f"| {name.removeprefix('step_')} | {row} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root", nargs="?", help="folder with the official train/valid/test.csv")
    parser.add_argument("--smoke", action="store_true", help="the built-in corpus and tiny budgets")
    parser.add_argument("--updates", type=int, default=10_000, help="MLE updates of the run")
    parser.add_argument("--every", type=int, default=2_000, help="keep and evaluate a checkpoint every N updates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "training_length")
    parser.add_argument(
        "--eval-override", action="append", default=[], metavar="KEY=VALUE", help="a Hydra override of every evaluation"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the training run")
    args, unknown = parser.parse_known_args()  # overrides after the options land in ``unknown``
    args.overrides += unknown
    if args.smoke and args.data_root:  # with --smoke there is no DATA_ROOT: the first override landed there
        args.overrides.insert(0, args.data_root)
        args.data_root = None
    if not args.smoke and not args.data_root:
        parser.error("give DATA_ROOT (a folder with train/valid/test.csv) or --smoke")
    if args.every < 1 or args.updates % args.every:  # the run checkpoints every N updates, not at its end
        parser.error(f"--updates {args.updates} must be a multiple of --every {args.every}")
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoints = train(args)
    predictions = {}
    for step in steps(args):
        checkpoint = checkpoints / f"step-{step}.ckpt"
        if not checkpoint.exists():  # a run that stopped early, or a checkpoint naming this code does not know
            raise SystemExit(f"error: {checkpoint} is missing; delete {args.out / 'train'} and run again")
        predictions[f"step_{step}"] = evaluate(args, checkpoint, f"step_{step}")
    names = list(predictions)
    columns = point_columns(json.loads((args.out / names[0] / "metrics.json").read_text(encoding="utf-8")))
    comparison = compare_prediction_files(
        predictions, baseline=names[0], subset="all", metrics=PAIRED, n_resamples=args.bootstrap, seed=0
    )
    comparison.write_csv(args.out / "comparison.csv")
    text = (
        f"# Training length: {args.updates:,} MLE updates, seed {args.seed}\n\n"
        + "## Point values (test, all turns, greedy)\n\n"
        + point_table(args.out, names, columns, "updates", lambda name: name.removeprefix("step_"))
        + f"\n## Against {names[0].removeprefix('step_')} updates, paired bootstrap\n\n"
        + comparison.markdown()
    )
    if not args.smoke:
        text += "\n## Copies of training replies\n\n" + copy_table(args.data_root, predictions)
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
