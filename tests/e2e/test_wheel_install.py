"""The package installs anywhere: a wheel built from the checkout, installed (not editable) into a folder
of its own, runs a tiny train, an evaluation of its checkpoint and a comparison of its MLflow store from a
folder outside the repository -- so the configs ship inside the package and nothing is looked up in the
checkout. The installed copy reuses the dependencies of the current environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import REPO, tiny_overrides

TINY_TRAIN = [
    *tiny_overrides(train=2, test=1, mle_only=True),
    "training.phases.generator_pretrain=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "training.sample_generations=0",
    "runtime.num_threads=1",
]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(folder the wheel is installed into, environment whose PYTHONPATH puts it before the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(source)], tmp, env)
    (wheel,) = (tmp / "dist").glob("empdg-*.whl")
    site = tmp / "site"
    run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], tmp, env)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(site / "bin"), env.get("PATH", "")])
    return site, env


@pytest.mark.slow
def test_the_installed_wheel_trains_evaluates_and_compares_outside_the_checkout(installed, tmp_path: Path) -> None:
    site, env = installed
    code = "import empdg.config as c; print(c.__file__); print(c.CONFIG_DIR)"
    where = run([sys.executable, "-c", code], tmp_path, env)
    module_file, config_dir = where.split()
    assert Path(module_file).is_relative_to(site) and Path(config_dir).is_relative_to(site), where  # not the checkout
    assert (Path(config_dir) / "runtime" / "default.yaml").is_file()
    for name in ("train", "sweep", "evaluate", "chat", "compare"):
        assert (site / "bin" / f"empdg-{name}").is_file()

    # defaults relative to the working directory: outputs/, mlruns/ and the data cache land here
    run(["empdg-train", *TINY_TRAIN], tmp_path, env)
    (checkpoint,) = tmp_path.glob("outputs/quickstart/*/checkpoints/last.ckpt")
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()

    evaluation = run(["empdg-evaluate", f"ckpt_path={checkpoint}", "decoding.max_len=4", "runtime.num_threads=1",
                      "evaluate.meaning=false"],
                     tmp_path, env)  # fmt: skip
    assert json.loads(evaluation.strip().splitlines()[-1])["n_examples"] > 0
    assert "linked to training run" in evaluation

    table = run(["empdg-compare", "experiment=quickstart", "compare.bootstrap.n=20", "log_run=false"], tmp_path, env)
    assert "test/ppl" in table  # the evaluation's metrics, logged back onto the training run
    (folder,) = tmp_path.glob("comparisons/quickstart/*")
    assert (folder / "comparison.md").is_file() and (folder / "comparison_test.md").is_file()  # bootstrap table
