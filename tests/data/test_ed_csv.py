"""The official ED CSV reader: comma escaping, extra fields, broken rows, missing files."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from empdg.data.conversation import EMOTIONS, SPLITS
from empdg.data.ed_csv import EDFormatWarning, load_ed_splits, read_ed_csv
from empdg.data.errors import DataError

HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags"
GOOD_ROWS = [
    "hit:1_conv:2,1,afraid,I heard a noise_comma_ at night,1,I was scared_comma_ really!,,",
    "hit:1_conv:2,2,afraid,I heard a noise_comma_ at night,2,Oh no. What was it?,5|5|5_2|2|5,",
    "hit:1_conv:2,3,afraid,I heard a noise_comma_ at night,1,Just the cat.,,",
]
BROKEN_ROWS = [
    "hit:3_conv:6,1,joyful,,1,too few fields",
    "hit:4_conv:8,x,joyful,,1,bad index,,",
    "hit:5_conv:9,1,happyish,,1,unknown emotion,,",
    "hit:6_conv:10,1,joyful,,1,,,",
]


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_reads_commas_extra_fields_empty_prompt_and_order(tmp_path: Path) -> None:
    rows = [
        GOOD_ROWS[0],
        # extra trailing fields: only the first eight are used
        "hit:7_conv:14,2,proud,,2,That is great_comma_ congrats!,,,extra,stuff",
        GOOD_ROWS[2],  # out of order: idx 3 before idx 2
        "hit:7_conv:14,1,proud,,1,My son graduated.,,",
        GOOD_ROWS[1],
    ]
    convs, report = read_ed_csv(write_csv(tmp_path / "train.csv", rows))
    assert [c.conv_id for c in convs] == ["hit:1_conv:2", "hit:7_conv:14"]  # first appearance
    first, second = convs
    assert first.emotion == "afraid"
    assert first.situation == "I heard a noise, at night"
    assert first.utterances == ["I was scared, really!", "Oh no. What was it?", "Just the cat."]
    assert second.situation == ""
    assert second.utterances == ["My son graduated.", "That is great, congrats!"]
    assert (report.rows, report.conversations, report.skipped_rows) == (5, 2, 0)
    assert report.extra_field_rows == 1
    assert report.skipped_examples == []


def test_broken_rows_are_counted_skipped_and_warned_once(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "valid.csv", GOOD_ROWS + BROKEN_ROWS)
    with pytest.warns(EDFormatWarning, match=r"skipped 4 of 7 rows") as record:
        convs, report = read_ed_csv(path)
    assert len(record) == 1
    assert [c.conv_id for c in convs] == ["hit:1_conv:2"]
    assert report.skipped_rows == 4
    assert [line for line, _ in report.skipped_examples] == [5, 6, 7, 8]
    reasons = [reason for _, reason in report.skipped_examples]
    assert reasons[0].startswith("too few fields")
    assert reasons[1].startswith("non-integer utterance_idx")
    assert reasons[2].startswith("unknown emotion label")
    assert reasons[3].startswith("empty utterance")
    assert "line 5" in str(record[0].message)


def test_clean_file_does_not_warn(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "test.csv", GOOD_ROWS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_ed_csv(path)


def test_invalid_utf8_and_crlf_do_not_break_reading(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    body = "\r\n".join([HEADER, *GOOD_ROWS]).encode("utf-8").replace(b"scared", b"sc\xffared")
    path.write_bytes(body)
    with pytest.warns(EDFormatWarning, match="invalid UTF-8"):
        convs, report = read_ed_csv(path)
    assert report.skipped_rows == 0
    assert convs[0].utterances[0] == "I was scared, really!"
    assert convs[0].utterances[2] == "Just the cat."


def test_undecodable_bytes_are_removed_counted_and_warned_with_skipped_rows(tmp_path: Path) -> None:
    """No U+FFFD reaches the text (hence the vocabulary); the rows stay (their turn order matters)."""
    path = tmp_path / "train.csv"
    rows = [*GOOD_ROWS, BROKEN_ROWS[0]]
    body = "\n".join([HEADER, *rows]).encode("utf-8")
    body = body.replace(b"scared", b"sc\xff\xfeared").replace(b"What was", b"What\xc3 was")
    path.write_bytes(body)
    with pytest.warns(EDFormatWarning) as record:
        convs, report = read_ed_csv(path)
    assert len(record) == 1  # one warning for the whole file: skipped rows and repaired rows
    message = str(record[0].message)
    assert "skipped 1 of 4 rows" in message
    assert "kept 2 of 4 rows with invalid UTF-8 bytes" in message and "line(s) 2, 3" in message
    assert (report.repaired_rows, report.skipped_rows) == (2, 1)
    assert report.repaired_lines == [2, 3]
    assert convs[0].utterances == ["I was scared, really!", "Oh no. What was it?", "Just the cat."]
    assert not any("\ufffd" in u for c in convs for u in [c.situation, *c.utterances])


def test_unreadable_root_is_one_clear_error(tmp_path: Path, deny_listing) -> None:
    for split in SPLITS:
        write_csv(tmp_path / f"{split}.csv", GOOD_ROWS)
    deny_listing(tmp_path)
    with pytest.raises(DataError) as info:
        load_ed_splits(tmp_path)
    message = str(info.value)
    assert f"data.root={tmp_path}" in message and "Permission denied" in message
    assert "\n" not in message and info.value.__cause__ is None and info.value.__suppress_context__


def test_root_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    not_a_folder = write_csv(tmp_path / "train.csv", GOOD_ROWS)
    with pytest.raises(DataError, match=r"data\.root=.*train\.csv is a file, not a folder"):
        load_ed_splits(not_a_folder)


def test_unreadable_csv_file_is_one_clear_error(tmp_path: Path, deny_reading) -> None:
    for split in SPLITS:
        write_csv(tmp_path / f"{split}.csv", GOOD_ROWS)
    deny_reading(tmp_path / "valid.csv")
    with pytest.raises(DataError) as info:
        load_ed_splits(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "valid.csv") in message and "Permission denied" in message
    assert "\n" not in message


def test_missing_file_names_expected_files_and_config_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.root") as info:
        read_ed_csv(tmp_path / "train.csv")
    assert "train.csv, valid.csv, test.csv" in str(info.value)
    assert isinstance(info.value, DataError)  # the user's to fix: one `error:` line, no traceback


def test_missing_split_is_reported_before_reading(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", GOOD_ROWS)
    write_csv(tmp_path / "valid.csv", BROKEN_ROWS)  # would warn if it were read
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FileNotFoundError) as info:
            load_ed_splits(tmp_path)
    message = str(info.value)
    assert "test.csv" in message and "data.root=" in message and "downloader" in message
    assert isinstance(info.value, DataError)
    assert str(tmp_path / "train.csv") not in message


def test_load_ed_splits_reads_all_three(tmp_path: Path) -> None:
    for split in SPLITS:
        write_csv(tmp_path / f"{split}.csv", GOOD_ROWS)
    data, reports = load_ed_splits(tmp_path)
    assert list(data) == list(SPLITS) == list(reports)
    assert all(len(convs) == 1 for convs in data.values())


@pytest.mark.real_data
def test_real_sample_counts_and_labels(real_sample_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", EDFormatWarning)
        data, reports = load_ed_splits(real_sample_dir)
    assert {split: len(convs) for split, convs in data.items()} == {
        "train": 2486, "valid": 276, "test": 2542,
    }
    assert {split: r.rows for split, r in reports.items()} == {"train": 7832, "valid": 874, "test": 7968}
    labels = {c.emotion for convs in data.values() for c in convs}
    assert labels <= set(EMOTIONS)
    assert len(labels) == len(EMOTIONS)
    assert not any("_comma_" in u for convs in data.values() for c in convs for u in c.utterances)
