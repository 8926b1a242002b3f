"""Hostile and careless inputs, one table: each case prepares files, runs a command, and states its outcome.

A case is a row of ``CASES``: ``prepare(ctx)`` writes whatever the case needs under ``ctx.tmp`` (it may use
the shared tiny run folder ``ctx.run_dir``, copied per case so no case sees another's damage) and returns
the command's arguments after ``python``; ``status`` is the expected exit status; ``error`` the texts the
one ``error:`` line must hold when ``status`` is 2 (no traceback anywhere in the output), or texts the
output must hold otherwise; ``after(ctx, done)`` checks what must hold afterwards (a cache rebuilt, a
run marked killed...). The next hardening pass adds rows, not tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tiny import REPO, tiny_overrides

from empdg.errors import EXIT_USER_ERROR

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8", "HYDRA_FULL_ERROR": "0"}
TRAIN = str(REPO / "train.py")
SWEEP = str(REPO / "sweep.py")


@dataclass
class Context:
    """What a case may use: its own folder, a private copy of a tiny trained run folder."""

    tmp: Path
    shared_run: Path
    extra: dict = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        """A private copy of the shared tiny run (made on first use), so a case may damage it."""
        target = self.tmp / "run"
        if not target.exists():
            shutil.copytree(self.shared_run, target, symlinks=True)
        return target

    @property
    def ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"


@dataclass(frozen=True)
class Case:
    id: str
    prepare: Callable[[Context], list[str]]
    status: int = EXIT_USER_ERROR
    error: tuple[str, ...] = ()
    after: Callable[[Context, subprocess.CompletedProcess], None] | None = None
    stdin: str | None = None
    timeout: int = 240
    #: runs the command instead of a plain ``subprocess.run`` (e.g. to send it a signal mid-run)
    runner: Callable[[Context, list[str]], subprocess.CompletedProcess] | None = None


def _tiny_train_args(ctx: Context, *extra: str, run: str = "train") -> list[str]:
    return [TRAIN, *tiny_overrides(), "logger=none", f"paths.root_dir={ctx.tmp}", f"paths.output_dir={ctx.tmp / run}",
            "training.sample_generations=0", *extra]  # fmt: skip


# ---- the cases ---------------------------------------------------------------------------------------------------
# Each area adds its rows in its own section; keep one row per case.

# -- checkpoints and run folders --
EVALUATE = ["-m", "empdg.evaluate", "logger=none"]
CHAT = ["-m", "empdg.chat"]
CKPT_CSV = b"speaker,utterance\nhi,you\n"


def _ckpt_with(command: list[str], make: Callable[[Context], Path]) -> Callable[[Context], list[str]]:
    """``command ckpt_path=<what make(ctx) returns>``."""
    return lambda ctx: [*command, f"ckpt_path={make(ctx)}"]


def _ckpt_file(content: bytes) -> Callable[[Context], Path]:
    def make(ctx: Context) -> Path:
        (ctx.tmp / "model.ckpt").write_bytes(content)
        return ctx.tmp / "model.ckpt"

    return make


def _ckpt_fifo(ctx: Context) -> Path:
    os.mkfifo(ctx.tmp / "model.ckpt")
    return ctx.tmp / "model.ckpt"


def _ckpt_no_output_folder(ctx: Context, done: subprocess.CompletedProcess) -> None:
    left = list((ctx.tmp / "outputs" / "evaluate").glob("*"))
    assert not left, f"a failed evaluation left {left} behind"


def _ckpt_edited_weights(ctx: Context) -> Path:
    """The run's checkpoint less one generator weight (an edited file, or another model's hyper-parameters)."""
    import torch

    checkpoint = torch.load(ctx.ckpt, weights_only=True)
    del checkpoint["state_dict"][next(k for k in checkpoint["state_dict"] if k.startswith("generator."))]
    torch.save(checkpoint, ctx.tmp / "model.ckpt")
    return ctx.tmp / "model.ckpt"


CHECKPOINT_CASES: list[Case] = [
    # a CSV's bytes made torch's weights-only unpickler raise IndexError (pop from empty list): a traceback
    Case("ckpt_not_torch", _ckpt_with(EVALUATE, _ckpt_file(CKPT_CSV)),
         error=("model.ckpt is not a PyTorch checkpoint", "neither a zip archive nor a pickle"),
         after=_ckpt_no_output_folder),
    # a FIFO was said not to exist
    Case("ckpt_fifo", _ckpt_with(CHAT, _ckpt_fifo), stdin="", error=("model.ckpt is not a regular file",)),
    # a run folder was said not to exist: it stands for its best checkpoint
    Case("ckpt_run_folder", _ckpt_with(CHAT, lambda ctx: ctx.run_dir), stdin="hello\n/quit\n", status=0,
         error=("ckpt_path=", ": using its best checkpoint ", "checkpoints/best-", "bot> ")),
    # weights that do not fit the hyper-parameters ended in load_state_dict's RuntimeError traceback
    Case("ckpt_weights_do_not_fit", _ckpt_with(CHAT, _ckpt_edited_weights), stdin="",
         error=("model.ckpt: its weights do not fit the model its hyper-parameters describe",
                "generator.*: Missing key(s)", "pass a checkpoint file as training wrote it")),
]  # fmt: skip


# -- preprocessing caches --
def _cache_crafted(craft: Callable[[dict], str]) -> Callable[[Context], list[str]]:
    """A tiny training run whose preprocessing cache (at the very path it will read) holds ``craft(payload)``."""

    def prepare(ctx: Context) -> list[str]:
        import json

        from omegaconf import OmegaConf

        from empdg.config import compose
        from empdg.data.preprocess import cache_key, prepare_examples

        cfg = compose("train", [*tiny_overrides(), f"paths.root_dir={ctx.tmp}"])
        data = OmegaConf.to_container(cfg.data, resolve=True)
        path = prepare_examples(data).cache_path  # a good cache of this very key, then damaged
        path.write_text(craft(json.loads(path.read_bytes())), encoding="utf-8")
        ctx.extra["cache"] = (path, cache_key(data))
        return _tiny_train_args(ctx)

    return prepare


def _cache_rebuilt(ctx: Context, done: subprocess.CompletedProcess) -> None:
    from empdg.data.preprocess import _decode_cache

    path, key = ctx.extra["cache"]
    assert "ignoring the invalid preprocessing cache" in done.stdout + done.stderr
    _decode_cache(path, key)  # the bad file was overwritten by a valid cache


# one training run; every other crafted cache (wrong types, indices, emotion 999...) is rebuilt the same way, in
# tests/data/test_preprocess.py
CACHE_CASES: list[Case] = [
    Case("cache_nested_json_is_rebuilt",
         _cache_crafted(lambda payload: '{"format": "empdg-prepared-examples", "splits": ' + "[" * 100_000 + "}"),
         status=0, error=("nested more than 8 levels deep",), after=_cache_rebuilt),
]  # fmt: skip

# -- run configs (config.yaml) and vocabularies --
# five lines, 111,110 strings once the aliases are expanded: OmegaConf.load took 13.5 s over them here
CFG_ALIAS_BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 10)}]\n" for prev, name in zip("abcd", "bcde")
)


def _cfg_run_config(text: str) -> Callable[[Context], Path]:
    def make(ctx: Context) -> Path:
        (ctx.run_dir / "config.yaml").write_text(text, encoding="utf-8")
        return ctx.ckpt

    return make


def _cfg_overrides_file(ctx: Context) -> list[str]:
    (ctx.tmp / "best_overrides.txt").write_text("experiment=quickstart\nexperiment_name='my run; $(touch x) *'\n")
    return [TRAIN, f"overrides_file={ctx.tmp / 'best_overrides.txt'}", "seed=7", "--cfg", "job"]


def _cfg_train(*overrides: str) -> Callable[[Context], list[str]]:
    return lambda ctx: _tiny_train_args(ctx, *overrides)


def _cfg_old_checkpoint(**adversarial) -> Callable[[Context], Path]:
    """The run's checkpoint with the hyper-parameters a run before config_version stored (the migration's
    fixture: the same tiny sizes), ``adversarial`` keys changed."""

    def make(ctx: Context) -> Path:
        import json

        import torch

        checkpoint = torch.load(ctx.ckpt, weights_only=True)
        old = json.loads((REPO / "tests" / "config" / "fixtures" / "hparams_v1_absolute_weight.json").read_text())
        old["adversarial"].update(adversarial)
        checkpoint["hyper_parameters"] = {**old, "vocab_tokens": checkpoint["hyper_parameters"]["vocab_tokens"]}
        torch.save(checkpoint, ctx.tmp / "model.ckpt")
        return ctx.tmp / "model.ckpt"

    return make


RUN_CONFIG_CASES: list[Case] = [
    Case("cfg_alias_bomb", _ckpt_with(EVALUATE, _cfg_run_config(CFG_ALIAS_BOMB)),
         error=("run/config.yaml: expands to more than 100000 YAML nodes",), after=_ckpt_no_output_folder),
    # was a ConstructorError traceback
    Case("cfg_object_tag", _ckpt_with(CHAT, _cfg_run_config("data: !!python/object:os.system {}")), stdin="",
         error=("run/config.yaml: not a valid run config", "python/object:os.system")),
    # a sweep's best_overrides.txt: each line one override, no shell splitting or expansion (was `$(cat ...)`)
    Case("cfg_overrides_file", _cfg_overrides_file, status=0,
         error=("experiment_name: my run; $(touch x) *", "seed: 7")),
    # the one adversarial weight: a share or abs:<weight>, nothing else
    Case("cfg_w_adv_not_a_weight", _cfg_train("adversarial.w_adv=abs:x"),
         error=("adversarial.w_adv='abs:x' is not a weight", "such as 0.2 (0: off), or abs:<weight> such as abs:0.01")),
    # a key removed with the smaller adversarial surface (an alias of adversarial.estimator): Hydra's own error
    Case("cfg_removed_adversarial_key", _cfg_train("adversarial.relaxation=gumbel"),
         error=("adversarial.relaxation",)),
    # a checkpoint of a run before config_version loads through the migration ...
    Case("cfg_old_checkpoint_loads", _ckpt_with(CHAT, _cfg_old_checkpoint()), stdin="hello\n/quit\n", status=0,
         error=("bot> ",)),
    # ... unless it used a setting that is fixed now
    Case("cfg_old_checkpoint_unexpressible", _ckpt_with(EVALUATE, _cfg_old_checkpoint(sample_temperature=0.7)),
         error=("this run used adversarial.sample_temperature=0.7", "cannot be rebuilt"),
         after=_ckpt_no_output_folder),
]  # fmt: skip

# -- prediction files --
_PRED_LINE = '{"emotion": "sad", "context": ["a"], "pred": "x", "ref": "y"}\n'


def _pred_file(name: str, body: bytes | None = None, size: int | None = None):
    """``empdg.evaluate predictions_file=<name>`` where the file holds ``body`` (or ``size`` bytes, sparse)."""

    def prepare(ctx: Context) -> list[str]:
        path = ctx.tmp / name
        path.write_bytes(body or b"")
        if size is not None:
            os.truncate(path, size)  # no page written: the guard must refuse it from its size alone
        return ["-m", "empdg.evaluate", f"predictions_file={path}", "logger=none", f"paths.root_dir={ctx.tmp}"]

    return prepare


PREDICTION_CASES: list[Case] = [
    Case("pred_jsonl_wrong_type", _pred_file("p.jsonl", (_PRED_LINE + _PRED_LINE.replace('["a"]', "5")).encode()),
         error=("p.jsonl:2: context: Input should be a valid list (found 5)",)),
    Case("pred_jsonl_deep_nesting",
         _pred_file("p.jsonl", (_PRED_LINE + '{"emotion": ' + "[" * 100_000 + "]" * 100_000 + "}\n").encode()),
         error=("p.jsonl:2: nested more than 16 levels deep",)),
    Case("pred_not_utf8", _pred_file("pred_x.txt", "emotion:café\nContext:['a']\nPred:x\nRef:y\n".encode("latin-1")),
         error=("pred_x.txt: prediction file is not UTF-8 text (byte 11, line 1",)),
    Case("pred_over_the_size_limit", _pred_file("p.jsonl", size=200 * 1024 * 1024),
         error=("p.jsonl: prediction file is 200.0 MB, over the limit of 64 MB; raise evaluate.max_file_mb",)),
]  # fmt: skip


# -- sweeps --
def _sweep_args(ctx: Context, *extra: str) -> list[str]:
    return [SWEEP, "sweep=quickstart", f"paths.root_dir={ctx.tmp}", "logger=none", *extra]


def _sweep_no_study(ctx: Context, done: subprocess.CompletedProcess) -> None:
    assert not (ctx.tmp / "optuna").exists(), "the study was touched"


def _sweep_storage(content: bytes) -> Callable[[Context], list[str]]:
    def make(ctx: Context) -> list[str]:
        (ctx.tmp / "study.db").write_bytes(content)
        return _sweep_args(ctx, f"sweep.storage=sqlite:///{ctx.tmp / 'study.db'}")

    return make


SWEEP_CASES: list[Case] = [
    Case("sweep-importance-min-trials-1", lambda ctx: _sweep_args(ctx, "sweep.importance_min_trials=1"),
         error=("sweep.importance_min_trials=1", "integer >= 2"), after=_sweep_no_study),
    # was an OperationalError/DatabaseError traceback, exit 1 (which says "every trial failed")
    Case("sweep_corrupt_storage", _sweep_storage(b"SQLite format 3\x00" + b"\xff" * 200),
         error=("study.db: SQLite cannot use", "move it away")),
]  # fmt: skip


# -- training: signals, precision, tracking --
def _train_long_args(ctx: Context) -> list[str]:
    """A run far longer than any case: it only ends by the signal the case sends (MLflow store in ctx.tmp)."""
    return _tiny_train_args(ctx, "logger=mlflow", "training.phases.generator_pretrain=100000",
                            "trainer.log_every_n_steps=1")  # fmt: skip


def _train_logged_steps(ctx: Context) -> int:
    """How many ``train/loss`` values the run has in its MLflow store: > 0 once training is under way."""
    import sqlite3

    record, store = ctx.tmp / "train" / "mlflow_run.json", ctx.tmp / "mlruns" / "mlflow.db"
    if not record.is_file() or not store.is_file():
        return 0
    try:
        import json

        run_id = json.loads(record.read_text())["run_id"]
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as db:
            query = "select count(*) from metrics where run_uuid=? and key='train/loss'"
            return int(db.execute(query, (run_id,)).fetchone()[0])
    except (sqlite3.Error, ValueError, KeyError):
        return 0


def _train_signal(signum: int) -> Callable[[Context, list[str]], subprocess.CompletedProcess]:
    """Start the run, send ``signum`` once it has logged a training step, collect what it printed."""

    def run(ctx: Context, args: list[str]) -> subprocess.CompletedProcess:
        command = [sys.executable, *args]
        process = subprocess.Popen(command, cwd=ctx.tmp, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while _train_logged_steps(ctx) == 0 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            process.send_signal(signum)
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        return subprocess.CompletedProcess(command, process.returncode, out, err)

    return run


def _train_stopped_cleanly(ctx: Context, done: subprocess.CompletedProcess) -> None:
    """A checkpoint of the steps done, and the MLflow run marked KILLED (not FAILED, not RUNNING)."""
    import json

    import torch
    from mlflow.tracking import MlflowClient

    checkpoint = torch.load(ctx.tmp / "train" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] >= 1
    record = json.loads((ctx.tmp / "train" / "mlflow_run.json").read_text())
    assert MlflowClient(tracking_uri=record["tracking_uri"]).get_run(record["run_id"]).info.status == "KILLED"


def _train_bf16_on_avx2(ctx: Context) -> list[str]:
    """A short run with both critics in bf16-mixed on a CPU limited to AVX2 (oneDNN told so: no AVX-512 kernels)."""
    ctx.extra["env"] = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    return _tiny_train_args(ctx, "trainer.precision=bf16-mixed", "training.phases.generator_pretrain=4",
                            "training.phases.critic_pretrain=2", "training.phases.adversarial=1",
                            "trainer.val_check_interval=4")  # fmt: skip


TRAINING_CASES: list[Case] = [
    # was: "could not create a primitive descriptor for the LSTM forward propagation primitive" in the critic
    Case("train_bf16_mixed_on_an_avx2_only_cpu", _train_bf16_on_avx2, status=0),
    # was: "Received SIGTERM", exit 0, MLflow run FAILED, no checkpoint of the steps done
    Case("train_sigterm_mid_run", _train_long_args, status=143, runner=_train_signal(signal.SIGTERM),
         error=("stopped by SIGTERM", "resume with: ckpt_path="), after=_train_stopped_cleanly),
    # was: "Detected KeyboardInterrupt", exit 1, MLflow run FAILED, no checkpoint
    Case("train_sigint_mid_run", _train_long_args, status=130, runner=_train_signal(signal.SIGINT),
         error=("stopped by SIGINT", "resume with: ckpt_path="), after=_train_stopped_cleanly),
]  # fmt: skip


# -- human evaluation (empdg-human-export, empdg-human-report) --
def _human_report_args(ctx: Context, annotation: str) -> list[str]:
    return ["-m", "empdg.human_report", f"study_dir={ctx.tmp / 'study'}", f"annotations=[{ctx.tmp / annotation}]",
            "log_run=false", f"paths.root_dir={ctx.tmp}"]  # fmt: skip


def _human_bad_csv(ctx: Context) -> list[str]:
    from human_eval_helpers import export_synthetic_study

    study = export_synthetic_study(ctx.tmp, n_systems=2)
    rows = (study / "csv" / "pairwise.csv").read_text(encoding="utf-8-sig").splitlines()
    rows[2] = rows[2][: -len(",,,,")] + ",ann,maybe,A,B"  # the second task: empathy answered "maybe"
    (ctx.tmp / "filled.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return _human_report_args(ctx, "filled.csv")


def _human_one_system(ctx: Context) -> list[str]:
    (ctx.tmp / "a.jsonl").write_text(_PRED_LINE, encoding="utf-8")
    return ["-m", "empdg.human_export", f"systems={{a: {ctx.tmp / 'a.jsonl'}}}", f"paths.root_dir={ctx.tmp}"]


HUMAN_EVAL_CASES: list[Case] = [
    Case("human_report_bad_csv_answer", _human_bad_csv,
         error=("filled.csv: row 3 (task p00002): empathy: 'maybe': expected A, B or tie",)),
    Case("human_report_no_study", lambda ctx: _human_report_args(ctx, "x.json"),
         error=("study.json: no such study manifest",)),
    Case("human_export_one_system", _human_one_system, error=("a study needs two or more systems",)),
    # no systems at all was a traceback (None is not a config node)
    Case("human_export_no_systems", lambda ctx: ["-m", "empdg.human_export", f"paths.root_dir={ctx.tmp}"],
         error=("a study needs two or more systems: systems={EmpDG: pred_EmpDG.txt",)),
    Case("human_export_systems_not_a_mapping", lambda ctx: ["-m", "empdg.human_export", "systems=a.txt"],
         error=("systems='a.txt': give NAME: FILE pairs",)),
]  # fmt: skip

# -- privacy: opted-in chat logs (empdg.chat chat.log.*, empdg.chat_logs) --
PRIVACY_SESSION = "0123456789abcdef"


def _privacy_logs(ctx: Context, *extra: str, body: str | None = None, retention_days: float = 36500) -> list[str]:
    """``python -m empdg.chat_logs`` on ``ctx.tmp/logs``, holding one session file with ``body`` when given
    (kept for a century unless ``retention_days`` says otherwise: the fixed dates of these records must not expire)."""
    (ctx.tmp / "logs").mkdir()
    if body is not None:
        (ctx.tmp / "logs" / f"{PRIVACY_SESSION}.jsonl").write_text(body, encoding="utf-8")
    return ["-m", "empdg.chat_logs", f"chat.log.dir={ctx.tmp / 'logs'}", f"chat.log.retention_days={retention_days}",
            *extra]  # fmt: skip


_PRIVACY_RECORD = f'{{"session": "{PRIVACY_SESSION}", "turn": 1, "time": "2026-12-01T10:00:00Z", "user": "", '
_PRIVACY_RECORD += '"reply": ""}\n'


def _privacy_report_after_retention(ctx: Context) -> list[str]:
    """A fresh turn (now) and one from 2020 in the same session: the report counts only the fresh one."""
    import time as clock

    now = clock.strftime("%Y-%m-%dT%H:%M:%SZ", clock.gmtime())
    old = _PRIVACY_RECORD.replace('"turn": 1', '"turn": 0').replace("2026-12-01", "2020-01-01")
    return _privacy_logs(ctx, body=old + _PRIVACY_RECORD.replace("2026-12-01T10:00:00Z", now), retention_days=30)


def _privacy_deleted(ctx: Context, done: subprocess.CompletedProcess) -> None:
    assert not list((ctx.tmp / "logs").glob("*.jsonl"))


def _privacy_chat_log_dir_is_a_file(ctx: Context) -> list[str]:
    (ctx.tmp / "taken").write_text("not a folder", encoding="utf-8")
    return [*CHAT, f"ckpt_path={ctx.ckpt}", "chat.log.enabled=true", f"chat.log.dir={ctx.tmp / 'taken'}"]


PRIVACY_CASES: list[Case] = [
    Case("privacy_chat_log_dir_is_a_file", _privacy_chat_log_dir_is_a_file, stdin="hi\n",
         error=("chat.log.dir=", "cannot be written", "pass chat.log.dir=")),
    Case("privacy_retention_not_positive", lambda ctx: _privacy_logs(ctx, retention_days=0),
         error=("chat.log.retention_days=0.0 must be > 0",)),
    Case("privacy_delete_not_a_session_id", lambda ctx: _privacy_logs(ctx, "action=delete", "session=../mlflow"),
         error=("session='../mlflow' is not a session id",)),
    Case("privacy_delete_unknown_session",
         lambda ctx: _privacy_logs(ctx, "action=delete", "session=fedcba9876543210", body=_PRIVACY_RECORD),
         error=("no records of session fedcba9876543210",)),
    Case("privacy_report_after_retention", _privacy_report_after_retention, status=0,
         error=("sessions: 1, turns: 1, CPS (turns per session): 1.00", "1 record(s) older than")),
    Case("privacy_delete_one_session",
         lambda ctx: _privacy_logs(ctx, "action=delete", f"session={PRIVACY_SESSION}", body=_PRIVACY_RECORD * 2),
         status=0, error=(f"deleted 2 record(s) of session {PRIVACY_SESSION}",), after=_privacy_deleted),
    Case("privacy_report_malformed_log", lambda ctx: _privacy_logs(ctx, body=_PRIVACY_RECORD + "{not json\n"),
         error=(f"{PRIVACY_SESSION}.jsonl:2: not a JSON record",)),
]  # fmt: skip

CASES: list[Case] = [
    *CHECKPOINT_CASES, *CACHE_CASES, *RUN_CONFIG_CASES, *PREDICTION_CASES, *SWEEP_CASES, *TRAINING_CASES,
    *HUMAN_EVAL_CASES,
    *PRIVACY_CASES,
]  # fmt: skip


# ---- the runner --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run folder (checkpoints, config.yaml, vocab), built once for the whole table."""
    root = tmp_path_factory.mktemp("shared")
    ctx = Context(tmp=root, shared_run=root)
    done = subprocess.run(
        [sys.executable, *_tiny_train_args(ctx, run="run")], cwd=root, env=ENV, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return root / "run"


def _check(case: Case, done: subprocess.CompletedProcess) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == case.status, f"exit {done.returncode}, expected {case.status}:\n{output[-3000:]}"
    if case.status == EXIT_USER_ERROR:
        assert "Traceback" not in output and "Error executing job" not in output, output[-3000:]
        lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, done.stderr[-3000:]
        for text in case.error:
            assert text in lines[0], lines[0]
    else:
        for text in case.error:
            assert text in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_case(case: Case, tmp_path: Path, shared_run: Path) -> None:
    ctx = Context(tmp=tmp_path, shared_run=shared_run)
    args = case.prepare(ctx)
    if case.runner is not None:
        done = case.runner(ctx, args)
        _check(case, done)
        if case.after is not None:
            case.after(ctx, done)
        return
    done = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env={**ENV, **ctx.extra.get("env", {})}, input=case.stdin,
        capture_output=True, text=True, timeout=case.timeout,
    )  # fmt: skip
    _check(case, done)
    if case.after is not None:
        case.after(ctx, done)
