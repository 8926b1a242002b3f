"""The inference bundle: a checkpoint loads as generator + vocabulary (+ critics) without the training machinery,
from the same weights under the same keys training saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from empdg.evaluation.runner import evaluate_model, load_split, select_examples
from empdg.models.decoding import DecodingConfig
from empdg.models.inference import inference_device
from empdg.serving.chat_session import ChatSession, ChatSettings
from empdg.training import adversarial, module, phases, resume_state, validation
from empdg.training.checkpoint import load_checkpoint, load_checkpoint_file

CHAT = ChatSettings(
    max_context_len=40, max_emotion_words=8, normalization="moel", rerank=2,
    weights={"likelihood": 1.0, "semantic": 1.0, "emotion": 1.0}, emotion_decay=0.7, fallback="...", seed=0,
)  # fmt: skip


def test_loading_for_inference_builds_no_training_machinery(tiny_checkpoint: Path, monkeypatch) -> None:
    """No training module, optimizer, adversarial game, phase table, resume state or validation metrics is built
    to chat (critics scoring the candidates) or to evaluate."""

    def refuse(name: str):
        def build(*args, **kwargs):
            raise AssertionError(f"{name} was built for inference")

        return build

    for owner, name in [
        (module.EmpDGModule, "EmpDGModule"),
        (adversarial.AdversarialGame, "AdversarialGame"),
        (phases.PhaseSchedule, "PhaseSchedule"),
        (resume_state.ExactResume, "ExactResume"),
        (validation.ValidationMetrics, "ValidationMetrics"),
        (validation.CriticReportCollector, "CriticReportCollector"),
        (torch.optim.Adam, "an optimizer"),
    ]:
        monkeypatch.setattr(owner, "__init__", refuse(name))
    loaded = load_checkpoint(tiny_checkpoint)
    assert set(loaded.bundle.critics) == {"semantic", "emotion"}  # the tiny run's critics
    turn = ChatSession(loaded.bundle, DecodingConfig(strategy="sample", max_len=4), CHAT).respond("i lost my job")
    assert turn.reply and not turn.notes, turn.notes
    assert all({"likelihood", "semantic", "emotion"} == set(c.scores) for c in turn.candidates)

    evaluation = load_checkpoint(tiny_checkpoint, with_critics=False)
    assert evaluation.bundle.critics is None
    raw, encoded = load_split(evaluation.run_config["data"], evaluation.bundle.vocab, "test")
    result = evaluate_model(evaluation.bundle, select_examples(raw, encoded, "all")[:3], DecodingConfig(max_len=4), 2)
    assert result.metrics["n_examples"] == 3 and result.metrics["ppl"] > 1


def test_the_bundle_holds_the_weights_training_saved_under_their_keys(tiny_checkpoint: Path) -> None:
    """Training's module keeps its keys (generator.*, critics.*) with the bundle inside it; loading for inference
    reads every one of them back, tensor for tensor."""
    saved = load_checkpoint_file(tiny_checkpoint)["state_dict"]
    loaded = load_checkpoint(tiny_checkpoint)
    read = {p + k: v for p, part in loaded.bundle.parts().items() for k, v in part.state_dict().items()}
    assert read.keys() == saved.keys()
    assert all(torch.equal(read[k], saved[k]) for k in saved)

    trained = module.EmpDGModule(**loaded.hyper_parameters)
    assert trained.state_dict().keys() == saved.keys()
    assert trained.bundle.generator is trained.generator and trained.bundle.critics is trained.game.panel


def test_weights_that_do_not_fit_are_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint_file(tiny_checkpoint)
    name = next(k for k in checkpoint["state_dict"] if k.startswith("critics."))
    checkpoint["state_dict"][name] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    with pytest.raises(ValueError, match=r"edited.ckpt: its weights do not fit .*\(critics\.\*: .*size mismatch"):
        load_checkpoint(tmp_path / "edited.ckpt")
    assert load_checkpoint(tmp_path / "edited.ckpt", with_critics=False).bundle.critics is None  # never read


def test_the_critics_word_weights_follow_the_generator_to_its_device(tiny_checkpoint: Path) -> None:
    """Training keeps them as buffers that move with the module; a loaded bundle moved to a GPU must too."""
    panel = load_checkpoint(tiny_checkpoint).bundle.critics
    assert panel.emotion_vocab.device.type == "cpu"
    panel.generator.to("meta")  # any other device: no GPU needed to see that they follow
    assert panel.emotion_vocab.device.type == "meta"
    assert panel.match_vocab.device.type == "meta"  # the tiny run has word-match critics


def test_a_bundle_moves_every_weighted_part_to_a_device(tiny_checkpoint: Path) -> None:
    """What serving does on a GPU machine (``bundle.to("cuda")``): no weight of generator or critics stays behind."""
    bundle = load_checkpoint(tiny_checkpoint).bundle
    assert bundle.to("meta") is bundle
    weights = [w for part in bundle.parts().values() for w in [*part.parameters(), *part.buffers()]]
    assert len(bundle.parts()) == 2 and weights  # the tiny run has critics
    assert {w.device.type for w in weights} == {"meta"}
    assert bundle.critics.emotion_vocab.device.type == "meta"


def test_auto_is_the_gpu_when_torch_sees_one_else_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference_device("auto") == torch.device("cpu") == inference_device(None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert inference_device("auto") == torch.device("cuda")
    assert inference_device("CUDA:1") == torch.device("cuda", 1) and inference_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    ("choice", "count", "message"),
    [
        ("cuda", 0, "evaluate.device=cuda but torch sees 0 CUDA device(s): use evaluate.device=auto or"),
        ("cuda:2", 2, "evaluate.device=cuda:2 but torch sees 2 CUDA device(s)"),
        ("gpu", 1, "evaluate.device=gpu is not a device: use auto, cpu, cuda or cuda:N"),
        ("meta", 1, "evaluate.device=meta: use auto, cpu, cuda or cuda:N"),
    ],
)
def test_a_device_the_machine_lacks_is_named_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, choice: str, count: int, message: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        inference_device(choice)
