"""``python -m empdg.benchmarks.pretrained``: one row per model with positive costs, table and JSON agreeing."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from empdg.benchmarks.pretrained import ModelSpec, _Worker, _worker_context, main

MODELS = ["empdg", "hf_seq2seq", "hf_causal"]
# the smallest run: one batch of two examples, one step and one round, two tokens, 1-layer 16-d models
TINY = ["--rounds", "1", "--steps", "1", "--batches", "1", "--batch-size", "2", "--new-tokens", "2",
        "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32", "--vocab-size", "300",
        "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def run() -> tuple[dict, str]:
    """One run for the module (capsys is per test): its return value and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary = main(TINY)
    return summary, out.getvalue()


def table_rows(printed: str) -> dict[str, list[str]]:
    rows = {}
    for line in printed.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in MODELS:
            rows[cells[0]] = cells
    return rows


def test_the_table_has_a_row_of_positive_numbers_per_model(run) -> None:
    _, printed = run
    rows = table_rows(printed)
    assert list(rows) == MODELS
    for name, cells in rows.items():
        assert len(cells) == 8, cells
        parameters = float(cells[1].removesuffix(" k"))
        numbers = [parameters, *(float(cell) for cell in cells[2:7])]
        assert all(number > 0 for number in numbers), (name, cells)
        assert cells[7] == "–"  # no CUDA here: no CUDA peak
    assert rows["empdg"][3] == rows["empdg"][5] == "1.00"  # the ratios are to EmpDG


def test_the_last_line_is_the_json_summary_of_the_same_run(run) -> None:
    summary, printed = run
    last = json.loads(printed.strip().splitlines()[-1])
    assert last == json.loads(json.dumps(summary))
    assert [model["model"] for model in last["models"]] == MODELS
    for model in last["models"]:
        for key in ("parameters", "train_step_ms", "decode_ms", "peak_rss_growth_mib", "train_step_ratio"):
            assert model[key] > 0, (model["model"], key)
        assert model["device"] == "cpu" and model["cuda_peak_mib"] is None
    by_name = {model["model"]: model for model in last["models"]}
    # the HF models read the tiny folders' BPE vocabulary (300 pieces + 8 project specials), EmpDG its words
    assert by_name["hf_seq2seq"]["vocab_size"] == by_name["hf_causal"]["vocab_size"] == 308
    assert by_name["empdg"]["vocab_size"] != 308


def test_bad_arguments_name_the_fix(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--rounds must be at least 1"):
        main(["--rounds", "0"])
    with pytest.raises(SystemExit, match="--data-root .* is not a folder"):
        main(["--data-root", str(tmp_path / "missing")])


def test_a_failing_worker_is_reported_with_its_model_name(run) -> None:
    # after `run`, the fork server is up: this worker starts in about a second
    handle = _Worker(ModelSpec("no_such_model", ["data=builtin", "logger=none"]), _worker_context())
    try:
        with pytest.raises(RuntimeError, match="the no_such_model worker failed"):
            handle.receive()
    finally:
        handle.stop()


@pytest.mark.slow
def test_the_bert2bert_suite_times_the_full_model_and_its_cpu_budget() -> None:
    """Trainable parameters, by hand: the full generator 49,022,810 (docs/pretrained.md); the budget keeps
    2 decoder layers of 2,366,592 (self- and cross-attention 591,360 each, FFN 591,360 + 590,208, three
    LayerNorms 768 each), the decoder's position/type embeddings and LayerNorm 198,144, the head's transform,
    LayerNorm and output bias 179,130 and the emotion head 12,320: 5,122,778."""
    with contextlib.redirect_stdout(io.StringIO()):
        summary = main(["--suite", "bert2bert", *TINY[:10], "--device", "cpu"])
    models = {model["model"]: model for model in summary["models"]}
    assert list(models) == ["empdg", "hf_seq2seq", "hf_seq2seq (CPU budget)"]
    assert models["hf_seq2seq"]["parameters"] == 49_022_810
    assert models["hf_seq2seq (CPU budget)"]["parameters"] == 5_122_778
    assert all(model["train_step_ms"] > 0 and model["decode_ms"] > 0 for model in models.values())
