"""Score every released test-set output with ``empdg-evaluate`` and print the markdown table of
docs/released_outputs.md.

The EmpDG release (7 files) covers the 2,713 listener turns followed by a speaker utterance; the MoEL, MIME and
KEMP releases (8 systems) cover all 5,255 listener turns. Distinct-n and the other corpus metrics depend on the
set of turns, so the peers are also scored on the EmpDG release's 2,713 turns: a turn is one of them exactly when
the next block continues its conversation with this turn's reference and one speaker utterance (checked here
against the EmpDG release: same count, same contexts and references up to KEMP's spacing of punctuation).

    .venv/bin/python experiments/released_outputs/run.py [--out DIR] [--shared DIR]
    .venv/bin/python experiments/released_outputs/run.py --meaning ED_ROOT [--only EmpDG MOE ...]
        # the metrics that read meaning on the 2,713 turns, the reply-emotion classifier trained on ED_ROOT's
        # training split (docs/real_weights.md); --only: systems by file name (EmpDG release) or system name
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from study_common import REPO, python, run  # noqa: E402

from empdg.evaluation.release_format import PredictionRecord, read_predictions, write_jsonl  # noqa: E402

EMPDG_FILES = ["Transformer", "EmoPrepend", "MoEL", "EmpDG_woD", "EmpDG_woG", "EmpDG", "EmpDG_w_feedback"]
PEER_SYSTEMS = [
    ("MoEL release", "moel_generation_result.txt", "trs", "Transformer (MoEL's `trs`)"),
    ("MoEL release", "moel_generation_result.txt", "trs+multitask", "Multi-TRS (`trs+multitask`)"),
    ("MoEL release", "moel_generation_result.txt", "MOE", "MoEL (`MOE`)"),
    ("MoEL release", "moel_generation_result.txt", "MOE+oracle", "MoEL, gold emotion (`MOE+oracle`)"),
    ("MIME release", "mime_output.txt", "Topk", "MIME, top-k sampling (`Topk`)"),
    ("MIME release", "mime_output.txt", "Beam", "MIME, beam search (`Beam`)"),
    ("MIME release", "mime_output.txt", "Greedy", "MIME, greedy (`Greedy`)"),
    ("KEMP release", "kemp_KEMP.txt", None, "KEMP"),
]
COLUMNS = [
    ("dist_1", "Dist-1", 2),
    ("dist_2", "Dist-2", 2),
    ("bleu_1", "BLEU-1", 2),
    ("bleu_4", "BLEU-4", 2),
    ("avg_len", "avg len", 2),
    ("rep_3", "rep-3 %", 2),
    ("unique_replies", "unique replies", 0),
    ("valence_agreement", "valence agr.", 3),
    ("valence_neutral_share", "neutral", 3),
]


MEANING_COLUMNS = [
    ("sim_reference", "sim. to reference", 3),
    ("sim_context", "sim. to last turn", 3),
    ("reply_emotion_acc", "reply emotion acc.", 3),
    ("reply_emotion_acc_gold", "gold replies' (ceiling)", 3),
]


def evaluate(predictions: Path, system: str | None, out: Path, tag: str, extra: tuple[str, ...] = ()) -> dict:
    """One ``python -m empdg.evaluate predictions_file=...`` run (no MLflow); its metrics, the last stdout line."""
    command = [python(), "-m", "empdg.evaluate", f"predictions_file={predictions}", "logger=none", *extra]
    command += [f"paths.root_dir={out}", f"paths.output_dir={out / tag}"]
    command += [f"evaluate.system={system}"] if system else []
    log = out / f"{tag}.log"
    with contextlib.redirect_stdout(sys.stderr):  # progress on stderr: stdout is the table alone
        run(command, log, threads=1)
    return json.loads(next(line for line in reversed(log.read_text().splitlines()) if line.startswith("{")))


def feedback_turns(records: list[PredictionRecord]) -> list[PredictionRecord]:
    """The turns the next block continues with this turn's reference plus one speaker utterance."""
    return [
        record
        for record, after in zip(records, records[1:])
        if len(after.context) == len(record.context) + 2 and after.context[:-1] == [*record.context, record.ref]
    ]


def unspaced(record: PredictionRecord) -> tuple[str, ...]:
    """Context and reference without spaces: KEMP tokenizes some punctuation apart (``* does *``, ``too ..``)."""
    return tuple("".join(text.split()) for text in [*record.context, record.ref])


def row(name: str, source: str, turns: str, metrics: dict, columns: list = COLUMNS) -> str:
    cells = [f"{metrics[key]:.{digits}f}" if digits else str(metrics[key]) for key, _, digits in columns]
    return "| " + " | ".join([name, source, turns, str(metrics["n_examples"]), *cells]) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None, help="folder for outputs and logs (default: a temp dir)")
    parser.add_argument("--meaning", type=Path, default=None, help="ED folder: the meaning-metrics table instead")
    parser.add_argument("--only", nargs="*", default=None, help="with --meaning: these systems only")
    args = parser.parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="released_outputs_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    empdg_dir, peer_dir = args.shared / "empdg-release-outputs", args.shared / "peer-release-outputs"
    released = read_predictions(empdg_dir / "pred_EmpDG.txt")
    if args.meaning is not None:
        meaning_table(args, out, empdg_dir, peer_dir, released)
        return
    rows = []
    for name in EMPDG_FILES:
        metrics = evaluate(empdg_dir / f"pred_{name}.txt", None, out, name)
        rows.append(row(name, f"EmpDG release `pred_{name}.txt`", "feedback (2,713)", metrics))
    same_turns = []
    for release, file, system, name in PEER_SYSTEMS:
        tag = f"{file.split('_')[0]}-{system or 'KEMP'}"
        metrics = evaluate(peer_dir / file, system, out, tag)
        rows.append(row(name, f"{release} `{file}`", "all (5,255)", metrics))
        subset = feedback_turns(read_predictions(peer_dir / file, system))
        if [unspaced(r) for r in subset] != [unspaced(r) for r in released]:
            raise SystemExit(f"{file} {system}: its feedback turns are not the EmpDG release's 2,713")
        write_jsonl(out / f"{tag}.feedback.jsonl", subset)
        metrics = evaluate(out / f"{tag}.feedback.jsonl", None, out, f"{tag}.feedback")
        same_turns.append(row(name, f"{release} `{file}`", "feedback (2,713)", metrics))
    header = ["system", "file", "turns", "n", *(title for _, title, _ in COLUMNS)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("\n".join(rows + same_turns))
    print(f"\noutputs and logs: {out}", file=sys.stderr)


def meaning_table(args, out: Path, empdg_dir: Path, peer_dir: Path, released: list[PredictionRecord]) -> None:
    """The metrics that read meaning for each system on the EmpDG release's 2,713 turns."""
    extra = ("evaluate.meaning=true", "data=empathetic_dialogues", f"data.root={args.meaning.resolve()}",
             "data.download=false")  # fmt: skip
    wanted = lambda key: args.only is None or key in args.only  # noqa: E731
    rows = []
    for name in EMPDG_FILES:
        if wanted(name):
            metrics = evaluate(empdg_dir / f"pred_{name}.txt", None, out, f"meaning-{name}", extra)
            rows.append(row(name, f"EmpDG release `pred_{name}.txt`", "feedback (2,713)", metrics, MEANING_COLUMNS))
    for release, file, system, name in PEER_SYSTEMS:
        if not wanted(system or "KEMP"):
            continue
        tag = f"{file.split('_')[0]}-{system or 'KEMP'}"
        subset = feedback_turns(read_predictions(peer_dir / file, system))
        if [unspaced(r) for r in subset] != [unspaced(r) for r in released]:
            raise SystemExit(f"{file} {system}: its feedback turns are not the EmpDG release's 2,713")
        write_jsonl(out / f"{tag}.feedback.jsonl", subset)
        metrics = evaluate(out / f"{tag}.feedback.jsonl", None, out, f"meaning-{tag}", extra)
        rows.append(row(name, f"{release} `{file}`", "feedback (2,713)", metrics, MEANING_COLUMNS))
    header = ["system", "file", "turns", "n", *(title for _, title, _ in MEANING_COLUMNS)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("\n".join(rows))
    print(f"\noutputs and logs: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
