"""What a run pays for logging through an MLflow server rather than to a local SQLite file.

``python -m empdg.benchmarks.tracking [--repeats 3] [train overrides ...]``

Starts a real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifact serving on, in a temporary
folder), then runs the same small training several times in this process, alternately with the local
store (``sqlite:///.../mlflow.db``, artifacts copied to a local folder) and through the server
(every metric batch, param, tag and artifact an HTTP request; artifacts uploaded through its proxy),
and prints each wall time, the medians and their difference. The run keeps quickstart's logging
cadence (metrics every 10 updates, 5 sample replies at each validation, every artifact) on a 16-d
model, so the tracking share is not hidden by the model's cost; Hydra overrides change either.
A warm-up run of each (unmeasured) builds the data cache and imports everything first.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

from empdg.config import compose
from empdg.tracking.local_server import running_server
from empdg.training.run import run_training

#: quickstart's logging cadence on a model small enough that the tracking share shows
SMALL_RUN = [
    "experiment=quickstart",
    "model.emb_dim=16",
    "model.hidden_dim=16",
    "model.attn_dim=16",
    "model.ff_dim=16",
    "adversarial.critic.hidden_dim=16",
    "adversarial.critic.num_filters=8",
    "data.builtin.train_per_emotion=4",
    "data.builtin.valid_per_emotion=1",
    "data.builtin.test_per_emotion=1",
    "training.phases.generator_pretrain=60",
    "training.phases.critic_pretrain=10",
    "training.phases.adversarial=10",
    "trainer.val_check_interval=30",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=mlflow",
    "logger.http_max_retries=0",  # a failing server shows as a fallback warning, not as minutes of retries
]


def timed_run(root: Path, name: str, tracking_uri: str, overrides: list[str]) -> float:
    """Wall seconds of one training run (composing included) logging to ``tracking_uri``."""
    cfg = compose(
        "train",
        [
            *SMALL_RUN,
            f"paths.root_dir={root}",
            f"paths.output_dir={root / 'runs' / name}",
            f"logger.tracking_uri={tracking_uri}",
            f"logger.run_name={name}",
            *overrides,
        ],
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's summary and sample replies
        run_training(cfg)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per store (median)")
    args, overrides = parser.parse_known_args(argv)
    times: dict[str, list[float]] = {"sqlite": [], "server": []}
    with tempfile.TemporaryDirectory(prefix="empdg-bench-tracking-") as tmp:
        root = Path(tmp)
        sqlite_uri = f"sqlite:///{root / 'local' / 'mlflow.db'}"
        with running_server(root / "server") as server:
            uris = {"sqlite": sqlite_uri, "server": server.uri}
            print(f"local store: {sqlite_uri}\nserver: {server.uri} (--serve-artifacts, SQLite backend)")
            for store, uri in uris.items():
                timed_run(root, f"warmup-{store}", uri, overrides)
            for i in range(args.repeats):
                order = ("sqlite", "server") if i % 2 == 0 else ("server", "sqlite")  # drift hits both
                for store in order:
                    seconds = timed_run(root, f"{store}-{i}", uris[store], overrides)
                    times[store].append(seconds)
                    print(f"run {i + 1}/{args.repeats} {store:6s}: {seconds:.2f} s", flush=True)
            if not any(server.artifacts.rglob("config.yaml")):
                raise RuntimeError("the server's runs have no artifacts in its artifact folder")
    local, remote = statistics.median(times["sqlite"]), statistics.median(times["server"])
    paired = statistics.median(b - a for a, b in zip(times["sqlite"], times["server"]))  # each pair ran back to back
    print(f"median of {args.repeats}: local SQLite {local:.2f} s, through the server {remote:.2f} s")
    print(f"extra time for logging through the server: {remote - local:+.2f} s per run ({remote / local - 1:+.1%}); "
          f"median of the paired differences {paired:+.2f} s")  # fmt: skip
    return {"sqlite_s": local, "server_s": remote, "extra_s": remote - local, "paired_extra_s": paired}


if __name__ == "__main__":
    main()
