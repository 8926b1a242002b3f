"""Reading the MoEL, MIME and KEMP test-set releases: detection, every quirk, the system choice, the real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from empdg.data.text_metrics import corpus_bleu
from empdg.errors import ConfigError, format_user_error
from empdg.evaluation.pipeline import read_prediction_file
from empdg.evaluation.release_format import (
    PredictionRecord,
    SystemChoiceError,
    detect_format,
    load_predictions,
    read_predictions,
    write_jsonl,
)
from empdg.evaluation.runner import score_records

N_TEST_TURNS = 5255

# MoEL: `Emotion: ` / `Context: ` / four systems / `ref: `, blank line between blocks. Here also: no space
# after a colon, trailing spaces, a double-quoted utterance holding a quote, an empty response.
MOEL = (
    "Emotion: guilty\n"
    "Context: ['i hit a barrel .', \"it wasn't my fault\"]\n"
    "trs: oh no !\n"
    "trs+multitask:that is scary .   \n"
    "MOE: are you ok ?  \n"
    "MOE+oracle: \n"
    "ref: did you get hurt ?\n"
    "\n"
    "Emotion:caring \n"
    "Context:['tell me : now']\n"
    "trs: sure .\n"
    "trs+multitask: ok\n"
    "MOE: i see : yes\n"
    "MOE+oracle: nice\n"
    "ref: ok\n"
    "\n"
)
# MIME: two header lines (a comment, a tab-separated score table), tab fields on the emotion line, `Beam: ` with
# a space where the others have none, a dashes line after each block.
MIME = (
    "### COMMENT: If using vader, score > 0 will be treated as positive emotion ### \n"
    "EVAL\tLoss\tPPL\tAccuracy\tBleu_g\tBleu_b\tBleu_t\n"
    "test\t3.6253\t37.5363\t0.3488\t2.76\t3.13\t1.76\n"
    "emotion:guilty\tvader-score: 0.0129\tpredicted_emotion: terrified\n"
    "Context:['i said \"no\" to it .', 'why ?']\n"
    "Topk:oh that is terrible . \n"
    "Beam: i am sorry . \n"
    "Greedy:\n"
    "Ref:did you get hurt ?\n"
    "----------------------------------------------------------------------\n"
    "emotion:joyful\tvader-score: 0.5\tpredicted_emotion: proud\n"
    'Context:["it\'s my day"]\n'
    "Topk:yay ! \n"
    "Beam: congrats ! \n"
    "Greedy:nice . \n"
    "Ref:happy birthday\n"
    "----------------------------------------------------------------------\n"
)
# KEMP: trailing spaces on every line, a Concept line (a defaultdict repr, not scored), one system.
KEMP = (
    "Emotion:guilty \n"
    "Context:['i hit a barrel .', \"it wasn't my fault\"] \n"
    "Concept:[defaultdict(<class 'list'>, {'hit': ['music'], 'fault': ['accuse']})] \n"
    "Pred:oh no ! i hope you are okay .  \n"
    "Ref:did you suffer any injuries ? \n"
    "Emotion:caring \n"
    "Context:['tell me'] \n"
    "Concept:[defaultdict(<class 'list'>, {})] \n"
    "Pred: \n"
    "Ref:ok \n"
)
EMPDG = "emotion:sad \nContext:['a'] \nPred:oh \nRef:no \n"


def write(tmp_path: Path, text: str, name: str = "out.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_moel_blocks_every_system(tmp_path: Path) -> None:
    path = write(tmp_path, MOEL)
    context = ["i hit a barrel .", "it wasn't my fault"]
    expected = {"trs": "oh no !", "trs+multitask": "that is scary .", "MOE": "are you ok ?", "MOE+oracle": ""}
    for system, pred in expected.items():
        first, second = read_predictions(path, system)
        assert first == PredictionRecord("guilty", context, pred, "did you get hurt ?")
        assert (second.emotion, second.context, second.ref) == ("caring", ["tell me : now"], "ok")
    assert read_predictions(path, "MOE")[1].pred == "i see : yes"  # a colon inside a response is text
    loaded = load_predictions(path, "MOE+oracle")
    assert (loaded.format, loaded.systems, loaded.system) == (
        "moel",
        ("trs", "trs+multitask", "MOE", "MOE+oracle"),
        "MOE+oracle",
    )


def test_mime_headers_tab_fields_and_dashes(tmp_path: Path) -> None:
    path = write(tmp_path, MIME)
    topk, beam, greedy = (read_predictions(path, system) for system in ("Topk", "Beam", "Greedy"))
    assert topk[0] == PredictionRecord(
        "guilty",
        ['i said "no" to it .', "why ?"],
        "oh that is terrible .",
        "did you get hurt ?",
        predicted_emotion="terrified",
    )
    assert [r.pred for r in beam] == ["i am sorry .", "congrats !"]
    assert [r.pred for r in greedy] == ["", "nice ."]
    assert (greedy[1].emotion, greedy[1].predicted_emotion, greedy[1].context) == ("joyful", "proud", ["it's my day"])


def test_kemp_single_system_needs_no_choice(tmp_path: Path) -> None:
    path = write(tmp_path, KEMP)
    records = read_predictions(path)
    assert records == read_predictions(path, "KEMP")
    assert records[0] == PredictionRecord(
        "guilty",
        ["i hit a barrel .", "it wasn't my fault"],
        "oh no ! i hope you are okay .",
        "did you suffer any injuries ?",
    )
    assert (records[1].pred, records[1].ref) == ("", "ok")
    assert load_predictions(path).system == "KEMP"


def test_empty_responses_are_scored_not_dropped(tmp_path: Path) -> None:
    metrics = score_records(read_predictions(write(tmp_path, KEMP))).metrics
    assert metrics["n_examples"] == 2
    assert metrics["avg_len"] == pytest.approx(4.5)  # (9 + 0) / 2 whitespace tokens: the empty reply counts
    assert metrics["unique_replies"] == 2


@pytest.mark.parametrize(("text", "expected"), [(MOEL, "moel"), (MIME, "mime"), (KEMP, "kemp"), (EMPDG, "empdg")])
def test_format_is_detected_from_content_not_name(tmp_path: Path, text: str, expected: str) -> None:
    # every name misleads: a JSONL suffix, another release's file name
    for name in ("preds.jsonl", "pred_EmpDG.txt", "kemp_KEMP.txt", "mime_output.txt"):
        assert detect_format(write(tmp_path, "\n\n" + text, name)) == expected


def test_jsonl_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "moel_generation_result.txt"
    write_jsonl(path, [PredictionRecord("sad", ["a"], "b", "c")])
    assert detect_format(path) == "jsonl"
    assert load_predictions(path).records == [PredictionRecord("sad", ["a"], "b", "c")]


@pytest.mark.parametrize(
    ("text", "system", "match"),
    [
        (MOEL, None, r"\(MoEL release format\) holds 4 systems: trs, trs\+multitask, MOE, MOE\+oracle; none chosen"),
        (MOEL, "moe", r"has no system 'moe'; it holds: trs, trs\+multitask, MOE, MOE\+oracle"),
        (MIME, None, r"\(MIME release format\) holds 3 systems: Topk, Beam, Greedy; none chosen"),
        (MIME, "Pred", r"has no system 'Pred'; it holds: Topk, Beam, Greedy"),
        (KEMP, "MOE", r"has no system 'MOE'; it holds: KEMP"),
        (EMPDG, "EmpDG", r"\(EmpDG release format\) holds one unnamed system; 'EmpDG' cannot be chosen"),
    ],
)
def test_system_choice_errors_list_the_choices(tmp_path: Path, text: str, system: str | None, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SystemChoiceError, match=match):
        read_predictions(path, system)


def test_system_choice_is_a_user_error_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, MIME)
    with pytest.raises(ConfigError) as caught:
        read_prediction_file(str(path), None)
    line = format_user_error(caught.value)
    assert line.startswith("error: evaluate.system: ") and "\n" not in line
    assert "Topk, Beam, Greedy" in line and line.endswith("pass evaluate.system=NAME, one of them")
    with pytest.raises(ConfigError, match=r"leave evaluate.system null"):
        read_prediction_file(str(write(tmp_path, EMPDG, "e.txt")), "x")
    with pytest.raises(ConfigError, match=r"out\.txt:2: not a KEMP release line"):  # malformed: a user error too
        read_prediction_file(str(write(tmp_path, KEMP.replace("Context:", "Contxt:", 1))), None)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (MOEL.replace("MOE: are you ok ?  \n", ""), r":1: block lacks MOE line"),  # a system line missing
        (MOEL.replace("trs: sure .\n", "trs: sure .\nsecond line of it\n"), r":12: not a MoEL release line"),
        (MOEL.replace("ref: ok\n", "ref: ok\nref: ok\n"), r":16: second ref line in one block \(block at line 9\)"),
        (MIME.replace("Topk:yay", "### late header\nTopk:yay"), r":13: not a MIME release line"),
        (MIME.replace("Context:['i said", "Context:oops['i said"), r":5: expected a python list of strings"),
        (KEMP + "Emotion:sad \nContext:['x'] \nPred:y \n", r":11: block lacks Ref line"),
        (KEMP.replace("Ref:ok", "Reference:ok"), r":10: not a KEMP release line"),
        ("Emotion: sad\nsomething else\n", r":1: not a known prediction format"),
        ("\n\nhello\n", r":3: not a known prediction format"),
    ],
)
def test_malformed_blocks_name_file_and_line(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ValueError, match=rf"bad\.txt{where}"):
        system = "MOE" if "trs:" in text else "Topk" if "Topk:" in text else None
        load_predictions(write(tmp_path, text, "bad.txt"), system)


def test_duplicate_blocks_are_dropped_with_a_counted_warning(tmp_path: Path) -> None:
    path = write(tmp_path, EMPDG * 3 + "emotion:joyful \nContext:['b'] \nPred:yay \nRef:ok \n")
    with pytest.warns(UserWarning, match=r"dropped 2 block\(s\) identical to the block before them \(line\(s\) 5, 9\)"):
        assert [r.emotion for r in read_predictions(path)] == ["sad", "joyful"]


# The real releases (fixture `peer_outputs_dir`, skipped when ../shared is absent): one test per format.


FIRST_CONTEXT = "yeah about 10 years ago i had a horrifying experience ."
LAST_REF = "yeah more people should look at life like you do"


def check_test_set(records: list[PredictionRecord]) -> None:
    """5,255 listener turns in the shared order: first and last conversation as in every release."""
    assert len(records) == N_TEST_TURNS
    assert records[0].context[0].startswith(FIRST_CONTEXT) and records[0].ref == "did you suffer any injuries ?"
    assert (records[-1].emotion, records[-1].ref) == ("grateful", LAST_REF)
    assert all(r.emotion and r.context and r.ref for r in records)


def test_real_moel_release(peer_outputs_dir: Path) -> None:
    path = peer_outputs_dir / "moel_generation_result.txt"
    assert detect_format(path) == "moel"
    systems = {name: read_predictions(path, name) for name in ("trs", "trs+multitask", "MOE", "MOE+oracle")}
    for records in systems.values():
        check_test_set(records)
    assert systems["MOE"][0].pred == "i am so sorry to hear that . were you ok ?"
    assert systems["trs+multitask"][0].pred == "that is pretty scary ! i am glad you are ok ."
    assert systems["MOE+oracle"][-1].pred == "that is great ! i wish i could go back .  is the best for you ."
    assert systems["MOE"][2].context == ["well , can you tell me about your experience ? i think we swapped places"]
    assert len({tuple(r.ref for r in records) for records in systems.values()}) == 1


def test_real_mime_release(peer_outputs_dir: Path) -> None:
    path = peer_outputs_dir / "mime_output.txt"
    assert detect_format(path) == "mime"
    topk, beam, greedy = (read_predictions(path, name) for name in ("Topk", "Beam", "Greedy"))
    for records in (topk, beam, greedy):
        check_test_set(records)
    assert topk[0].pred == "oh that is terrible . i am sorry to hear that . what happened ?"
    assert beam[0].pred == "i am sorry to hear that . what happened ?"  # `Beam: ` has a space after the colon
    assert greedy[-1].pred == "i love to hear that . i love it when i was younger ."
    assert (beam[0].predicted_emotion, beam[1].predicted_emotion) == ("terrified", "embarrassed")
    # MIME's own header table reports test BLEU per decoder (Bleu_g, Bleu_b, Bleu_t): our corpus BLEU-4 gives them
    header = path.read_text(encoding="utf-8").splitlines()[2].split("\t")
    assert header[0] == "test" and header[-3:] == ["2.76", "3.13", "1.76"]
    ours = [
        corpus_bleu([r.pred.split() for r in rs], [r.ref.split() for r in rs])["bleu_4"] for rs in (greedy, beam, topk)
    ]
    assert [f"{bleu:.2f}" for bleu in ours] == header[-3:]


def test_real_kemp_release(peer_outputs_dir: Path) -> None:
    path = peer_outputs_dir / "kemp_KEMP.txt"
    assert detect_format(path) == "kemp"
    records = read_predictions(path)
    check_test_set(records)
    assert records[0].pred == "oh no ! i hope you are okay ."  # two trailing spaces in the file
    assert records[-1].pred == "i am sure you will do great !"
    assert records[-1].context[-1] == "glad you think so as well !"


def test_cli_scores_one_system_and_logs_it(peer_outputs_dir: Path, tmp_path: Path) -> None:
    """End to end: the last stdout line is the metrics of MoEL's MOE system, the MLflow run names the system."""
    args = [
        sys.executable,
        "-m",
        "empdg.evaluate",
        f"paths.root_dir={tmp_path}",
        "evaluate.system=MOE",
        "evaluate.meaning=false",
    ]
    args.append(f"predictions_file={peer_outputs_dir / 'moel_generation_result.txt'}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert (metrics["n_examples"], metrics["system"], metrics["format"]) == (N_TEST_TURNS, "MOE", "moel")
    assert {"dist_1", "dist_2", "bleu_4", "unique_replies", "valence_agreement"} <= metrics.keys()
    # the MoEL row of docs/released_outputs.md
    assert [round(metrics[key], 2) for key in ("dist_1", "dist_2", "bleu_1", "bleu_4")] == [0.62, 2.89, 17.97, 2.90]
    assert (metrics["unique_replies"], round(metrics["valence_agreement"], 3)) == (1992, 0.541)
    out = Path(
        next(line for line in result.stdout.splitlines() if line.startswith("outputs: ")).removeprefix("outputs: ")
    )
    assert read_predictions(out / "pred_MOE.txt") == read_predictions(
        peer_outputs_dir / "moel_generation_result.txt", "MOE"
    )

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (experiment,) = client.search_experiments(filter_string="name = 'empdg-evaluation'")
    (run,) = client.search_runs([experiment.experiment_id])
    assert (run.data.tags["system"], run.data.tags["format"], run.data.params["evaluate.system"]) == (
        "MOE",
        "moel",
        "MOE",
    )
    assert run.data.metrics["n_examples"] == N_TEST_TURNS


def test_bootstrap_reader_picks_one_system(tmp_path: Path) -> None:
    """empdg.compare's bootstrap reads a multi-system release through the same system choice."""
    from empdg.evaluation.scored_examples import read_scored_examples

    path = write(tmp_path, MOEL)
    assert [example.pred for example in read_scored_examples(path, "trs")][0] == "oh no !"
    with pytest.raises(ValueError, match="trs, trs\\+multitask, MOE, MOE\\+oracle"):
        read_scored_examples(path)
