"""Latency of a served model: one reply per REST request to ``mlflow models serve``, p50 and p95.

``python -m empdg.benchmarks.serving [--requests 100] [--threads 1] [--model-uri models:/NAME/V --tracking-uri URI]``

Without ``--model-uri`` it makes the tiny model first, the way a user would: ``empdg-train`` with a 16-d
generator on a small built-in corpus and ``logger.register_model=tiny`` into a temporary SQLite store. Then it
starts ``mlflow models serve --env-manager local`` on 127.0.0.1, waits for ``/ping``, sends a few warm-up
requests and times ``--requests`` sequential requests, each one dialogue history (a different one each time)
with the registered default decoding (greedy), from sending to the parsed JSON answer. It prints the figures;
nothing asserts them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from empdg.serving.model_server import serving_environment, serving_model

#: the tiny model (tests/tiny.py's sizes): what the closing note's figure is about
TINY_TRAIN = [
    "experiment=quickstart",
    *(f"model.{key}=16" for key in ("emb_dim", "hidden_dim", "attn_dim", "ff_dim")),
    "data.builtin.train_per_emotion=4",
    "data.builtin.valid_per_emotion=1",
    "data.builtin.test_per_emotion=1",
    "data.batch_size=8",
    "training.phases.generator_pretrain=4",
    "training.phases.critic_pretrain=0",
    "training.phases.adversarial=0",
    "trainer.val_check_interval=4",
    "trainer.enable_progress_bar=false",
    "training.sample_generations=0",
]

USER_TURNS = [
    "i just got a new puppy and i am so happy !",
    "my car broke down on the way to work today .",
    "i was so nervous before my exam this morning .",
    "my best friend forgot my birthday .",
    "we finally paid off the house !",
]


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(q / 100 * len(ordered))) - 1)]


def _tiny_model(folder: Path, env: dict[str, str]) -> tuple[str, str]:
    """Train and register the tiny model in ``folder``; returns (model URI, tracking URI)."""
    store = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    command = [sys.executable, "-m", "empdg.train", *TINY_TRAIN, f"paths.root_dir={folder}"]
    result = subprocess.run(
        [*command, "logger.register_model=tiny"], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise SystemExit(f"training the tiny model failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("registered model: "))
    return line.split()[2], store


def _post(url: str, body: dict) -> dict:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server (torch threads)")
    parser.add_argument("--model-uri", default=None, help="serve this registered model instead of a tiny new one")
    parser.add_argument("--tracking-uri", default=None, help="the store of --model-uri (else MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    env = serving_environment({**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    with tempfile.TemporaryDirectory(prefix="empdg-bench-serving-") as tmp:
        folder = Path(tmp)
        if args.model_uri:
            model_uri, store = args.model_uri, args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        else:
            started = time.perf_counter()
            model_uri, store = _tiny_model(folder, env)
            print(f"tiny model trained and registered as {model_uri} in {time.perf_counter() - started:.1f} s")
        with serving_model(model_uri, store, folder, env) as server:
            startup = server.startup_s
            bodies = [
                {"dataframe_records": [{"history": [USER_TURNS[i % len(USER_TURNS)]]}]}
                for i in range(args.warmup + args.requests)
            ]
            for body in bodies[: args.warmup]:
                _post(server.invocations, body)
            times = []
            for body in bodies[args.warmup :]:
                sent = time.perf_counter()
                answer = _post(server.invocations, body)
                times.append((time.perf_counter() - sent) * 1000)
                if not answer["predictions"][0]["reply"]:
                    raise SystemExit(f"empty reply: {answer}")
    figures = {
        "p50_ms": statistics.median(times),
        "p95_ms": _percentile(times, 95),
        "mean_ms": statistics.fmean(times),
        "max_ms": max(times),
        "server_startup_s": startup,
    }
    print(
        f"{model_uri} served by `mlflow models serve --env-manager local` (127.0.0.1, {args.threads} thread(s)): "
        f"{args.requests} sequential one-reply requests, greedy\n"
        f"latency p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms (mean {figures['mean_ms']:.1f}, "
        f"max {figures['max_ms']:.1f}); server start to first /ping {startup:.1f} s"
    )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
