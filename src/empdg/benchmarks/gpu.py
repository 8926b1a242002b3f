"""GPU figures: every model's update and decoding costs at several batch sizes, peak memory, FLOP utilisation.

    python -m empdg.benchmarks.gpu [--device cuda] [--batch-sizes 16,64,256] [--models empdg,moel,...]
        [--precision bf16-mixed] [--repeats 5] [--warmup 2] [--json PATH] [hydra overrides ...]
    python -m empdg.benchmarks.gpu --lengths [--batch-sizes ...] [hydra overrides ...]   # no model, no device

For each model (``conf/model`` configs at their configured, i.e. paper, sizes; the pretrained generators are
tiny random folders from :func:`~empdg.models.tiny_pretrained.make_tiny_pretrained`, and the MiniLM BERT2BERT
when its packaged weights are installed) and each batch size, on the same batches:

- ``mle``: an MLE update (teacher forcing, backward, Adam step);
- ``critic``: a critic update of both critics with the WGAN gradient penalty (its double backward);
- ``cycle_<estimator>``: one adversarial cycle, ``n_critic`` critic + ``g_steps`` generator updates, for the
  gumbel, reinforce and soft estimators;
- ``greedy``: cached greedy decoding of one batch, at most 30 tokens;
- ``peak_mib``: ``torch.cuda.max_memory_allocated`` over that model's and batch size's measurements;
- ``mfu``: the MLE update's FLOPs (counted once by ``torch.utils.flop_counter.FlopCounterMode``) per second,
  over the bf16 dense peak (``--peak-tflops``, 790 for an H200); on CPU the figure is printed but meaningless;
- ``mle_busy``, ``greedy_busy``: the fraction of the update's (the decoding's) median wall time in which a GPU
  kernel ran (the union of the kernels' intervals in one call under ``torch.profiler``, over the unprofiled
  median); ``mle_kernels``, ``greedy_kernels``: how many kernels that call launched. Far below 1, the GPU
  waits for the host to launch kernels: a launch-bound step, which larger batches, CUDA graphs or
  ``torch.compile`` help and faster kernels do not. None on CPU. The first model's smallest batch also gets
  ``profile``: its costliest operators by the device time of the kernels they launched (on CPU: host time),
  which is where to look before changing anything.

Times are medians of ``--repeats`` after ``--warmup`` untimed runs, with ``torch.cuda.synchronize`` around each
(the GPU runs asynchronously). ``--precision bf16-mixed`` runs the forward passes under ``torch.autocast`` as
Lightning's bf16-mixed does (the gradient penalty itself is float32 by design). Float32 matmuls keep torch's
default precision (no TF32), as training leaves them.

The projection: the paper's schedule (``training.phases``: generator updates, critic updates, adversarial
cycles, at the configured batch size ``data.batch_size``) costs phases x the measured update times; at a
larger batch size B the same number of examples takes ``batch_size / B`` times the updates. An epoch over
``--train-examples`` (40,000: about the full ED training split's listener turns) is that many examples / B
MLE updates. Validation, data loading and checkpointing are not included, so the real run is longer.

Batches: four of the batch size, drawn from the corpus's listener turns that have a next utterance (the critics
read it) by the training sampler (:class:`~empdg.data.sampler.BucketBatchSampler`, length-bucketed as
``data.bucketing`` and ``data.bucket_by`` say, seed 0), so they are padded as training pads them. Each row says
how wide they were (``widths``: mean padded ids of the context, the reply and the next utterance) beside the mean
over one training epoch at that batch size (``train_widths``), the widths the projections assume. ``--lengths``
prints only the training epoch's widths, for any data (say the ED release: ``data=empathetic_dialogues
data.root=...``) and bucketing key, with no model built.

Data: the built-in corpus (``data=builtin``) unless overrides choose another. Its vocabulary is a few hundred
words, which makes the output projection (and the copy distribution over it) far cheaper than on ED;
``--vocab-size N`` appends unused filler words to a word vocabulary up to N, so embeddings and projections
have a corpus-sized vocabulary while the batches stay the built-in ones (the pretrained generators keep their
tokenizer's). ``scripts/gpu_check.py`` passes 20,000, a round ED-sized figure (not a count of ED's words).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ESTIMATORS = ("gumbel", "reinforce", "soft")
DEFAULT_MODELS = ("empdg", "moel", "mime", "hf_seq2seq", "hf_causal")


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued kernels (the GPU runs asynchronously; a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median seconds of ``fn`` on ``device`` (synchronised: CUDA kernels finish before the clock stops)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (forward and backward matmuls, attention, convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def kernel_busy(intervals: list[tuple[float, float]], wall: float) -> float:
    """Fraction of ``wall`` covered by the union of ``intervals`` (start, end), in the same unit.

    A union, not a sum: kernels on several streams overlap, and overlapping time is busy once.
    """
    covered, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        covered += end - max(start, reach)
        reach = end
    return covered / wall


def profile_call(fn: Callable[[], object], device: torch.device, top: int = 8) -> tuple[list, list[dict]]:
    """One call of ``fn`` under ``torch.profiler``: its GPU kernels' (start, end) in microseconds, and its
    ``top`` costliest operators by the device time of the kernels they launched themselves (by their own host
    time on CPU, where there are no kernels)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]
    sync(device)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    kernels = [(e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == DeviceType.CUDA]

    own = "self_device_time_total" if on_gpu else "self_cpu_time_total"  # microseconds
    # the operators (host-side events), charged with the kernels they launched; the kernels' own rows would
    # list the same time twice under a kernel's name
    averages = [e for e in prof.key_averages() if e.device_type == DeviceType.CPU and getattr(e, own) > 0]
    averages.sort(key=lambda e: getattr(e, own), reverse=True)
    ops = [{"name": e.key, "calls": int(e.count), "own_ms": getattr(e, own) / 1000} for e in averages[:top]]
    return kernels, ops


def add_profile(row: dict[str, Any], what: str, fn: Callable[[], object], device: torch.device, keep_ops: bool) -> None:
    """``row[what + "_busy"]`` and ``row[what + "_kernels"]`` (None on CPU), and with ``keep_ops`` the
    costliest operators in ``row["profile"][what]``. A profiler that cannot start (CUPTI refused, say) costs
    these figures only: its error goes into ``row["profile_error"]`` and the timings stand."""
    try:
        kernels, ops = profile_call(fn, device)
    except Exception as error:  # noqa: BLE001 - any profiler failure; the row's timings are already taken
        row[f"{what}_busy"] = row[f"{what}_kernels"] = None
        row["profile_error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        return
    on_gpu = device.type == "cuda"
    row[f"{what}_busy"] = kernel_busy(kernels, row[f"{what}_ms"] * 1000) if on_gpu else None
    row[f"{what}_kernels"] = len(kernels) if on_gpu else None
    if keep_ops:
        row.setdefault("profile", {})[what] = ops


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _model_overrides(name: str, folders: dict[str, Path]) -> list[str]:
    if name == "bert2bert":
        return ["model=hf_seq2seq", f"model.pretrained={folders['bert2bert']}", "optim=finetune"]
    if name.startswith("hf_"):
        family = "seq2seq" if name == "hf_seq2seq" else "causal"
        return [f"model={name}", f"model.pretrained={folders[family]}", "optim=finetune"]
    return [f"model={name}"]


def pretrained_folders(names: list[str], root: Path) -> dict[str, Path]:
    """The pretrained generators' folders: tiny random ones, and the MiniLM BERT2BERT when asked for."""
    from empdg.models.tiny_pretrained import make_tiny_pretrained

    folders: dict[str, Path] = {}
    for family in ("seq2seq", "causal"):
        if f"hf_{family}" in names:
            folders[family] = make_tiny_pretrained(root / f"tiny-{family}", family)
    if "bert2bert" in names:
        from empdg.models.bert2bert import make_bert2bert

        folders["bert2bert"] = make_bert2bert(root / "bert2bert")
    return folders


def make_updates(m, batches: list[dict], autocast) -> tuple[Callable[[], None], ...]:
    """The MLE, critic (with penalty) and adversarial generator updates of module ``m``, each on the next batch."""
    g_opt = torch.optim.Adam(m.generator.parameters(), lr=1e-4)
    d_opt = torch.optim.Adam(m.critics.parameters(), lr=1e-4) if m.critics else None
    turn = [0]

    def batch() -> dict:
        turn[0] += 1
        return batches[turn[0] % len(batches)]

    def step(loss_fn: Callable[[dict], torch.Tensor], opt) -> None:
        with autocast:
            loss = loss_fn(batch())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    mle = lambda: step(lambda b: m.generator_losses(b)["loss"], g_opt)
    critic = lambda: step(lambda b: m.critic_losses(b)[0], d_opt)
    gen = lambda: step(lambda b: m.adversarial_generator_loss(b)[0], g_opt)
    return mle, critic, gen


def pad_vocab(vocab, size: int | None):
    """``vocab`` with unused filler words appended up to ``size`` words (ids of its own words unchanged).

    A pretrained tokenizer's vocabulary, or ``size`` None or not above the vocabulary's, is returned as it is.
    """
    from empdg.data.vocab import Vocab

    if size is None or type(vocab) is not Vocab or size <= len(vocab):
        return vocab
    fillers = [f"<filler{i}>" for i in range(size - len(vocab))]
    return Vocab([*vocab.tokens, *fillers], vocab.counts)


WIDTH_FIELDS = {"context": "context_ids", "reply": "target_ids", "next": "feedback_ids"}


def padded_widths(items: list, batches: list[list[int]]) -> dict[str, float]:
    """Mean over ``batches`` (lists of indices into ``items``) of each field's longest member: what collate pads to."""
    return {
        name: statistics.fmean(max(len(getattr(items[i], field)) for i in batch) for batch in batches)
        for name, field in WIDTH_FIELDS.items()
    }


def sampler_batches(items: list, size: int, data_cfg: dict, drop_last: bool = False) -> list[list[int]]:
    """Batches of ``size`` (indices into ``items``) as the training sampler draws them in epoch 0 of seed 0."""
    from empdg.data.dataset import bucket_length
    from empdg.data.sampler import BucketBatchSampler

    sampler = BucketBatchSampler(
        [bucket_length(it, data_cfg["bucket_by"]) for it in items],
        size,
        bucketing=bool(data_cfg["bucketing"]),
        bucket_size_multiplier=int(data_cfg["bucket_size_multiplier"]),
        drop_last=drop_last,
        seed=0,
    )
    return list(sampler)


def measurement_batches(items: list, size: int, data_cfg: dict, count: int = 4) -> tuple[list, list[list[int]]]:
    """The first ``count`` full training batches of ``items``, and the items they index.

    Too few items (a tiny corpus, a large batch) are cycled until ``count`` full batches exist.
    """
    if len(items) < size * count:
        items = [items[i % len(items)] for i in range(size * count)]
    return items, sampler_batches(items, size, data_cfg, drop_last=True)[:count]


def train_widths(datamodule, size: int) -> dict[str, float]:
    """Mean padded widths over one training epoch of all training turns at batch ``size``."""
    items = datamodule.datasets["train"].items
    return padded_widths(items, sampler_batches(items, size, datamodule.cfg))


def fit_datamodule(cfg, vocab_size: int | None = None):
    """The training datamodule of ``cfg`` (a pretrained generator's tokenizer as its vocabulary), set up for fit;
    ``vocab_size`` pads a word vocabulary (:func:`pad_vocab`) before any module sizes its layers."""
    from omegaconf import OmegaConf

    from empdg.data.datamodule import DialogueDataModule
    from empdg.training.run import pretrained_vocab

    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=0, vocab=pretrained_vocab(cfg))
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.vocab = pad_vocab(datamodule.vocab, vocab_size)
    return datamodule


def measure_model(
    name: str,
    base: list[str],
    folders: dict[str, Path],
    args: argparse.Namespace,
    device: torch.device,
    profile_first: bool = False,
) -> list[dict[str, Any]]:
    """One row per batch size for model ``name``; ``profile_first``: the smallest batch's row gets a profile."""
    from empdg.config import compose
    from empdg.data.dataset import collate
    from empdg.models.decoding import DecodingConfig, decode
    from empdg.training.run import build_module

    overrides = [*base, *_model_overrides(name, folders)]
    cfg = compose("train", overrides)
    datamodule = fit_datamodule(cfg, args.vocab_size)
    items = [it for it in datamodule.datasets["train"].items if it.has_feedback]
    torch.manual_seed(0)
    modules = {
        e: build_module(compose("train", [*overrides, f"adversarial.estimator={e}"]), datamodule) for e in ESTIMATORS
    }
    for module in modules.values():
        module.to(device).train()
    module = modules["gumbel"]
    params = sum(p.numel() for p in module.generator.parameters() if p.requires_grad)
    n_critic, g_steps = int(cfg.adversarial.n_critic), int(cfg.adversarial.g_steps)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.precision == "bf16-mixed"
        else contextlib.nullcontext()
    )
    greedy = DecodingConfig(strategy="greedy", max_len=30)
    rows = []
    for size in args.batch_sizes:
        # the same batches for every model with the same vocabulary, padded as training pads them
        pool, drawn = measurement_batches(items, size, datamodule.cfg)
        batches = [_to(collate([pool[i] for i in batch]), device) for batch in drawn]
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        row: dict[str, Any] = {"model": name, "batch": size, "params_m": params / 1e6, "vocab": len(datamodule.vocab)}
        row["widths"] = padded_widths(pool, drawn)
        row["train_widths"] = train_widths(datamodule, size)

        mle, critic, gen = make_updates(module, batches, autocast)
        row["mle_ms"] = timed(mle, device, args.repeats, args.warmup) * 1000
        row["examples_per_s"] = size / (row["mle_ms"] / 1000)
        flops = count_flops(mle)
        row["mle_gflop"] = flops / 1e9
        row["mfu"] = flops / (row["mle_ms"] / 1000) / (args.peak_tflops * 1e12)
        keep_ops = profile_first and size == min(args.batch_sizes)
        add_profile(row, "mle", mle, device, keep_ops)
        if module.critics:
            row["critic_ms"] = timed(critic, device, args.repeats, args.warmup) * 1000
            for estimator, m in modules.items():
                _, _, gen_e = make_updates(m, batches, autocast)
                g_ms = timed(gen_e, device, args.repeats, args.warmup) * 1000
                row[f"adv_gen_{estimator}_ms"] = g_ms
                row[f"cycle_{estimator}_ms"] = n_critic * row["critic_ms"] + g_steps * g_ms
        module.eval()
        first = batches[0]
        with torch.no_grad(), autocast:
            greedy_call = lambda b=first: decode(module.generator, b, greedy)  # noqa: E731
            row["greedy_ms"] = timed(greedy_call, device, args.repeats, 1) * 1000
            add_profile(row, "greedy", greedy_call, device, keep_ops)
        module.train()
        row["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        row.update(project(row, cfg, args.train_examples))
        rows.append(row)
        print(json.dumps(row), flush=True)
    del modules
    return rows


def project(row: dict[str, Any], cfg, train_examples: int) -> dict[str, float]:
    """Hours of the configured schedule (scaled to this batch size by examples) and of one MLE epoch."""
    phases = cfg.training.phases
    scale = int(cfg.data.batch_size) / row["batch"]  # the same examples in fewer, larger updates
    seconds = float(phases.generator_pretrain) * scale * row["mle_ms"] / 1000
    if "critic_ms" in row:
        cycle = row["cycle_gumbel_ms"] / 1000  # the default estimator
        seconds += float(phases.critic_pretrain) * scale * row["critic_ms"] / 1000
        seconds += float(phases.adversarial) * scale * cycle
    epoch = math.ceil(train_examples / row["batch"]) * row["mle_ms"] / 1000
    return {"schedule_h": seconds / 3600, "mle_epoch_min": epoch / 60}


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    def busy(row: dict[str, Any], what: str) -> str:  # "42% (1,310 kernels)"
        kernels = row.get(f"{what}_kernels")
        return fmt(row.get(f"{what}_busy"), ".0%") + ("" if kernels is None else f" ({kernels:,} kernels)")

    lines = [
        f"device: {meta['device_name']}; precision {meta['precision']}; median of {meta['repeats']} "
        f"after {meta['warmup']} warm-up runs; MFU against {meta['peak_tflops']} TFLOP/s",
        "",
        "| model | batch | params (M) | MLE (ms) | examples/s | MFU | critic+GP (ms) | cycle gumbel / reinforce / "
        "soft (ms) | greedy batch (ms) | GPU busy MLE / greedy | peak (MiB) | schedule (h) | MLE epoch 40k (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cycles = " / ".join(fmt(r.get(f"cycle_{e}_ms"), ".1f") for e in ESTIMATORS)
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['params_m']:.2f} | {r['mle_ms']:.1f} | {r['examples_per_s']:.0f} | "
            f"{r['mfu']:.2%} | {fmt(r.get('critic_ms'), '.1f')} | {cycles} | {r['greedy_ms']:.1f} | "
            f"{busy(r, 'mle')} / {busy(r, 'greedy')} | "
            f"{fmt(r['peak_mib'], '.0f')} | {r['schedule_h']:.2f} | {r['mle_epoch_min']:.1f} |"
        )
    failed = [
        f"{r['model']}, batch {r['batch']}: no profile ({r['profile_error']})" for r in rows if "profile_error" in r
    ]
    if failed:
        lines += ["", *failed]
    widths = [r for r in rows if "widths" in r]
    if widths:
        head = "Padded ids per batch: the measured batches / one training epoch's, which the projections assume"
        lines += ["", head + ":", ""]
        lines += ["| model | batch | context | reply | next utterance |", "|---|---|---|---|---|"]
        for r in widths:
            cells = " | ".join(f"{r['widths'][k]:.1f} / {r['train_widths'][k]:.1f}" for k in WIDTH_FIELDS)
            lines.append(f"| {r['model']} | {r['batch']} | {cells} |")
    for r in rows:
        for what, ops in (r.get("profile") or {}).items():
            lines += ["", f"{r['model']}, batch {r['batch']}, {what}: costliest operators", ""]
            lines += ["| operator | calls | own device time (ms; host time on CPU) |", "|---|---|---|"]
            lines += [f"| `{op['name'][:70]}` | {op['calls']} | {op['own_ms']:.2f} |" for op in ops]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64, 256])
    parser.add_argument("--models", type=lambda s: s.split(","), default=list(DEFAULT_MODELS))
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="bf16-mixed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="bf16 dense peak (H200: 790)")
    parser.add_argument("--vocab-size", type=int, default=None, help="pad word vocabularies to this size")
    parser.add_argument("--train-examples", type=int, default=40_000, help="listener turns of the full ED train split")
    parser.add_argument("--json", type=Path, default=None, help="write rows and settings here")
    parser.add_argument("--lengths", action="store_true", help="only the training batches' padded widths; no model")
    return parser.parse_known_args(argv)


def lengths(base: list[str], batch_sizes: list[int]) -> list[dict[str, Any]]:
    """One row per batch size: the training epoch's mean padded widths of the data ``base`` composes."""
    from empdg.config import compose

    cfg = compose("train", base)
    datamodule = fit_datamodule(cfg)
    turns = len(datamodule.datasets["train"].items)
    first = {"data": cfg.data.name, "bucket_by": cfg.data.bucket_by, "turns": turns}
    rows = [{**first, "batch": b, **train_widths(datamodule, b)} for b in batch_sizes]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args, overrides = parse_args(argv)
    device = torch.device(args.device)
    base = ["data=builtin", "logger=none", "paths.output_dir=/tmp/empdg-bench", *overrides]
    if args.lengths:
        return lengths(base, args.batch_sizes)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    meta = {"device_name": device_name, "torch": torch.__version__, **{k: str(v) for k, v in vars(args).items()}}
    meta.update(precision=args.precision, repeats=args.repeats, warmup=args.warmup, peak_tflops=args.peak_tflops)
    meta["cuda"] = torch.version.cuda
    print(f"device={device_name} torch={torch.__version__} precision={args.precision} models={args.models}", flush=True)
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}

    def write(complete: bool) -> str:
        """The JSON after every model, so a run stopped by a time limit keeps the models it finished."""
        table = markdown(rows, meta)
        if args.json:
            record = {"meta": meta, "rows": rows, "errors": errors, "markdown": table, "complete": complete}
            partial = args.json.with_name(args.json.name + ".partial")  # replaced whole: never half-written
            partial.write_text(json.dumps(record, indent=2) + "\n")
            partial.replace(args.json)
        return table

    with tempfile.TemporaryDirectory(prefix="empdg-gpu-bench-") as tmp:
        folders = pretrained_folders(args.models, Path(tmp))
        for index, name in enumerate(args.models):
            try:
                rows += measure_model(name, base, folders, args, device, profile_first=index == 0)
            except torch.cuda.OutOfMemoryError as error:  # a figure in itself: report it, go on with the others
                errors[name] = f"out of memory: {error}".splitlines()[0]
                torch.cuda.empty_cache()
            write(complete=False)
    print(write(complete=True))
    for name, error in errors.items():
        print(f"{name}: {error}")
    return rows


if __name__ == "__main__":
    main()
