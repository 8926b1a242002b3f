"""Pretrained Hugging Face generators vs the word-level EmpDG: parameters, MLE step, greedy decoding, memory.

    python -m empdg.benchmarks.pretrained [--threads 1] [--batch-size 16] [--rounds 10] [--data-root DIR] [...]

Three generators train and decode the SAME examples (same example ids, same order; each batch encoded
with the model's own vocabulary): a tiny ``model=hf_seq2seq`` (BART) and a tiny ``model=hf_causal``
(GPT-2), each a random folder made by :func:`make_tiny_pretrained` (2 layers, hidden 64, 4 heads, ffn 128,
BPE vocabulary 1000: the ``python -m empdg.make_tiny_pretrained`` defaults), and the word-level EmpDG at a
similar size (``model=empdg`` with 64-d embeddings and states, 2 layers, 4 heads, attention depth 64,
filter 128; its word vocabulary comes from the training split). The table prints every model's trainable
parameters so the reader sees how similar the sizes are. Weights are random: the numbers are costs, not
quality.

- MLE step: teacher-forced forward pass, the sequence NLL (plus the emotion classifier's cross-entropy,
  as in training: ``adversarial=none``), backward and an Adam step.
- Greedy decoding: one batch, exactly ``--new-tokens`` tokens (min = max length), with the key/value cache.
- Memory: each model lives in its own process (spawned, so peaks never mix); the peak resident set growth
  is ``ru_maxrss`` after minus before the warm-up training steps (one step on every batch: gradients, Adam
  state, activations), and on CUDA ``torch.cuda.max_memory_allocated`` over the same steps (weights
  included).
- Timing: after that warm-up, rounds interleave the models (A, B, C, A, B, C, ...: one process works at a
  time) and the table gives each model's median and its ratio to EmpDG, from one run, so a load that comes
  and goes on a shared machine touches every model alike.

``--suite bert2bert`` compares real sizes instead: the BERT2BERT encoder-decoder warm-started from the
packaged all-MiniLM-L6-v2 (``python -m empdg.make_bert2bert``, built once before the workers start; its
build time is printed) as ``model=hf_seq2seq`` against EmpDG at the paper's sizes (``model=empdg`` as
configured: 300-d, 1 layer) and, as a third model, the CPU-budget BERT2BERT (``BUDGET``: a decoder of 2
of MiniLM's 6 layers, ``--decoder-layers 2``, ``model.freeze_encoder=true`` and ``model.embeddings.freeze=true``).

Data: the built-in demonstration corpus (``data=builtin``); ``--data-root DIR`` reads the official
EmpatheticDialogues CSVs in DIR instead. The output ends with one JSON line of the same numbers.

On a CUDA machine the models and batches go to the GPU (``--device`` overrides); so far this command has
only been run on CPU, never on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REFERENCE = "empdg"
SUITES = ("tiny", "bert2bert")
#: the CPU-budget BERT2BERT of ``--suite bert2bert``: make_bert2bert's arguments and the training overrides
BUDGET = {"decoder_layers": 2, "overrides": ["model.freeze_encoder=true", "model.embeddings.freeze=true"]}
#: imported once by the fork server, before it forks the workers
PRELOAD = ["torch", "transformers", "empdg.training.run", "empdg.data.vocab", "empdg.models.hf_seq2seq",
           "empdg.models.hf_causal"]  # fmt: skip


def empdg_size(hidden: int, layers: int, heads: int, ffn: int) -> list[str]:
    """``model=empdg`` overrides sizing the word-level EmpDG like a tiny pretrained folder of these sizes."""
    return [f"model.emb_dim={hidden}", f"model.hidden_dim={hidden}", f"model.attn_dim={hidden}",
            f"model.ff_dim={ffn}", f"model.num_layers={layers}", f"model.num_heads={heads}"]  # fmt: skip


@dataclass
class ModelSpec:
    """What one worker process builds and runs."""

    name: str  # the model group: empdg, hf_seq2seq, hf_causal
    overrides: list[str]  # Hydra overrides of the ``train`` config (data, runtime, model)
    family: str | None = None  # seq2seq / causal: a pretrained generator
    pretrained: str | None = None  # its folder; made with make_tiny_pretrained when ``tiny`` is set
    tiny: dict[str, int] = field(default_factory=dict)
    threads: int = 1
    batch_size: int = 16
    batches: int = 4
    steps: int = 5
    new_tokens: int = 30
    device: str = "auto"
    label: str = ""  # the table's name for it (default: ``name``), when one model group appears twice


def peak_rss_growth_mib(before_kib: int) -> float:
    """Growth of this process's peak resident set since ``before_kib`` (Linux reports ru_maxrss in KiB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024


class _Runner:
    """One model, its optimizer and its batches, inside a worker process."""

    def __init__(self, spec: ModelSpec) -> None:
        import torch
        from omegaconf import OmegaConf

        from empdg.config import compose
        from empdg.config.runtime import apply_runtime
        from empdg.data.datamodule import DialogueDataModule
        from empdg.data.dataset import batch_to_device, collate
        from empdg.data.vocab import SubwordVocab
        from empdg.models.decoding import DecodingConfig
        from empdg.training.run import build_module

        self.spec = spec
        pretrained = spec.pretrained
        if spec.family is not None:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # stderr noise around the table
        if spec.family is not None and spec.tiny:
            from empdg.models.tiny_pretrained import make_tiny_pretrained

            with contextlib.redirect_stdout(io.StringIO()):  # its "wrote ..." line would break the table
                make_tiny_pretrained(Path(pretrained), spec.family, force=True, **spec.tiny)
        overrides = [*spec.overrides, f"model={spec.name}"]
        overrides += [f"model.pretrained={pretrained}"] if spec.family else []
        cfg = compose("train", overrides)
        apply_runtime(cfg)  # runtime.num_threads
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
        vocab = SubwordVocab.from_pretrained(pretrained, str(cfg.data.normalization)) if spec.family else None
        datamodule = DialogueDataModule(data_cfg, seed=0, vocab=vocab)
        datamodule.setup("fit")
        items = datamodule.datasets["train"].items
        wanted = spec.batch_size * spec.batches
        if len(items) < wanted:
            raise ValueError(
                f"the training split has {len(items)} examples, fewer than --batches {spec.batches} x "
                f"--batch-size {spec.batch_size}: lower one of them"
            )
        items = items[:wanted]
        self.example_ids = [item.example_id for item in items]
        self.vocab_size = len(datamodule.vocab)
        if spec.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(spec.device)
        self.batches = [
            batch_to_device(collate(items[i : i + spec.batch_size]), self.device)
            for i in range(0, wanted, spec.batch_size)
        ]
        torch.manual_seed(0)
        self.module = build_module(cfg, datamodule).to(self.device)
        self.parameters = sum(p.numel() for p in self.module.generator.parameters() if p.requires_grad)
        self.optimizer = torch.optim.Adam(self.module.generator.parameters(), lr=1e-4)
        self.greedy = DecodingConfig(strategy="greedy", max_len=spec.new_tokens, min_len=spec.new_tokens)
        self.position = 0

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def train_step(self) -> float:
        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        self.module.train()
        self._sync()
        start = time.perf_counter()
        self.module.generator_losses(batch)["loss"].backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self._sync()
        return time.perf_counter() - start

    def decode(self, index: int) -> float:
        import torch

        from empdg.models.decoding import decode

        self.module.eval()
        self._sync()
        start = time.perf_counter()
        with torch.no_grad():
            decode(self.module.generator, self.batches[index % len(self.batches)], self.greedy)
        self._sync()
        return time.perf_counter() - start

    def warm_up(self) -> dict[str, Any]:
        """One training step on every batch, measuring the memory it takes, then one decoding."""
        import torch

        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in self.batches:
            self.train_step()
        memory = {
            "peak_rss_growth_mib": peak_rss_growth_mib(before),
            "cuda_peak_mib": torch.cuda.max_memory_allocated(self.device) / 2**20 if cuda else None,
        }
        self.decode(0)
        return memory

    def round(self, index: int) -> dict[str, Any]:
        return {"steps": [self.train_step() for _ in range(self.spec.steps)], "decode": self.decode(index)}


def worker(conn: Connection, spec: ModelSpec) -> None:
    """A worker process: build the model, then answer the parent's commands until ``stop``."""
    try:
        import torch

        torch.set_num_threads(spec.threads)
        runner = _Runner(spec)
        conn.send(("ready", {"parameters": runner.parameters, "example_ids": runner.example_ids,
                             "vocab_size": runner.vocab_size, "device": str(runner.device)}))  # fmt: skip
        while True:
            command, argument = conn.recv()
            if command == "stop":
                break
            result = runner.warm_up() if command == "warm_up" else runner.round(argument)
            conn.send(("ok", result))
    except Exception:  # the parent reports it with the model's name
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self, spec: ModelSpec, context) -> None:
        self.name = spec.label or spec.name
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker, args=(child, spec), name=f"bench-{self.name}", daemon=True)
        self.process.start()
        child.close()

    def receive(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.process.join(5)
            raise RuntimeError(f"the {self.name} worker died (exit code {self.process.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"the {self.name} worker failed:\n{value}")
        return value

    def ask(self, command: str, argument: Any = None) -> Any:
        self.conn.send((command, argument))
        return self.receive()

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(("stop", None))
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m empdg.benchmarks.pretrained", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every worker (default 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per batch (default 16)")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled (default 4)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds after the warm-up (default 10)")
    parser.add_argument("--steps", type=int, default=5, help="MLE steps per model per round (default 5)")
    parser.add_argument("--new-tokens", type=int, default=30, help="greedy tokens decoded per batch (default 30)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with the official ED CSVs (default: the built-in corpus)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--suite", default="tiny", choices=SUITES,
                        help="tiny: tiny random HF models vs a similar-size EmpDG (default); bert2bert: the "
                        "MiniLM BERT2BERT vs EmpDG at the paper's sizes")  # fmt: skip
    tiny = parser.add_argument_group("sizes of the tiny pretrained folders (make_tiny_pretrained) and of EmpDG")
    tiny.add_argument("--vocab-size", type=int, default=1000)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--hidden", type=int, default=64)
    tiny.add_argument("--heads", type=int, default=4)
    tiny.add_argument("--ffn", type=int, default=128)
    return parser


def _check(args: argparse.Namespace) -> None:
    for name in ("threads", "batch_size", "batches", "rounds", "steps", "new_tokens"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.data_root is not None and not args.data_root.is_dir():
        raise SystemExit(f"--data-root {args.data_root} is not a folder; give the folder with the ED CSVs")


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _row(name: str, result: dict[str, Any], reference: dict[str, Any]) -> str:
    cuda = result["cuda_peak_mib"]
    return (
        f"| {name} | {result['parameters'] / 1e3:.0f} k | {result['train_step_ms']:.1f} | "
        f"{result['train_step_ms'] / reference['train_step_ms']:.2f} | {result['decode_ms']:.1f} | "
        f"{result['decode_ms'] / reference['decode_ms']:.2f} | {result['peak_rss_growth_mib']:.1f} | "
        f"{'–' if cuda is None else f'{cuda:.1f}'} |"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    _check(args)
    data = (
        ["data=builtin"]
        if args.data_root is None
        else ["data=empathetic_dialogues", f"data.root={args.data_root.resolve()}", "data.download=false"]
    )
    overrides = [*data, "logger=none", "paths.output_dir=/tmp/empdg-bench", "adversarial=none",
                 f"runtime.num_threads={args.threads}", f"data.batch_size={args.batch_size}"]  # fmt: skip
    tiny = {"vocab_size": args.vocab_size, "layers": args.layers, "hidden": args.hidden, "heads": args.heads,
            "ffn": args.ffn}  # fmt: skip
    common = {"threads": args.threads, "batch_size": args.batch_size, "batches": args.batches, "steps": args.steps,
              "new_tokens": args.new_tokens, "device": args.device}  # fmt: skip
    context = _worker_context()
    with tempfile.TemporaryDirectory(prefix="empdg-bench-pretrained-") as folder:
        if args.suite == "bert2bert":
            bert2bert, args.build_s = _build_bert2bert(Path(folder) / "bert2bert")
            budget, _ = _build_bert2bert(Path(folder) / "bert2bert-budget", decoder_layers=BUDGET["decoder_layers"])
            specs = [
                ModelSpec(REFERENCE, overrides, **common),  # the paper's sizes: conf/model/empdg.yaml as it is
                ModelSpec("hf_seq2seq", overrides, "seq2seq", str(bert2bert), **common),
                ModelSpec(
                    "hf_seq2seq",
                    [*overrides, *BUDGET["overrides"]],
                    "seq2seq",
                    str(budget),
                    **common,
                    label="hf_seq2seq (CPU budget)",
                ),
            ]
        else:
            specs = [
                ModelSpec(
                    REFERENCE, [*overrides, *empdg_size(args.hidden, args.layers, args.heads, args.ffn)], **common
                ),
                ModelSpec("hf_seq2seq", overrides, "seq2seq", str(Path(folder) / "seq2seq"), tiny, **common),
                ModelSpec("hf_causal", overrides, "causal", str(Path(folder) / "causal"), tiny, **common),
            ]
        workers = [_Worker(spec, context) for spec in specs]  # they build in parallel
        try:
            results = _run(workers, args)
        finally:
            for handle in workers:
                handle.stop()
    return _report(results, args)


def _build_bert2bert(folder: Path, decoder_layers: int | None = None) -> tuple[Path, float]:
    """The MiniLM BERT2BERT folder and the seconds its build took (digest checks included)."""
    from empdg.models.bert2bert import make_bert2bert

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its "wrote ..." line would break the table
        make_bert2bert(folder, decoder_layers=decoder_layers)
    return folder, time.perf_counter() - started


def _worker_context():
    """Fresh processes, so peaks never mix: forked from a server that imported torch once (quick), else spawned.

    The fork server has run no torch work (no OpenMP pool to inherit) and its own peak is about what every
    worker starts with, so a worker's peak growth over its training steps is its own.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _run(workers: list[_Worker], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    ready = {handle.name: handle.receive() for handle in workers}
    ids = ready[REFERENCE]["example_ids"]
    for name, info in ready.items():
        if info["example_ids"] != ids:  # the comparison is only fair on the same examples
            raise RuntimeError(f"{name} got other training examples than {REFERENCE}: the data splits differ")
    results = {name: {**info, **workers[i].ask("warm_up")} for i, (name, info) in enumerate(ready.items())}
    steps: dict[str, list[float]] = {name: [] for name in ready}
    decodes: dict[str, list[float]] = {name: [] for name in ready}
    for index in range(args.rounds):
        for handle in workers:  # interleaved: A, B, C, A, B, C, ...
            timed = handle.ask("round", index)
            steps[handle.name] += timed["steps"]
            decodes[handle.name].append(timed["decode"])
    for name, result in results.items():
        result.pop("example_ids")
        result["train_step_ms"] = _median_ms(steps[name])
        result["decode_ms"] = _median_ms(decodes[name])
    return results


def _report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    reference = results[REFERENCE]
    devices = sorted({result["device"] for result in results.values()})
    data = "built-in corpus" if args.data_root is None else f"ED CSVs in {args.data_root}"
    build_s = getattr(args, "build_s", None)
    print(
        f"suite={args.suite} threads={args.threads} batch={args.batch_size} batches={args.batches} "
        f"rounds={args.rounds} steps/round={args.steps} new_tokens={args.new_tokens} device={','.join(devices)} "
        f"data={data}; vocab: "
        + ", ".join(f"{name} {result['vocab_size']}" for name, result in results.items())
        + ("" if build_s is None else f"; BERT2BERT build {build_s:.1f} s")
    )
    print(f"| model | parameters | train step (ms) | x {REFERENCE} | greedy decode (ms/batch) | x {REFERENCE} "
          "| peak RSS growth (MiB) | CUDA peak (MiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        print(_row(name, result, reference))
    summary = {
        "benchmark": "pretrained",
        "suite": args.suite,
        "build_s": build_s,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "new_tokens": args.new_tokens,
        "data": data,
        "models": [
            {
                "model": name,
                **result,
                "train_step_ratio": result["train_step_ms"] / reference["train_step_ms"],
                "decode_ratio": result["decode_ms"] / reference["decode_ms"],
            }
            for name, result in results.items()
        ],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
