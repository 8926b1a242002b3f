#!/usr/bin/env python
"""Decoding study: one trained checkpoint, decoded greedily, by beam search and by sampling at several
temperatures, scored on the same test turns, each against greedy with paired bootstrap intervals.

How many distinct things a model says depends on the decoder as much as on the model; this measures the
trade between variety (Dist-n, unique replies) and what the replies mean (similarity to the reference and to
the last turn, valence agreement, the emotion a classifier reads in them) for one model.

    experiments/decoding/run.py ../shared/data/ed-real-sample --checkpoint RUN/checkpoints/last.ckpt \
        --out outputs/decoding [--temperatures 0.3 0.4 0.5 0.8] [--threads 1]
    experiments/decoding/run.py --smoke --checkpoint RUN/checkpoints/last.ckpt   # the built-in corpus

Sampling uses conf/decoding/sample.yaml (top-k 40, top-p 0.9, seed 0) at each temperature; beam search
conf/decoding/beam.yaml (5 beams, no repeated 3-gram). Results: OUT/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study_common import REPO, evaluate_test_split, point_table  # noqa: E402

from empdg.evaluation.bootstrap import compare_prediction_files  # noqa: E402

POINT = (("dist_1", "Dist-1", 2), ("dist_2", "Dist-2", 2), ("bleu_4", "BLEU-4", 2), ("unique_replies", "unique", 0),
         ("avg_len", "avg len", 1), ("rep_3", "rep-3", 1), ("valence_agreement", "valence agr.", 3),
         ("sim_reference", "sim. ref.", 3), ("sim_context", "sim. last turn", 3),
         ("reply_emotion_acc", "reply emotion acc.", 3))  # fmt: skip
PAIRED = ("dist_2", "unique_replies", "bleu_4", "valence_agreement", "sim_reference", "sim_context",
          "reply_emotion_acc")  # fmt: skip


def decodings(temperatures: list[float]) -> dict[str, list[str]]:
    """Name -> the decoding overrides of ``empdg.evaluate``: greedy first (the baseline), beam, each temperature."""
    chosen = {"greedy": ["decoding=greedy"], "beam": ["decoding=beam"]}
    for t in temperatures:
        chosen[f"sample_t{t:g}"] = ["decoding=sample", f"decoding.temperature={t:g}"]
    return chosen


def evaluate(args, name: str, overrides: list[str]) -> Path:
    """Decode the test turns with ``overrides`` into OUT/<name>/ (kept when already there); its predictions."""
    data_root = None if args.smoke else args.data_root
    return evaluate_test_split(args.checkpoint, data_root, args.out / name, [*overrides, *args.overrides], args.threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root", nargs="?", help="folder with the official train/valid/test.csv")
    parser.add_argument("--smoke", action="store_true", help="the built-in corpus (the checkpoint's own data)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a trained run's checkpoint file")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "decoding")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every evaluation")
    args = parser.parse_args()
    if not args.smoke and not args.data_root:
        parser.error("give DATA_ROOT (a folder with train/valid/test.csv) or --smoke")
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = decodings(args.temperatures)
    predictions = {name: evaluate(args, name, overrides) for name, overrides in chosen.items()}
    comparison = compare_prediction_files(
        predictions, baseline="greedy", subset="all", metrics=PAIRED, n_resamples=args.bootstrap, seed=0
    )
    comparison.write_csv(args.out / "comparison.csv")
    text = (
        f"# Decoding study: `{args.checkpoint}`\n\n## Point values (test, all turns)\n\n"
        + point_table(args.out, list(chosen), POINT, "decoding")
        + "\n## Against greedy, paired bootstrap\n\n"
        + comparison.markdown()
    )
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
