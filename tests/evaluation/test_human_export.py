"""Exporting a blind study: alignment, stratified draw, opaque ids, attention checks and the task files."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from empdg.config.human_eval_schema import HumanStudyConfig
from empdg.errors import ConfigError, MissingFileError
from empdg.evaluation.human_export import (
    align_systems,
    annotator_views,
    build_study,
    context_text,
    export_study,
    label_studio_config,
    stratified_sample,
)
from empdg.evaluation.release_format import PredictionRecord, write_jsonl, write_release_file

EMOTIONS = ["sad"] * 6 + ["joyful"] * 3 + ["afraid"] * 3


def records(system: str, n: int = 12) -> list[PredictionRecord]:
    return [
        PredictionRecord(EMOTIONS[i % len(EMOTIONS)], [f"speaker turn {i} ."], f"{system} reply {i}", f"gold {i}")
        for i in range(n)
    ]


def test_stratified_sample_gives_each_emotion_its_share() -> None:
    # 6 sad, 3 joyful, 3 afraid, 4 drawn: exact shares 2, 1, 1
    picked = stratified_sample(EMOTIONS, 4, seed=3)
    assert Counter(EMOTIONS[i] for i in picked) == {"sad": 2, "joyful": 1, "afraid": 1}
    assert picked == sorted(picked) == stratified_sample(EMOTIONS, 4, seed=3)
    # 5 drawn: 2.5, 1.25, 1.25 -> floors 2, 1, 1, the one left to the largest remainder (sad)
    assert Counter(EMOTIONS[i] for i in stratified_sample(EMOTIONS, 5, seed=0)) == {"sad": 3, "joyful": 1, "afraid": 1}
    assert stratified_sample(EMOTIONS, 50, seed=0) == list(range(12))


def test_systems_are_aligned_on_shared_examples_whatever_their_order_and_spacing() -> None:
    a = records("a")
    b = list(reversed(records("b")))[1:]  # another order, example 11 missing
    for record in b:  # KEMP-like spacing and case of the same context and gold reply
        record.context = [turn.replace(" .", ".").upper() for turn in record.context]
    aligned = align_systems({"a": a, "b": b})
    assert [ex["a"].pred for ex in aligned] == [f"a reply {i}" for i in range(11)]
    assert all(ex["b"].pred == ex["a"].pred.replace("a reply", "b reply") for ex in aligned)


def test_alignment_uses_example_ids_when_every_record_has_one() -> None:
    a, b = records("a", 3), records("b", 3)
    for i, record in enumerate(a):
        record.example_id = f"x{i}"
    for i, record in enumerate(b):
        record.example_id, record.ref = f"x{2 - i}", "another gold"  # ids, not references, decide
    assert [(ex["a"].pred, ex["b"].pred) for ex in align_systems({"a": a, "b": b})] == [
        ("a reply 0", "b reply 2"), ("a reply 1", "b reply 1"), ("a reply 2", "b reply 0")
    ]  # fmt: skip


def _study(n_systems: int = 3, **settings) -> tuple[dict, dict[str, str]]:
    names = [f"sys{i}" for i in range(n_systems)]
    aligned = align_systems({name: records(name) for name in names})
    return build_study(aligned, names, HumanStudyConfig(**{"n_dialogues": 4, "attention_share": 0.25, **settings}))


def test_the_study_holds_every_pair_every_rating_and_its_share_of_checks() -> None:
    manifest, opaque = _study()
    kinds = Counter(task["kind"] for task in manifest["tasks"])
    # 4 dialogues × 3 pairs = 12 pairwise, ceil(0.25 × 12) = 3 checks; 4 × 3 ratings, ceil(0.25 × 12) = 3 checks
    assert kinds == {"pairwise": 12, "check": 3, "rating": 12, "rating_check": 3}
    assert sorted(opaque.values()) == ["S1", "S2", "S3"]
    pairs = Counter(frozenset((t["left"], t["right"])) for t in manifest["tasks"] if t["kind"] == "pairwise")
    assert set(pairs.values()) == {4}
    sides = Counter(t["left"] for t in manifest["tasks"] if t["kind"] == "pairwise")
    assert len(sides) == 3  # left/right drawn: not always the lower id on the left
    for check in (t for t in manifest["tasks"] if t["kind"] in ("check", "rating_check")):
        assert check["distractor_dialogue_id"] != check["dialogue_id"]
    assert manifest["rating_check_max"] == 2
    assert _study() == (manifest, opaque)  # seeded
    assert _study(seed=1) != (manifest, opaque)


def test_export_writes_blind_files_and_the_key_apart(tmp_path: Path) -> None:
    jsonl, release = tmp_path / "run.jsonl", tmp_path / "pred_Model.txt"
    write_jsonl(jsonl, records("Alpha"))
    write_release_file(release, records("Beta"))
    systems = {"Alpha": str(jsonl), "Beta": {"path": str(release)}}
    manifest, files = export_study(systems, HumanStudyConfig(n_dialogues=4, attention_share=0.5), tmp_path / "study")
    out = tmp_path / "study"
    names = {p.relative_to(out).as_posix() for p in files}
    assert names == {"study.json", "system_key.json", "label_studio/pairwise_tasks.json",
                     "label_studio/pairwise_config.xml", "label_studio/ratings_tasks.json",
                     "label_studio/ratings_config.xml", "csv/pairwise.csv", "csv/ratings.csv"}  # fmt: skip
    key = json.loads((out / "system_key.json").read_text())
    assert {entry["name"] for entry in key["systems"].values()} == {"Alpha", "Beta"}
    for shown in ("label_studio", "csv"):  # what annotators see names no system, not even by its opaque id
        for path in (out / shown).iterdir():
            text = path.read_text(encoding="utf-8-sig")
            assert "Alpha reply" in text or "Beta reply" in text or path.suffix == ".xml"
            for word in ('Alpha"', 'Beta"', "S1", "S2", "check", "gold_side", "pred_Model"):
                assert word not in text, (path, word)
    tasks = json.loads((out / "label_studio" / "pairwise_tasks.json").read_text())
    assert len(tasks) == 4 + 2 and set(tasks[0]["data"]) == {"task_id", "dialogue", "context", "reply_a", "reply_b"}
    assert tasks[0]["data"]["dialogue"][-1]["author"] == "Speaker"
    with (out / "csv" / "ratings.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 + 4 and all(row["empathy"] == row["annotator"] == "" for row in rows)  # ceil(0.5 × 8) checks
    assert (out / "csv" / "ratings.csv").read_bytes().startswith(b"\xef\xbb\xbf")  # spreadsheets read it as UTF-8


def test_a_rating_check_shows_another_dialogues_gold_reply_as_the_reply() -> None:
    manifest, _ = _study()
    dialogues = {d["dialogue_id"]: d for d in manifest["dialogues"]}
    _, ratings = annotator_views(manifest)
    shown = {view["task_id"]: view for view in ratings}
    checks = [t for t in manifest["tasks"] if t["kind"] == "rating_check"]
    for check in checks:
        view = shown[check["task_id"]]
        assert view["reply"] == dialogues[check["distractor_dialogue_id"]]["reference"]
        assert view["context"] == context_text(dialogues[check["dialogue_id"]]["context"])
    assert len(ratings) == 12 + len(checks) and set(ratings[0]) == {"task_id", "dialogue", "context", "reply"}


def test_a_reply_that_a_spreadsheet_would_run_as_a_formula_is_quoted(tmp_path: Path) -> None:
    a, b = records("a", 2), records("b", 2)
    a[0].pred = b[0].pred = '=HYPERLINK("http://x")'
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    export_study({"a": str(tmp_path / "a.jsonl"), "b": str(tmp_path / "b.jsonl")},
                 HumanStudyConfig(n_dialogues=2), tmp_path / "s")  # fmt: skip
    with (tmp_path / "s" / "csv" / "ratings.csv").open(encoding="utf-8-sig", newline="") as handle:
        replies = {row["reply"] for row in csv.DictReader(handle)}
    assert '\'=HYPERLINK("http://x")' in replies and not any(r.startswith("=") for r in replies)


def test_label_studio_configs_ask_each_criterion() -> None:
    pairwise, ratings = label_studio_config("pairwise"), label_studio_config("ratings")
    for criterion in ("empathy", "relevance", "fluency"):
        assert f'<Choices name="{criterion}" toName="dialogue"' in pairwise
        assert f'<Rating name="{criterion}" toName="reply" maxRating="5"' in ratings
    assert pairwise.count('<Choice value="Tie"/>') == 3


@pytest.mark.parametrize(
    ("systems", "error", "text"),
    [
        ({"a": "A_FILE"}, ConfigError, "two or more systems"),
        ({"a": "A_FILE", "b": "nowhere.jsonl"}, MissingFileError, "systems.b="),
        ({"a": "A_FILE", "b": {"file": "A_FILE"}}, ConfigError, "systems.b: give a file"),
        ({"a": "A_FILE", "b": {"path": "A_FILE", "system": "MOE"}}, ConfigError, "holds one unnamed system"),
        ({"a": "A_FILE", "b": "OTHER_FILE"}, ConfigError, "share no example"),
    ],
)
def test_export_refuses_what_cannot_make_a_study(tmp_path: Path, systems: dict, error: type, text: str) -> None:
    write_jsonl(tmp_path / "a.jsonl", records("a", 3))
    other = records("o", 3)
    for record in other:
        record.ref = "another test set"
    write_jsonl(tmp_path / "o.jsonl", other)
    paths = {"A_FILE": str(tmp_path / "a.jsonl"), "OTHER_FILE": str(tmp_path / "o.jsonl")}
    resolved = {k: ({**v, **{f: paths.get(x, x) for f, x in v.items()}} if isinstance(v, dict) else paths.get(v, v))
                for k, v in systems.items()}  # fmt: skip
    with pytest.raises(error, match=text):
        export_study(resolved, HumanStudyConfig(n_dialogues=2), tmp_path / "out")


def test_the_command_counts_each_kind_of_task(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    for name in ("a", "b"):
        write_jsonl(tmp_path / f"{name}.jsonl", records(name))
    systems = f"systems={{a: {tmp_path / 'a.jsonl'}, b: {tmp_path / 'b.jsonl'}}}"
    command = [sys.executable, "-m", "empdg.human_export", systems, "study.n_dialogues=4",
               "study.attention_share=0.25", f"paths.output_dir={tmp_path / 'study'}"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    # 4 pairwise tasks (one pair) + ceil(0.25 × 4) checks; 8 rating tasks + ceil(0.25 × 8) checks
    assert "4 pairwise tasks + 1 attention checks, 8 rating tasks + 2 attention checks" in done.stdout
