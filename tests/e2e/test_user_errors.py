"""A user's mistake ends in one ``error: <message>`` line and exit status 2, never in Hydra's traceback report.

Bugs keep their traceback: only the project's user-error types are shortened (``empdg.errors``).
"""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import REPO

from empdg.data.download import DatasetDownloadError
from empdg.data.errors import DataError
from empdg.errors import (
    EXIT_USER_ERROR,
    ConfigError,
    MissingFileError,
    exit_on_user_error,
    format_user_error,
    is_user_error,
    user_errors_from,
)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8", "HYDRA_FULL_ERROR": "0"}


def run(tmp_path: Path, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *command], cwd=tmp_path, env=ENV, input=stdin, capture_output=True, text=True, timeout=240
    )


def assert_user_error(done: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 2, exactly one ``error:`` line on stderr (holding every ``expected`` text), no traceback."""
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_USER_ERROR, output[-3000:]
    assert "Traceback" not in output and "Error executing job" not in output, output[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# ---- the helper ----------------------------------------------------------------------------------------------
def test_user_errors_print_one_line_and_exit_2() -> None:
    for error in (
        DataError("data.root=/x is a file, not a folder"),
        DatasetDownloadError("could not download; place the files by hand"),
        ConfigError("invalid configuration:\n  - adversarial.g_steps=-1 must be >= 0"),
        MissingFileError("ckpt_path=/nope.ckpt does not exist"),
    ):
        stream = io.StringIO()
        with pytest.raises(SystemExit) as stop, exit_on_user_error(stream):
            raise error
        assert stop.value.code == EXIT_USER_ERROR
        assert stream.getvalue().count("\n") == 1 and stream.getvalue().startswith("error: "), stream.getvalue()
    # one problem of a list: one line; several: the list stays
    assert format_user_error(ConfigError("invalid configuration:\n  - a must be >= 0")) == (
        "error: invalid configuration: a must be >= 0"
    )
    assert format_user_error(ConfigError("invalid configuration:\n  - a\n  - b")).count("\n") == 2
    assert format_user_error(ValueError("x"), "invalid sweep configuration") == "error: invalid sweep configuration: x"


@pytest.mark.parametrize("error", [ValueError("a bug"), KeyError("model"), RuntimeError("boom"), FileNotFoundError()])
def test_other_exceptions_keep_their_traceback(error: Exception) -> None:
    assert not is_user_error(error)
    with pytest.raises(type(error)), exit_on_user_error(io.StringIO()):
        raise error


def test_checks_turn_their_value_and_file_errors_into_user_errors() -> None:
    with pytest.raises(ConfigError, match="bad setting") as caught, user_errors_from():
        raise ValueError("bad setting")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value.__cause__, ValueError)
    with pytest.raises(MissingFileError) as missing, user_errors_from():
        raise FileNotFoundError("ckpt_path=x does not exist")
    assert isinstance(missing.value, FileNotFoundError)
    with pytest.raises(DataError), user_errors_from():  # already the user's: unchanged
        raise DataError("empty split")
    with pytest.raises(RuntimeError), user_errors_from():  # not a check's answer: unchanged
        raise RuntimeError("boom")

    @user_errors_from()
    def validate() -> None:
        raise ValueError("invalid configuration")

    with pytest.raises(ConfigError):
        validate()


# ---- the commands ----------------------------------------------------------------------------------------------
def test_whole_and_finite_numbers_as_settings_checks_read_them() -> None:
    from empdg.errors import is_number, is_whole

    assert [is_whole(v) for v in (0, -3, 2**40, True, 1.0, "1", None)] == [True, True, True, False, False, False, False]
    numbers = (0, -2.5, 1e300, True, float("nan"), float("inf"), "0.5", None)
    assert [is_number(v) for v in numbers] == [True, True, True, False, False, False, False, False]


def test_train_py_with_a_file_as_data_root(tmp_path: Path) -> None:
    root = tmp_path / "not_a_folder.csv"
    root.write_text("conv_id,utterance_idx\n", encoding="utf-8")
    done = run(
        tmp_path, str(REPO / "train.py"), "data=empathetic_dialogues", f"data.root={root}", "data.download=false",
        "logger=none", f"paths.root_dir={tmp_path}",
    )  # fmt: skip
    assert_user_error(done, str(root), "not a folder")


def test_train_py_with_impossible_adversarial_settings(tmp_path: Path) -> None:
    done = run(
        tmp_path, str(REPO / "train.py"), "adversarial.n_critic=0", "adversarial.g_steps=0", "logger=none",
        f"paths.root_dir={tmp_path}",
    )  # fmt: skip
    assert_user_error(done, "adversarial.n_critic + adversarial.g_steps = 0")
    assert not (tmp_path / ".cache").exists()  # stopped before any data was read


def test_train_py_names_impossible_settings_before_importing_the_training_job(tmp_path: Path) -> None:
    # the checks need torch, not Lightning (whose import takes seconds more): a mistake is named that much sooner
    code = (
        "import sys\nfrom empdg.commands.train import main\nsys.argv = ['train.py', 'seed=abc', 'logger=none']\n"
        "try:\n    main()\nexcept SystemExit as stop:\n"
        "    heavy = sorted(m for m in ('pytorch_lightning', 'empdg.training.run') if m in sys.modules)\n"
        "    print('exit', stop.code, heavy)"
    )
    done = run(tmp_path, "-c", code)
    assert "error: invalid configuration: seed=abc must be a whole number" in done.stderr, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "exit 2 []", done.stdout[-2000:]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.normalization=bogus", "choose one of full, moel"),
        ("data.bucket_by=next", "context_reply, longest"),
        ("data.eval_batch_size=0", "must be >= 1"),
    ],
)
def test_train_py_with_an_unknown_data_setting(tmp_path: Path, override: str, expected: str) -> None:
    done = run(tmp_path, str(REPO / "train.py"), override, "logger=none", f"paths.root_dir={tmp_path}")
    assert_user_error(done, override.split("=")[0], expected)


def test_train_py_resume_from_a_missing_checkpoint(tmp_path: Path) -> None:
    missing = tmp_path / "gone.ckpt"
    done = run(tmp_path, str(REPO / "train.py"), f"ckpt_path={missing}", "logger=none", f"paths.root_dir={tmp_path}")
    assert_user_error(done, f"ckpt_path={missing} does not exist")


def test_evaluate_with_a_missing_checkpoint_or_no_input(tmp_path: Path) -> None:
    missing = tmp_path / "gone.ckpt"
    done = run(tmp_path, "-m", "empdg.evaluate", f"ckpt_path={missing}", f"paths.root_dir={tmp_path}", "logger=none")
    assert_user_error(done, str(missing), "does not exist")
    done = run(tmp_path, "-m", "empdg.evaluate", f"paths.root_dir={tmp_path}", "logger=none")
    assert_user_error(done, "give exactly one of ckpt_path=PATH")


def test_evaluate_on_a_gpu_the_machine_does_not_have(tiny_checkpoint: Path, tmp_path: Path) -> None:
    device = f"cuda:{torch.cuda.device_count()}"  # one past the last: no machine has it
    done = run(tmp_path, "-m", "empdg.evaluate", f"ckpt_path={tiny_checkpoint}", f"evaluate.device={device}",
               f"paths.root_dir={tmp_path}", "logger=none")  # fmt: skip
    assert_user_error(done, f"evaluate.device={device} but torch sees", "use evaluate.device=auto or")
    # a prediction file too: its meaning metrics run where evaluate.device says
    release = tmp_path / "pred.txt"
    release.write_text("emotion:joyful \nContext:['i got a puppy'] \nEmotion_context:['puppy'] \nPred:how nice ! \n"
                       "Ref:what breed ? \n", encoding="utf-8")  # fmt: skip
    done = run(tmp_path, "-m", "empdg.evaluate", f"predictions_file={release}", f"evaluate.device={device}",
               f"paths.root_dir={tmp_path}", "logger=none")  # fmt: skip
    assert_user_error(done, f"evaluate.device={device} but torch sees")


def test_evaluate_a_malformed_prediction_file(tmp_path: Path) -> None:
    bad = tmp_path / "pred.txt"
    bad.write_text("this is not a release file\n", encoding="utf-8")
    done = run(tmp_path, "-m", "empdg.evaluate", f"predictions_file={bad}", f"paths.root_dir={tmp_path}", "logger=none")
    assert_user_error(done, str(bad))


def test_chat_on_a_gpu_the_machine_does_not_have(tiny_checkpoint: Path, tmp_path: Path) -> None:
    device = f"cuda:{torch.cuda.device_count()}"
    done = run(tmp_path, "-m", "empdg.chat", f"ckpt_path={tiny_checkpoint}", f"chat.device={device}", stdin="/quit\n")
    assert_user_error(done, f"chat.device={device} but torch sees", "use chat.device=auto or chat.device=cpu")


def test_chat_without_a_checkpoint(tmp_path: Path) -> None:
    done = run(tmp_path, "-m", "empdg.chat", stdin="/quit\n")
    assert_user_error(done, "ckpt_path=PATH is required")
    missing = tmp_path / "gone.ckpt"
    done = run(tmp_path, "-m", "empdg.chat", f"ckpt_path={missing}", stdin="/quit\n")
    assert_user_error(done, str(missing))


def test_chat_with_impossible_settings(tiny_checkpoint: Path, tmp_path: Path) -> None:
    done = run(tmp_path, "-m", "empdg.chat", f"ckpt_path={tiny_checkpoint}", "chat.rerank=abc",
               "chat.normalization=bogus", "chat.weights.semantic=x", stdin="/quit\n")  # fmt: skip
    assert_user_error(done, "chat.weights.semantic='x' must be a number")  # read first: the weights
    done = run(tmp_path, "-m", "empdg.chat", f"ckpt_path={tiny_checkpoint}", "chat.rerank=abc",
               "chat.normalization=bogus", "chat.seed=1.5", stdin="/quit\n")  # fmt: skip
    assert_user_error(done, "chat.rerank='abc' must be a whole number >= 0", "chat.normalization='bogus': choose one "
                      "of full, moel", "chat.seed=1.5 must be a whole number")  # fmt: skip


def test_compare_an_unknown_or_no_experiment(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    done = run(tmp_path, "-m", "empdg.compare", "experiment=no_such_experiment", f"tracking_uri={uri}")
    assert_user_error(done, "no MLflow experiment named 'no_such_experiment'")
    done = run(tmp_path, "-m", "empdg.compare", f"tracking_uri={uri}")
    assert_user_error(done, "experiment=NAME")
    assert not (tmp_path / "comparisons").exists()


def test_sweep_py_with_impossible_training_settings(tmp_path: Path) -> None:
    done = run(
        tmp_path, str(REPO / "sweep.py"), "sweep=quickstart", "sweep.n_trials=0", "adversarial.n_critic=0",
        "adversarial.g_steps=0", f"paths.root_dir={tmp_path}",
    )  # fmt: skip
    assert_user_error(done, "invalid sweep configuration", "adversarial.n_critic + adversarial.g_steps = 0")


def test_train_py_with_a_missing_data_root_and_no_download(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    done = run(
        tmp_path, str(REPO / "train.py"), "data=empathetic_dialogues", f"data.root={missing}", "data.download=false",
        "logger=none", f"paths.root_dir={tmp_path}",
    )  # fmt: skip
    assert_user_error(done, f"data.root={missing} does not hold train.csv", "data.download=true")


# ---- Hydra's own composition errors, in every command ------------------------------------------------------------
def test_train_py_with_a_misspelt_option(tmp_path: Path) -> None:
    done = run(tmp_path, str(REPO / "train.py"), "model=empdgg", f"paths.root_dir={tmp_path}")
    assert_user_error(done, "model=empdgg: no such option of the 'model' config group (did you mean model=empdg?)")
    assert not (tmp_path / "outputs").exists()  # stopped while composing: no run folder


@pytest.mark.parametrize(
    ("command", "override", "expected"),
    [
        ("train", "model=empdgg", "model=empdgg: no such option of the 'model' config group (did you mean "
                                  "model=empdg?); the options: emoprepend, empdg,"),
        ("train", "modle.hidden_dim=8", "unknown key modle.hidden_dim (did you mean model.hidden_dim?)"),
        ("train", "foo", "cannot read the override 'foo'"),
        ("sweep", "sweep=quikstart", "sweep=quikstart: no such option of the 'sweep' config group (did you mean "
                                     "sweep=quickstart?)"),
        ("evaluate", "ckpt_pth=x.ckpt", "unknown key ckpt_pth (did you mean ckpt_path?)"),
        ("chat", "chat.rerankk=2", "unknown key chat.rerankk (did you mean chat.rerank?)"),
        ("compare", "group_byy=ablation", "unknown key group_byy (did you mean group_by?)"),
        ("register", "run_idd=abc", "unknown key run_idd (did you mean run_id?)"),
        ("human_export", "study.n_dialogs=5", "unknown key study.n_dialogs (did you mean study.n_dialogues?)"),
        ("human_report", "report.exclude=true", "unknown key report.exclude (did you mean report.exclude_flagged?)"),
    ],
)  # fmt: skip
def test_a_misspelt_option_or_key_is_one_line_with_a_suggestion(
    command: str, override: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """In-process (the same ``main`` the console script runs): Hydra fails while composing, before any work."""
    main = importlib.import_module(f"empdg.commands.{command}").main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.setattr(sys, "argv", [f"empdg-{command}", override])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not list(tmp_path.iterdir())  # no run folder, nothing written


def test_hydra_full_error_still_shows_the_whole_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra.errors import MissingConfigException

    from empdg.commands.train import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # Hydra raises: the traceback is the user's to see
    monkeypatch.setattr(sys, "argv", ["empdg-train", "model=empdgg"])
    with pytest.raises(MissingConfigException):
        main()


# ---- pretrained folders and DDP ---------------------------------------------------------------------------------
def test_train_py_with_a_pretrained_model_under_the_word_level_quickstart(tmp_path: Path) -> None:
    done = run(
        tmp_path, str(REPO / "train.py"), "experiment=quickstart", "model=hf_seq2seq",
        f"model.pretrained={tmp_path / 'missing'}", "logger=none", f"paths.root_dir={tmp_path}",
    )  # fmt: skip
    assert_user_error(done, "have no effect on a pretrained generator", "use experiment=hf_quickstart")


@pytest.mark.parametrize("folder", ["missing", "not_a_model"])
def test_train_py_with_a_pretrained_folder_that_is_missing_or_not_a_model(tmp_path: Path, folder: str) -> None:
    pretrained = tmp_path / folder
    if folder == "not_a_model":
        pretrained.mkdir()
        (pretrained / "notes.txt").write_text("not a model\n", encoding="utf-8")
    done = run(
        tmp_path, str(REPO / "train.py"), "experiment=hf_quickstart", "model=hf_seq2seq",
        f"model.pretrained={pretrained}", "logger=none", f"paths.root_dir={tmp_path}",
    )  # fmt: skip
    assert_user_error(done, f"model.pretrained={pretrained}" if folder == "not_a_model" else "make_tiny_pretrained")


def test_train_py_with_ddp_on_a_machine_without_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("trainer=ddp uses the GPUs here")
    done = run(tmp_path, str(REPO / "train.py"), "trainer=ddp", "logger=none", f"paths.root_dir={tmp_path}")
    assert_user_error(done, "trainer=ddp found no GPU", "trainer=ddp trainer.accelerator=cpu trainer.devices=2")
    assert not (tmp_path / ".cache").exists()  # stopped before any data was read
