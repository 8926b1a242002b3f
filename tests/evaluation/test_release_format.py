"""Parsing the published EmpDG outputs, and reading/writing our own prediction files."""

from __future__ import annotations

from pathlib import Path

import pytest

from empdg.data.text_metrics import distinct_n
from empdg.evaluation.release_format import (
    PredictionRecord,
    read_jsonl,
    read_predictions,
    read_release_file,
    write_jsonl,
    write_release_file,
)

RELEASE_FILES = [
    "pred_EmoPrepend.txt",
    "pred_EmpDG.txt",
    "pred_EmpDG_w_feedback.txt",
    "pred_EmpDG_woD.txt",
    "pred_EmpDG_woG.txt",
    "pred_MoEL.txt",
    "pred_Transformer.txt",
]
N_TEST_RESPONSES = 2713

# Two blocks in the release layout, with the trailing spaces of the real files; MoEL style repeats block 1.
MOEL_LIKE = (
    "emotion:guilty \n"
    "Context:['i hit a barrel .', \"it wasn't my fault\"] \n"
    "Greedy:oh no !  \n"
    "Ref:did you get hurt ? \n"
)
MOEL_LIKE = MOEL_LIKE + MOEL_LIKE + "emotion:caring \nContext:['tell me'] \nGreedy:sure .  \nRef:ok \n"


def _round2(value: float) -> float:
    return round(value, 2)


def test_empdg_file_parses_and_matches_published_distinct(release_outputs_dir: Path) -> None:
    records = read_release_file(release_outputs_dir / "pred_EmpDG.txt")
    assert len(records) == N_TEST_RESPONSES
    first = records[0]
    assert first.emotion == "guilty"
    assert first.context[0].startswith("yeah about 10 years ago")
    assert first.emotion_context == [
        "years",
        "ago",
        "horrifying",
        "experience",
        "fault",
        "hit",
        "water",
        "road",
    ]
    assert first.pred == "oh no ! i am so sorry . i am so sorry . i am so sorry . i am so sorry to hear that ."
    assert first.ref == "did you suffer any injuries ?"
    preds = [record.pred.split() for record in records]
    refs = [record.ref.split() for record in records]
    # the numbers the release README (and the paper) state
    assert (_round2(distinct_n(preds, 1)), _round2(distinct_n(preds, 2))) == (1.81, 6.94)
    assert (_round2(distinct_n(refs, 1)), _round2(distinct_n(refs, 2))) == (8.03, 41.56)


@pytest.mark.parametrize("name", RELEASE_FILES)
def test_every_release_file_parses(release_outputs_dir: Path, name: str) -> None:
    records = read_predictions(release_outputs_dir / name)
    assert len(records) == N_TEST_RESPONSES
    assert all(record.pred and record.ref and record.context and record.emotion for record in records)
    # every file follows the same test-set order
    assert records[-1].context == ["life is good , it is the gift that keeps on giving"]


def test_moel_greedy_lines(release_outputs_dir: Path) -> None:
    records = read_release_file(release_outputs_dir / "pred_MoEL.txt")
    assert records[0].pred == "oh no ! i hate spiders !"
    assert records[0].emotion_context is None
    empdg = read_release_file(release_outputs_dir / "pred_EmpDG.txt")
    assert [r.ref for r in records] == [r.ref for r in empdg]


def test_feedback_lines_are_kept(release_outputs_dir: Path) -> None:
    records = read_release_file(release_outputs_dir / "pred_EmpDG_w_feedback.txt")
    assert records[0].feedback is not None and records[0].feedback[:3] == ["no", "i", "was"]


def test_release_round_trip_of_real_file(release_outputs_dir: Path, tmp_path: Path) -> None:
    records = read_release_file(release_outputs_dir / "pred_EmpDG_w_feedback.txt")
    write_release_file(tmp_path / "out.txt", records)
    assert read_release_file(tmp_path / "out.txt") == records


def test_synthetic_moel_like_file(tmp_path: Path) -> None:
    path = tmp_path / "pred_MoEL.txt"
    path.write_text(MOEL_LIKE)
    with pytest.warns(UserWarning, match=r"dropped 1 block\(s\) identical to the block before them \(line\(s\) 5\)"):
        records = read_release_file(path)
    # the repeated first block is dropped (a counted warning), trailing spaces are stripped, Greedy is the prediction
    assert [r.emotion for r in records] == ["guilty", "caring"]
    assert records[0] == PredictionRecord(
        emotion="guilty",
        context=["i hit a barrel .", "it wasn't my fault"],
        pred="oh no !",
        ref="did you get hurt ?",
    )
    assert len(read_release_file(path, drop_duplicates=False)) == 3
    write_release_file(tmp_path / "again.txt", records, pred_key="Greedy")
    assert "Greedy:oh no !\n" in (tmp_path / "again.txt").read_text()
    assert read_predictions(tmp_path / "again.txt") == records


def test_unescaped_quote_in_context_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "pred.txt"
    path.write_text("emotion:sad\nContext:['it's over', 'why'] \nPred:sorry\nRef:oh\n")
    assert read_release_file(path)[0].context == ["it's over", "why"]


def test_jsonl_round_trip_and_detection(tmp_path: Path) -> None:
    records = [
        PredictionRecord("joyful", ["i won !"], "congrats !", "nice !", example_id="test-0", predicted_emotion="proud"),
        PredictionRecord("sad", ["a", "b"], "sorry", "oh no", emotion_context=["sad"]),
    ]
    path = tmp_path / "preds.jsonl"
    write_jsonl(path, records)
    assert read_jsonl(path) == records
    assert read_predictions(path) == records
    assert '"predicted_emotion"' in path.read_text().splitlines()[0]
    assert "emotion_context" not in path.read_text().splitlines()[0]  # None fields are omitted


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("\nhello world\n", ":2:"),  # neither format
        ("emotion:sad\nContext:['a']\nPrediction:x\nRef:y\n", ":3:"),  # unknown key
        ("emotion:sad\nContext:oops\nPred:x\nRef:y\n", ":2:"),  # context is not a list
        ("emotion:sad\nContext:['a']\nRef:y\n", ":1:"),  # block without a prediction
        ('{"emotion": "sad", "context": []}\n', ":1:"),  # JSONL without pred/ref
        ('{"emotion": "sad", "context": [], "pred": "a", "ref": "b"}\n{oops\n', ":2:"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.txt{where}"):
        read_predictions(path)
