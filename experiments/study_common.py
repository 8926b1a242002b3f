"""What the Python study scripts share: the interpreter, running a command into a log, mean ± std.

The scripts add ``experiments/`` to ``sys.path`` and import this module; it is not part of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python() -> str:
    """The project's virtualenv unless ``PYTHON`` says otherwise."""
    venv = REPO / ".venv" / "bin" / "python"
    return os.environ.get("PYTHON") or (str(venv) if venv.exists() else sys.executable)


def run(command: list[str], log_path: Path, threads: int) -> float:
    """Run a train or evaluate command with ``threads`` torch threads, output to ``log_path``; its seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [*command, f"runtime.num_threads={threads}"]
    started = time.time()
    with log_path.open("w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    seconds = time.time() - started
    if code != 0:
        raise RuntimeError(f"failed ({code}) after {seconds:.0f}s: {' '.join(command)}\n  see {log_path}")
    print(f"  done in {seconds:.0f}s: {log_path.parent.name}", flush=True)
    return seconds


def real_data(data_root: str | Path) -> list[str]:
    """Overrides that read the official EmpatheticDialogues CSV files in ``data_root`` (no download)."""
    return ["data=empathetic_dialogues", f"data.root={data_root}", "data.download=false"]


#: ``--smoke`` for a pretrained generator: experiment=quickstart sets word-level sizes it refuses
HF_SMOKE = ["experiment=hf_quickstart", "training.sample_generations=0"]


def minilm_overrides(folder: str | Path) -> list[str]:
    """The MiniLM BERT2BERT (``python -m empdg.make_bert2bert DIR``) as the generator, with the fine-tuning Adam."""
    return ["model=hf_seq2seq", f"model.pretrained={Path(folder).resolve()}", "optim=finetune"]


def mean_std(values: list[float], digits: int = 3) -> str:
    """``mean ± std`` (sample std) with ``digits`` significant digits; one value alone; ``–`` for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}g}"
    return f"{statistics.mean(values):.{digits}g} ± {statistics.stdev(values):.2g}"


def evaluate_test_split(
    checkpoint: Path, data_root: str | None, folder: Path, overrides: list[str], threads: int
) -> Path:
    """``empdg.evaluate`` of ``checkpoint`` on every test turn into ``folder`` (kept when already there),
    with no MLflow run; the predictions file. ``data_root`` None: the checkpoint's own data (``--smoke``)."""
    if not (folder / "metrics.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            python(), "-m", "empdg.evaluate", f"ckpt_path={checkpoint.resolve()}",
            *(real_data(Path(data_root).resolve()) if data_root else []),
            "evaluate.subset=all", f"paths.output_dir={folder.resolve()}",
            f"hydra.run.dir={(folder / 'hydra').resolve()}", "logger=none", *overrides,
        ]  # fmt: skip
        run(command, folder.with_suffix(".log"), threads)
    return folder / "predictions.jsonl"


def perplexity_key(metrics: dict) -> str:
    """``ppl`` (per word), or ``subword_ppl`` for a model with a pretrained tokenizer, which has no word perplexity."""
    return "subword_ppl" if "ppl" not in metrics and "subword_ppl" in metrics else "ppl"


def point_table(out: Path, names: list[str], columns: tuple, first: str, label=lambda name: name) -> str:
    """A Markdown table, a row per evaluation folder ``out/<name>`` (its ``metrics.json``).

    ``columns`` are (metric key, header, decimals); ``first`` heads the column of ``label(name)``.
    """
    lines = [f"| {first} | " + " | ".join(h for _, h, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in names:
        metrics = json.loads((out / name / "metrics.json").read_text())
        cells = [f"{metrics[key]:,.{digits}f}" if key in metrics else "–" for key, _, digits in columns]
        lines.append(f"| {label(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def study_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every study takes first: DATA_ROOT or --smoke, the seeds, runs at a time, threads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root", nargs="?", help="folder with the official train/valid/test.csv")
    parser.add_argument("--smoke", action="store_true", help="the built-in corpus and tiny budgets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (CPU threads are split among them)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    return parser


def parse_study_args(parser: argparse.ArgumentParser, out: Path, unit: str) -> argparse.Namespace:
    """Add the arguments every study takes last (where results go, which runs) and parse the command line.

    Unknown arguments are Hydra overrides for every training run; ``args.threads`` is set.
    """
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--tables-only", action="store_true", help="write the tables from the runs finished so far")
    parser.add_argument("--only", nargs="+", default=None, metavar=f"{unit}:SEED", help="run just these, in order")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every training run")
    args, unknown = parser.parse_known_args()
    args.overrides += unknown
    if not args.smoke and not args.data_root:
        parser.error("give DATA_ROOT (a folder with train/valid/test.csv) or --smoke")
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    return args
