#!/usr/bin/env python
"""Wall time of a 10-trial quickstart sweep with 1 and 2 workers, study on SQLite vs. on PostgreSQL.

usage: experiments/sweep_storage/run.py [--trials 10] [--workers 1 2] [--repeats 1] [--keep DIR] [extra overrides]

Each configuration is a fresh study (its own SQLite file, or its own database in one throwaway
PostgreSQL cluster on 127.0.0.1, made with empdg.sweep.postgres_cluster like the tests' cluster)
run by ``sweep.py sweep=quickstart sweep.n_jobs=N runtime.num_threads=N``: one torch thread per
worker. The runs share one root folder, so the built-in data is prepared once (an unmeasured
1-trial warm-up run pays it); MLflow tracking stays on (the default SQLite store), as a user's
quickstart sweep has it. Prints one line per run and a table; timing figures come from here,
never from the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from empdg.sweep.postgres_cluster import ThrowawayCluster, find_postgres_bin

REPO = Path(__file__).resolve().parents[2]


def run_sweep(root: Path, storage: str, study: str, trials: int, workers: int, extra: list[str]) -> dict:
    command = [sys.executable, str(REPO / "sweep.py"), "sweep=quickstart", f"paths.root_dir={root}",
               f"sweep.storage={storage}", f"sweep.study_name={study}", f"sweep.n_trials={trials}",
               f"sweep.n_jobs={workers}", f"runtime.num_threads={workers}", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    counts = re.search(r"this run: (complete=\d+, pruned=\d+, fail=\d+)", done.stdout)
    return {"wall": wall, "counts": counts.group(1) if counts else "?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    if find_postgres_bin() is None:
        raise SystemExit("PostgreSQL's initdb/pg_ctl not found: apt-get install postgresql")

    root = args.keep or Path(tempfile.mkdtemp(prefix="empdg-sweep-storage-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"runs in {root}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    rows = []
    with ThrowawayCluster(root) as cluster:  # default server settings (fsync on), like a real server
        warm = run_sweep(root, f"sqlite:///{root}/optuna/warmup.db", "warmup", 1, 1, args.overrides)
        print(f"warm-up (data preparation, not counted): {warm['wall']:.1f} s")
        for repeat in range(args.repeats):
            # other load on the machine drifts: alternate the order so no backend always runs first
            backends = ("sqlite", "postgresql") if repeat % 2 == 0 else ("postgresql", "sqlite")
            for backend in backends:
                for workers in args.workers:
                    name = f"{backend}_{workers}w_{repeat}"
                    if backend == "sqlite":
                        database = root / "optuna" / f"{name}.db"
                        database.unlink(missing_ok=True)  # a fresh study, even in a kept folder
                        storage = f"sqlite:///{database}"
                    else:
                        storage = cluster.create_database(name)
                    result = run_sweep(root, storage, name, args.trials, workers, args.overrides)
                    result["load"] = os.getloadavg()[0]
                    rows.append((backend, workers, result))
                    print(
                        f"{backend:10s} workers={workers} wall={result['wall']:.1f} s  {result['counts']}  "
                        f"(load average {result['load']:.1f})",
                        flush=True,
                    )

    print(f"\n| storage | workers | wall time, {args.trials} trials (s) | s / trial | trials | load average |")
    print("|---|---|---|---|---|---|")
    for backend, workers, result in rows:
        per_trial = result["wall"] / args.trials
        print(
            f"| {backend} | {workers} | {result['wall']:.1f} | {per_trial:.2f} | {result['counts']} "
            f"| {result['load']:.1f} |"
        )
    if args.repeats > 1:
        print("\nmedian wall time (s):")
        for backend in ("sqlite", "postgresql"):
            for workers in args.workers:
                walls = [r["wall"] for b, w, r in rows if (b, w) == (backend, workers)]
                print(
                    f"  {backend:10s} workers={workers}: {statistics.median(walls):.1f}  (runs: "
                    + ", ".join(f"{w:.1f}" for w in walls)
                    + ")"
                )


if __name__ == "__main__":
    main()
