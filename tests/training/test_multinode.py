"""Two machines, proven on one: ``trainer=ddp trainer.num_nodes=2`` as two torchrun node processes.

Each node is its own ``torchrun --nnodes 2 --node-rank R`` (static rendezvous on 127.0.0.1, gloo on
CPU), started at the same moment as on a cluster, running the real ``train.py`` Hydra app through
every phase. Each rank writes what it saw (tests/training/ddp_param_check.py, ``--train-py``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import tiny_overrides

from empdg.tracking.local_server import free_port

HERE = Path(__file__).resolve().parent
TORCHRUN = Path(sys.executable).with_name("torchrun")
PHASES = {"generator_pretrain": 2, "critic_pretrain": 2, "adversarial": 2}
OVERRIDES = [
    *tiny_overrides(32, batch_size=4),
    "trainer=ddp",
    "trainer.num_nodes=2",
    "trainer.devices=1",
    "trainer.accelerator=cpu",
    "trainer.val_check_interval=4",  # one validation inside the fit, one after it
    "training.sample_generations=2",
    "training.sample_max_len=5",
    *[f"training.phases.{name}={n}" for name, n in PHASES.items()],
    "adversarial.n_critic=1",
    "adversarial.g_steps=2",
]
OPTIMIZER_STEPS = 2 + 2 + 2 * (1 + 2)  # every optimizer.step() counts, critics' included
WAIT_S = 300  # a hang guard, not a timing assertion


def node_env() -> dict[str, str]:
    """This environment without any launcher's variables (a SLURM job or a torchrun around pytest)."""
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launcher and not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    # gloo on the loopback interface: no dependence on how the host name resolves offline
    return {**env, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1", "GLOO_SOCKET_IFNAME": "lo"}


def stop(process: subprocess.Popen) -> None:
    """End a node's process group (torchrun and its worker), politely first."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.slow
def test_two_torchrun_nodes_train_every_phase_in_sync(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"  # explicit and the same on both nodes (Hydra's default is per process)
    port = free_port()
    args = [
        str(TORCHRUN),
        "--nnodes=2",
        "--nproc-per-node=1",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
    ]
    script = [str(HERE / "ddp_param_check.py"), "--train-py", str(run_dir), *OVERRIDES]
    script += [f"paths.root_dir={tmp_path}", f"paths.output_dir={run_dir}", "logger=mlflow"]
    nodes: list[tuple[subprocess.Popen, Path]] = []
    try:
        for node_rank in (0, 1):  # both at once, as on two machines
            log_path = tmp_path / f"node{node_rank}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [*args, f"--node-rank={node_rank}", *script],
                    cwd=tmp_path,
                    env=node_env(),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() ends the worker too
                )
            nodes.append((process, log_path))
        deadline = time.monotonic() + WAIT_S
        while any(p.poll() is None for p, _ in nodes) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p, _ in nodes):
                break  # one node failed: the other would wait for it until its own timeout
            time.sleep(0.5)
        codes = [p.poll() for p, _ in nodes]
        tails = [f"--- node {r} ---\n" + log.read_text(errors="replace")[-4000:] for r, (_, log) in enumerate(nodes)]
        logs = "\n".join(tails)
        assert codes == [0, 0], f"exit codes {codes} (None: still running after {WAIT_S}s)\n{logs}"
    finally:
        for process, _ in nodes:
            stop(process)

    ranks = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["node_rank"]) for r in ranks] == [(0, 0), (1, 1)]
    assert all(r["world_size"] == 2 and r["num_nodes"] == 2 for r in ranks)
    assert all(r["cluster_environment"] == "TorchElasticEnvironment" for r in ranks)  # torchrun's env was used
    assert all(r["phases_done"] == PHASES == r["phases_budget"] for r in ranks)  # every phase ran, on both
    assert all(r["global_step"] == OPTIMIZER_STEPS for r in ranks)
    assert ranks[0]["before"] == ranks[1]["before"]  # same seeded initialisation on both nodes
    assert ranks[0]["after"] == ranks[1]["after"]  # identical updates: gradients averaged across nodes
    assert ranks[0]["after"] != ranks[0]["before"]  # and training changed the parameters

    # only rank 0 tracks and writes the run: one MLflow run in the configured store, finished there
    # (a second process opening the SQLite store at the same moment sent rank 0 to its fallback)
    assert [r["logger"] for r in ranks] == ["ResilientMLFlowLogger", None]
    with sqlite3.connect(tmp_path / "mlruns" / "mlflow.db") as db:
        assert [row[0] for row in db.execute("SELECT status FROM runs")] == ["FINISHED"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "vocab.json").is_file()
    outputs = [log.read_text(errors="replace") for _, log in nodes]
    assert ["empdg run finished" in text for text in outputs] == [True, False]
