"""experiments/training_length/run.py end to end on the built-in corpus: one run, a checkpoint every N updates,
each decoded greedily and paired with the first."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tiny import REPO

STUDY = REPO / "experiments" / "training_length" / "run.py"
ACROSS = STUDY.with_name("across_models.py")
ED_HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"


def test_training_length_study_evaluates_a_checkpoint_every_n_updates_against_the_first(tmp_path: Path) -> None:
    out = tmp_path / "length"
    # paths.mlflow_dir: studies run their commands in the repository; its own MLflow store stays clean
    command = [sys.executable, str(STUDY), "--smoke", "--updates", "4", "--every", "2", "--bootstrap", "20",
               "--out", str(out), "--eval-override", "evaluate.meaning=false", "--eval-override", "decoding.max_len=4",
               "model.hidden_dim=16", "model.emb_dim=16", "trainer.val_check_interval=5",
               f"paths.mlflow_dir={tmp_path / 'mlruns'}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (out / "train" / "checkpoints").glob("step-*.ckpt")) == ["step-2.ckpt", "step-4.ckpt"]
    record = json.loads((out / "train" / "mlflow_run.json").read_text())
    assert record["tracking_uri"] == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # the store the override names
    training = (out / "train" / "hydra" / ".hydra" / "overrides.yaml").read_text()
    assert "adversarial=none" in training and "model.hidden_dim=16" in training  # the run's own overrides
    evaluation = (out / "step_4" / "hydra" / ".hydra" / "overrides.yaml").read_text()
    assert "step-4.ckpt" in evaluation and "decoding.max_len=4" in evaluation and "model.hidden_dim" not in evaluation
    metrics = json.loads((out / "step_4" / "metrics.json").read_text())
    results = (out / "results.md").read_text()
    (row,) = [line for line in results.splitlines() if line.startswith("| 4 |")]
    assert f"{metrics['ppl']:,.1f}" in row  # the point table reads each evaluation's figures
    assert "Δ dist_2 vs step_2" in results and "| step_4 |" in results
    # the same study twice, as two models: one row per model and checkpoint, and every paired difference zero
    across = [sys.executable, str(ACROSS), f"a={out}", f"b={out}", "--step", "4", "--bootstrap", "20"]
    done = subprocess.run([*across, "--out", str(tmp_path / "models.md")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "models.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| a | 4 |", "| b | 4 |"))]
    assert len(rows) == 2 and all(f"| {metrics['ppl']:,.1f} |" in row for row in rows)
    (paired,) = [line for line in table.splitlines() if line.startswith("| b | ") and "[" in line]
    # Dist-2, BLEU-4, valence (the meaning metrics are off here); distinct replies in integers
    assert paired.count("+0.000 [+0.000, +0.000] p=1.000") == 3 and "+0 [+0, +0] p=1.000" in paired
    done = subprocess.run([*across[:-4], "--step", "3"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "no evaluated step_3 in a, b" in done.stderr
    done = subprocess.run(
        [*across[:-4], "--step", "best", "--bootstrap", "20"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "| b@4 | " in done.stdout, done.stderr[-2000:]  # its validation: the run's end
    # two folders after a name are its seeds: a table over them and one of seed pairs against the baseline
    seeded = [sys.executable, str(ACROSS), f"a={out},{out}", f"b={out}", "--step", "4", "--bootstrap", "20"]
    done = subprocess.run(seeded, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (mean_row,) = [line for line in done.stdout.splitlines() if line.startswith("| a | 2 | ")]
    assert f"| {metrics['ppl']:,.1f} ± 0.0 |" in mean_row  # the same run twice: no spread
    assert "| b | 1 | 0 of 1 | 0 of 1 |" in done.stdout  # equal is not above
    assert sum(line.startswith("| a s1 | 4 |") for line in done.stdout.splitlines()) == 2  # the run's seed
    # a second call trains nothing and reuses every evaluation
    before = [(out / name / "metrics.json").stat().st_mtime_ns for name in ("step_2", "step_4")]
    assert subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=600).returncode == 0
    assert [(out / name / "metrics.json").stat().st_mtime_ns for name in ("step_2", "step_4")] == before


def test_training_length_study_refuses_a_length_that_is_no_multiple_of_the_checkpoint_interval(tmp_path: Path) -> None:
    command = [sys.executable, str(STUDY), "--smoke", "--updates", "5", "--every", "2", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--updates 5 must be a multiple of --every 2" in done.stderr


def test_copies_of_training_replies_are_counted_after_the_datas_own_normalisation(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("study_training_length", STUDY)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    root = tmp_path / "ed"
    root.mkdir()
    rows = ED_HEADER + "hit:1_conv:1,1,proud,I won_comma_ yes,1,I won a prize_comma_ finally!,,\n"
    rows += "hit:1_conv:1,2,proud,I won_comma_ yes,2,That's great!,,\n"
    rows += "hit:1_conv:1,3,proud,I won_comma_ yes,1,thanks,,\n"
    for split in ("train", "valid", "test"):
        (root / f"{split}.csv").write_text(rows, encoding="utf-8")
    replies = ["that is great !", "that is great !", "wow ."]  # "That's great!" as the data normalise it
    path = tmp_path / "step_2" / "predictions.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"pred": r}) + "\n" for r in replies), encoding="utf-8")
    table = study.copy_table(str(root), {"step_2": path})
    assert "| 2 | 66.7% (2 of 3) | 1 of 2 |" in table


def test_validation_values_are_read_as_the_updates_they_followed() -> None:
    """Lightning logs the validation after update u at step u - 1, and the one when training ends at its last update."""
    spec = importlib.util.spec_from_file_location("study_across_models", ACROSS)
    across = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(across)
    assert across.by_update({999: 9.0, 1999: 8.0, 2000: 8.0}, 2000) == {1000: 9.0, 2000: 8.0}
    assert across.by_update({999: 9.0, 1499: 8.5}, 1500) == {1000: 9.0, 1500: 8.5}  # ended between validations
    assert across.by_update({4: 7.0}, 4) == {4: 7.0}  # only the end's validation


def test_seeds_are_summarised_by_mean_sample_sd_and_pairs_above_the_baseline() -> None:
    spec = importlib.util.spec_from_file_location("study_across_models", ACROSS)
    across = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(across)
    # mean 7/3; sample variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3, sd 1.528
    assert across.mean_sd([1.0, 2.0, 4.0], 3) == "2.333 ± 1.528"
    assert across.mean_sd([5.0, float("nan")], 1) == "5.0" and across.mean_sd([float("nan")], 1) == "–"
    assert across.above([3.0, 1.0, 2.0], [2.0, 2.0, 2.0]) == "1 of 3"  # a tie is not above
    assert across.above([3.0, 1.0], [2.0, 2.0, 2.0]) == "1 of 2"  # only as many pairs as both have


def test_a_pretrained_generators_perplexity_is_read_per_subword_piece(tmp_path: Path) -> None:
    """A subword model logs ``val/subword_ppl`` and evaluates to ``subword_ppl``: both tables read them."""
    import mlflow

    spec = importlib.util.spec_from_file_location("study_across_models", ACROSS)
    across = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(across)
    assert across.perplexity_key({"ppl": 80.0, "dist_2": 1.0}) == "ppl"
    assert across.perplexity_key({"subword_ppl": 60.0}) == "subword_ppl"
    assert across.perplexity_key({"ppl": 80.0, "subword_ppl": 60.0}) == "ppl"  # a word perplexity wins
    spec = importlib.util.spec_from_file_location("study_training_length", STUDY)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    assert study.point_columns({"ppl": 80.0})[0] == ("ppl", "ppl", 1)
    assert study.point_columns({"subword_ppl": 60.0})[0] == ("subword_ppl", "subword ppl", 1)
    assert study.point_columns({"subword_ppl": 60.0})[1:] == study.POINT[1:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("minilm")).info.run_id
    for step, value in ((499, 70.0), (999, 62.0), (1000, 62.0)):  # validations after updates 500, 1,000; the end's
        client.log_metric(run_id, "val/subword_ppl", value, step=step)
    out = tmp_path / "study"
    (out / "train").mkdir(parents=True)
    (out / "train" / "mlflow_run.json").write_text(json.dumps({"tracking_uri": uri, "run_id": run_id}))
    assert across.validation_ppl(out, [500, 1000]) == {500: 70.0, 1000: 62.0}
    other = client.create_run(client.get_experiment_by_name("minilm").experiment_id).info.run_id
    client.log_metric(other, "val/ppl", 80.0, step=999)
    client.log_metric(other, "val/subword_ppl", 60.0, step=999)  # not a run this code writes: words win
    (out / "train" / "mlflow_run.json").write_text(json.dumps({"tracking_uri": uri, "run_id": other}))
    assert across.validation_ppl(out, [1000]) == {1000: 80.0}
