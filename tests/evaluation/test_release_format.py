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


_LINE = '{"emotion": "sad", "context": ["a"], "pred": "x", "ref": "y"}\n'


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"emotion": "sad", "context": 5, "pred": "x", "ref": "y"}', ":2: context: Input should be a valid list"),
        ('{"emotion": "sad", "context": ["a"], "pred": ["x"], "ref": "y"}', ":2: pred: Input should be a valid string"),
        ('{"emotion": 3, "context": ["a"], "pred": "x", "ref": "y"}', ":2: emotion: Input should be a valid string"),
        ('{"emotion": "sad", "context": [1], "pred": "x", "ref": "y"}', ":2: context[0]: Input should be a valid str"),
        ('{"emotion": "sad", "context": [], "pred": "x", "ref": "y", "nll_sum": "low"}', ":2: nll_sum: "),
        ('{"emotion": "sad", "context": [], "pred": "x", "ref": "y", "n_tokens": -3}', ":2: n_tokens: "),
        ('{"emotion": "sad", "context": ' + "[" * 50_000 + "]" * 50_000 + ', "pred": "x", "ref": "y"}', ":2: nested"),
        ('{"emotion": "sad", "context": ' + "[" * 50_000, ":2: nested"),
        ('["sad", [], "x", "y"]', ":2: expected a JSON object, found list"),
    ],
)
def test_jsonl_lines_of_the_wrong_shape_name_file_line_and_key(tmp_path: Path, line: str, problem: str) -> None:
    from empdg.data.errors import InvalidFileError
    from empdg.evaluation.scored_examples import read_scored_examples

    path = tmp_path / "preds.jsonl"
    path.write_text(_LINE + line + "\n", encoding="utf-8")
    for read in (read_predictions, read_scored_examples):  # evaluate and the bootstrap comparison
        with pytest.raises(InvalidFileError) as info:
            read(path)
        assert str(info.value).startswith(f"{path}{problem}"), str(info.value)


@pytest.mark.parametrize(("name", "line"), [("preds.jsonl", 2), ("pred_x.txt", 5)])
def test_non_utf8_prediction_file_names_file_and_byte(tmp_path: Path, name: str, line: int) -> None:
    from empdg.data.errors import InvalidFileError

    path = tmp_path / name
    body = _LINE if name.endswith(".jsonl") else "emotion:sad\nContext:['a']\nPred:x\nRef:y\n"
    path.write_bytes(body.encode() + "emotion:café\n".encode("latin-1"))
    with pytest.raises(InvalidFileError, match=rf"^{path}: prediction file is not UTF-8 text \(byte \d+, line {line}"):
        read_predictions(path)


def test_prediction_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    from empdg.data.errors import InvalidFileError
    from empdg.evaluation.prediction_record import DEFAULT_MAX_BYTES
    from empdg.evaluation.scored_examples import read_scored_examples

    path = tmp_path / "preds.jsonl"
    path.write_text(_LINE * 10, encoding="utf-8")
    size = path.stat().st_size
    assert len(read_predictions(path, max_bytes=size)) == 10
    for read in (read_predictions, read_scored_examples):
        with pytest.raises(InvalidFileError, match=rf"over the limit of {size - 1} bytes; raise evaluate.max_file_mb"):
            read(path, max_bytes=size - 1)
    with path.open("r+b") as handle:  # 200 MB on disk, no page written: only the size is looked at
        handle.truncate(200 * 1024 * 1024)
    with pytest.raises(InvalidFileError, match=r"prediction file is 200.0 MB, over the limit of 64 MB"):
        read_predictions(path)
    assert DEFAULT_MAX_BYTES == 64 * 1024 * 1024


def test_evaluate_max_file_mb_is_the_limit_of_predictions_file(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from empdg.config import compose
    from empdg.data.errors import InvalidFileError
    from empdg.errors import ConfigError
    from empdg.evaluation.pipeline import max_file_bytes, read_prediction_file

    assert compose("evaluate", []).evaluate.max_file_mb == 64
    assert max_file_bytes(OmegaConf.create({"evaluate": {}})) == 64 * 1024 * 1024  # a config from before the key
    small = OmegaConf.create({"evaluate": {"max_file_mb": 0.00001}})
    assert max_file_bytes(small) == 10
    path = tmp_path / "preds.jsonl"
    path.write_text(_LINE, encoding="utf-8")
    with pytest.raises(InvalidFileError, match=r"62 bytes, over the limit of 10 bytes; raise evaluate.max_file_mb"):
        read_prediction_file(str(path), None, max_file_bytes(small))
    for bad in (0, -1, "big", True):
        with pytest.raises(ConfigError, match="evaluate.max_file_mb=.* must be a number of megabytes > 0"):
            max_file_bytes(OmegaConf.create({"evaluate": {"max_file_mb": bad}}))
