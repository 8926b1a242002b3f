"""Reading annotations back: Label Studio exports and filled CSVs; a bad file names the file and the record."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from human_eval_helpers import export_synthetic_study

from empdg.data.errors import InvalidFileError
from empdg.errors import MissingFileError
from empdg.evaluation.human_import import read_annotations, read_study
from empdg.evaluation.human_simulation import (
    SimulatedAnnotator,
    simulate_answers,
    write_csv_answers,
    write_label_studio_export,
)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_synthetic_study(tmp_path_factory.mktemp("human"), n_systems=2)


@pytest.fixture(scope="module")
def answers(study: Path) -> dict:
    return simulate_answers(study, [SimulatedAnnotator("ann", prefers="sys1")])


def _export(study: Path, answers: dict, kind: str, path: Path) -> list:
    write_label_studio_export(study, answers, kind, path)
    return json.loads(path.read_text())


def test_label_studio_export_and_csv_give_the_same_answers(study: Path, answers: dict, tmp_path: Path) -> None:
    loaded = read_study(study)
    exported = write_label_studio_export(study, answers, "ratings", tmp_path / "ratings.json")
    filled = write_csv_answers(study, answers["ann"], "ann", "ratings", tmp_path / "ratings.csv")
    from_json = {(a.task_id, a.criterion, a.value) for a in read_annotations([exported], loaded)}
    from_csv = {(a.task_id, a.criterion, a.value) for a in read_annotations([filled], loaded)}
    # (dialogues × systems + ceil(0.25 × 24) rating checks) × criteria
    assert from_json == from_csv and len(from_csv) == (12 * 2 + 6) * 3


def test_empty_cells_and_cancelled_annotations_are_no_answer(study: Path, answers: dict, tmp_path: Path) -> None:
    loaded = read_study(study)
    tasks = _export(study, answers, "pairwise", tmp_path / "p.json")
    tasks[0]["annotations"][0]["was_cancelled"] = True
    (tmp_path / "p.json").write_text(json.dumps(tasks))
    assert len(read_annotations([tmp_path / "p.json"], loaded)) == 3 * (len(tasks) - 1)
    path = write_csv_answers(study, {}, "", "pairwise", tmp_path / "blank.csv")
    assert read_annotations([path], loaded) == []


def _label_studio_case(mutate):
    def make(study: Path, answers: dict, tmp_path: Path) -> Path:
        tasks = _export(study, answers, "ratings", tmp_path / "export.json")
        mutate(tasks)
        (tmp_path / "export.json").write_text(json.dumps(tasks))
        return tmp_path / "export.json"

    return make


def _set(path: tuple, value):
    def mutate(tasks: list) -> None:
        target = tasks
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _csv_case(edit):
    def make(study: Path, answers: dict, tmp_path: Path) -> Path:
        path = write_csv_answers(study, answers["ann"], "ann", "pairwise", tmp_path / "filled.csv")
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
        edit(rows)
        with path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(rows)
        return path

    return make


RESULT = (1, "annotations", 0, "result", 0)
BAD_FILES = {
    "rating_out_of_range": (_label_studio_case(_set((*RESULT, "value"), {"rating": 7})),
                            "export.json: [1] (task r00002).annotations[0].result[0]: rating=7: expected an integer"),
    "unknown_question": (_label_studio_case(_set((*RESULT, "from_name"), "kindness")),
                         "[1] (task r00002).annotations[0].result[0]: from_name='kindness' is none of"),
    "result_not_a_list": (_label_studio_case(_set((1, "annotations", 0, "result"), "4")),
                          "export.json: [1].annotations[0].result: Input should be a valid list"),
    "task_without_id": (_label_studio_case(lambda tasks: tasks[2]["data"].pop("task_id")),
                        "export.json: [2].data.task_id: Field required"),
    "unknown_task": (_label_studio_case(_set((1, "data", "task_id"), "r99999")),
                     "[1] (task r99999).annotations[0].result[0]: task 'r99999' is not in"),
    "csv_bad_choice": (_csv_case(lambda rows: rows[2].__setitem__(5, "maybe")),
                       "filled.csv: row 3 (task p00002): empathy: 'maybe': expected A, B or tie"),
    "csv_rating_on_pairwise": (_csv_case(lambda rows: rows[3].__setitem__(6, "4")),
                               "filled.csv: row 4 (task p00003): relevance=4: task p00003 takes A, B or tie"),
    "csv_missing_column": (_csv_case(lambda rows: [row.pop(7) for row in rows]),
                           "filled.csv: row 1: header lacks column(s) fluency"),
    "csv_extra_cells": (_csv_case(lambda rows: rows[4].append("oops")),
                        "filled.csv: row 5 (task p00004): 9 cells, the header has 8"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_annotation_file_names_file_and_record(case: str, study: Path, answers: dict, tmp_path: Path) -> None:
    make, message = BAD_FILES[case]
    path = make(study, answers, tmp_path)
    with pytest.raises(InvalidFileError) as caught:
        read_annotations([path], read_study(study))
    assert str(path) in str(caught.value) and message in str(caught.value), str(caught.value)


def test_unreadable_exports_are_refused_before_parsing(study: Path, tmp_path: Path) -> None:
    loaded = read_study(study)
    (tmp_path / "deep.json").write_text("[" * 100 + "]" * 100)
    (tmp_path / "notjson.json").write_text("task_id,empathy\n")
    (tmp_path / "big.json").write_text("[]" + " " * 2000)
    for name, text in (("deep.json", "nested more than 12 levels deep"), ("notjson.json", "not valid JSON"),
                       ("big.json", "over the limit of 1000 bytes; raise report.max_file_mb")):  # fmt: skip
        with pytest.raises(InvalidFileError, match=text):
            read_annotations([tmp_path / name], loaded, max_bytes=1000)
    with pytest.raises(MissingFileError, match="annotations: .*nowhere.json: no such file"):
        read_annotations([tmp_path / "nowhere.json"], loaded)


def test_the_same_answer_twice_is_refused(study: Path, answers: dict, tmp_path: Path) -> None:
    first = write_csv_answers(study, answers["ann"], "ann", "pairwise", tmp_path / "a.csv")
    second = write_csv_answers(study, answers["ann"], "ann", "pairwise", tmp_path / "b.csv")
    with pytest.raises(InvalidFileError, match=r"b.csv: row 2 \(task p00001\): annotator 'ann' answered empathy of "
                       r"task p00001 twice \(first at .*a.csv: row 2"):  # fmt: skip
        read_annotations([first, second], read_study(study))


def test_a_key_from_another_study_is_refused(study: Path, tmp_path: Path) -> None:
    other = export_synthetic_study(tmp_path / "other", n_systems=3)
    (other / "study.json").write_text((study / "study.json").read_text())
    with pytest.raises(InvalidFileError, match=r"system_key.json: systems \['S1', 'S2', 'S3'\] are not the study's"):
        read_study(other)
