"""The terminal chat: robustness on odd input (subprocess), settings, degenerate replies, emotion memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from empdg.config import compose
from empdg.data.conversation import EMOTIONS
from empdg.data.vocab import EOS_ID
from empdg.models.decoding import DecodingConfig
from empdg.serving import chat_session
from empdg.serving.chat_session import ChatSession, ChatSettings, EmotionMemory, degenerate_reason
from empdg.training.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


def chat(checkpoint: Path, lines: list[str], cwd: Path, *overrides: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "empdg.chat", f"ckpt_path={checkpoint}", *overrides],
        cwd=cwd, env=ENV, input="\n".join(lines) + "\n", capture_output=True, text=True,
        encoding="utf-8", timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()


def test_chat_survives_odd_input(tiny_checkpoint: Path, tmp_path: Path) -> None:
    long_text = " ".join(["word"] * 2500 + ["grief"] * 2500)  # 5,000 words
    lines = [
        "I lost my job today and I feel awful.",
        "",
        "   ",
        long_text,
        "zxqvbn florbage snorklewhatsit quimbly",
        "Mon café est fermé 😢🎉 — naïve résumé",
        "今日はとても悲しいです。我很难过",
        "/emotions",
        "/reset",
        "/emotions",
        "/nonsense",
        "okay , thanks",
        "/quit",
        "never read",
    ]
    out = chat(tiny_checkpoint, lines, tmp_path)
    replies = [line for line in out if line.startswith("bot> ") and not line.startswith("bot> (")]
    assert len(replies) == 6
    assert sum("[you seem:" in line for line in out) == 6
    emotions = [line for line in out if "your emotions over" in line]
    assert "over 5 turn(s)" in emotions[0] and "nothing yet" in emotions[1]
    assert out[-1] == "bye"
    assert not list(tmp_path.iterdir()), "chatting must not write files"


def test_chat_rerank_verbose(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = chat(
        tiny_checkpoint, ["my dog died", "I miss him so much"], tmp_path, "chat.rerank=3", "chat.verbose=true"
    )
    assert sum(line.strip().startswith("candidate (") for line in out) == 6
    assert sum(line.startswith("bot> ") for line in out) == 2


def chat_config(*overrides: str):
    return compose("chat", ["ckpt_path=unused", *overrides])


def test_settings_come_from_chat_yaml_then_the_run_then_the_data_group() -> None:
    cfg = chat_config("chat.rerank=3", "data.max_emotion_words=7")
    settings = ChatSettings.from_config(cfg.chat, {"max_context_len": 40, "normalization": "full"}, cfg.data)
    assert (settings.max_context_len, settings.normalization) == (40, "full")  # the checkpoint's run
    assert settings.max_emotion_words == 7  # the run does not say: this command's data group
    assert settings.rerank == 3 and settings.fallback == cfg.chat.fallback and settings.emotion_decay == 0.7
    assert settings.weights == {"likelihood": 1.0, "semantic": 1.0, "emotion": 1.0}
    own = ChatSettings.from_config(chat_config("chat.max_context_len=12").chat, {"max_context_len": 40}, cfg.data)
    assert own.max_context_len == 12  # the command line wins over the run
    data = {"max_context_len": 99, "max_emotion_words": 5}
    unknown = ChatSettings.from_config(cfg.chat, None, {**data, "normalization": "moel"})
    assert unknown.max_context_len == 99  # no run config (a checkpoint copied alone): the data group
    with pytest.raises(ValueError, match="chat.normalization"):  # said nowhere: named, not guessed
        ChatSettings.from_config(cfg.chat, None, data)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("chat.rerank=-1", "chat.rerank=-1 must be a whole number >= 0"),
        ("chat.rerank=2.5", "chat.rerank=2.5 must be a whole number >= 0"),
        ("chat.max_context_len=1", "chat.max_context_len=1 must be a whole number >= 2"),
        ("chat.max_emotion_words=0", "chat.max_emotion_words=0 must be a whole number >= 2"),
        ("chat.normalization=nfkc", "chat.normalization='nfkc': choose one of full, moel"),
        ("chat.seed=abc", "chat.seed='abc' must be a whole number"),
        ("chat.seed=true", "chat.seed=True must be a whole number"),
        ("chat.weights.emotion=nan", "chat.weights.emotion=nan must be a number"),
    ],
)
def test_impossible_settings_are_named(override: str, message: str) -> None:
    cfg = chat_config(override)
    with pytest.raises(ValueError, match=re.escape(message)):
        ChatSettings.from_config(cfg.chat, {"max_context_len": 40, "normalization": "full"}, cfg.data)


def test_history_stays_within_context_and_fallback(tiny_checkpoint: Path, monkeypatch) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    cfg = chat_config("chat.rerank=2", "chat.max_context_len=40")
    settings = ChatSettings.from_config(cfg.chat, (loaded.run_config or {}).get("data"), cfg.data)
    session = ChatSession(loaded.bundle, DecodingConfig(strategy="sample", max_len=3, seed=0), settings)
    for _ in range(6):
        turn = session.respond("i am so worried about my exam tomorrow")
        assert sum(map(len, session.history)) <= 39
        assert turn.reply and len(turn.candidates) == 2
    # every candidate empty (EOS at once) -> the editorial fallback, with the reason
    monkeypatch.setattr(
        chat_session, "decode", lambda model, batch, cfg, generator=None: torch.full((2, 1), EOS_ID)
    )
    turn = session.respond("hello there")
    assert turn.reply == cfg.chat.fallback and turn.fallback_reason == "empty"
    session.reset()
    assert session.history == [] and session.memory.turns == 0


@pytest.mark.parametrize(
    ("reply", "user", "previous", "reason"),
    [
        ("", "i failed my exam", None, "empty"),
        (". ! ?", "i failed my exam", None, "empty"),
        ("i am so sorry . i am so sorry .", "i failed", None, "repeats itself"),
        ("no no no", "i failed", None, "repeats itself"),
        ("that is great", "hello", "that is great", "repeats itself"),
        ("i failed my exam .", "i failed my exam today", None, "repeats the user's words"),
        ("Failed EXAM", "i failed my exam", None, "repeats the user's words"),
        ("oh no , what happened ?", "i failed my exam", None, None),
        ("why ?", "why did it happen", None, None),
        ("that is great", "hello", "that is sad", None),
    ],
)
def test_degenerate_detector(reply: str, user: str, previous: str | None, reason: str | None) -> None:
    prev = previous.split() if previous is not None else None
    assert degenerate_reason(reply.split(), user.split(), prev) == reason


def test_emotion_memory_decays() -> None:
    memory = EmotionMemory(["sad", "joyful", "afraid"], decay=0.5)
    assert memory.top() == []
    memory.update([1.0, 0.0, 0.0])
    assert memory.distribution == [1.0, 0.0, 0.0]
    memory.update([0.0, 1.0, 0.0])
    assert memory.distribution == pytest.approx([0.5, 0.5, 0.0])
    memory.update([0.0, 1.0, 0.0])
    assert memory.distribution == pytest.approx([0.25, 0.75, 0.0])
    assert memory.top(1) == [("joyful", pytest.approx(0.75))]
    assert sum(memory.distribution) == pytest.approx(1.0)
    memory.reset()
    assert memory.distribution is None and memory.turns == 0
    with pytest.raises(ValueError):
        EmotionMemory(EMOTIONS, decay=1.0)


def bundle_with_critics(loaded, **critic):
    """``loaded``'s generator with freshly initialised semantic and emotional critics of ``critic`` settings."""
    from empdg.training.checkpoint import inference_bundle

    hparams = dict(loaded.hyper_parameters)
    adversarial = dict(hparams["adversarial"])
    critic = {**dict(adversarial.get("critic", {})), **critic}
    hparams["adversarial"] = {**adversarial, "critics": ["semantic", "emotion"], "critic": critic}
    bundle = inference_bundle(hparams)
    bundle.generator.load_state_dict(loaded.bundle.generator.state_dict())
    return bundle.eval()


def test_rerank_scores_with_word_match_critics(tiny_checkpoint: Path) -> None:
    """A checkpoint with word-match critics: the chat gives them the dialogue's words and rarity weights."""
    loaded = load_checkpoint(tiny_checkpoint)
    bundle = bundle_with_critics(loaded, word_match=True)
    assert bundle.critics.match_vocab is not None and set(bundle.critics) == {"semantic", "emotion"}
    cfg = chat_config("chat.rerank=3")
    settings = ChatSettings.from_config(cfg.chat, (loaded.run_config or {}).get("data"), cfg.data)
    session = ChatSession(bundle, DecodingConfig(strategy="sample", max_len=4, seed=0), settings)
    turn = session.respond("my dog died last week and i miss him")
    assert not turn.notes, turn.notes
    assert all({"semantic", "emotion"} <= set(c.scores) for c in turn.candidates)


def test_the_chat_scores_candidates_through_the_critic_input_training_uses(tiny_checkpoint: Path) -> None:
    """The chat reads a reply as training's critics do (through the CriticPanel): a setting of what the
    critics read (here the emotional critic's ``emotion_floor``) changes the chat's scores too."""
    loaded = load_checkpoint(tiny_checkpoint)
    cfg = chat_config("chat.rerank=3")
    settings = ChatSettings.from_config(cfg.chat, (loaded.run_config or {}).get("data"), cfg.data)
    scores = {}
    for floor in (0.0, 0.5):
        torch.manual_seed(0)  # the same critic weights for both floors
        bundle = bundle_with_critics(loaded, emotion_floor=floor)
        session = ChatSession(bundle, DecodingConfig(strategy="sample", max_len=4, seed=0), settings)
        turn = session.respond("my dog died last week and i miss him")
        assert not turn.notes, turn.notes
        scores[floor] = [(c.text, c.scores["semantic"], c.scores["emotion"]) for c in turn.candidates]
    assert [t for t, _, _ in scores[0.0]] == [t for t, _, _ in scores[0.5]]  # the same candidates
    assert [s for _, s, _ in scores[0.0]] == pytest.approx([s for _, s, _ in scores[0.5]])
    assert [e for _, _, e in scores[0.0]] != pytest.approx([e for _, _, e in scores[0.5]])


def test_the_chat_says_when_the_model_was_trained_on_the_built_in_corpus(tiny_checkpoint: Path) -> None:
    import io

    from empdg.data.builtin import builtin_model_notice
    from empdg.serving.terminal import build_session, chat_loop

    session = build_session(compose("chat", [f"ckpt_path={tiny_checkpoint}"]))  # its run: data=builtin
    out = io.StringIO()
    chat_loop(session, False, io.StringIO("/quit\n"), out)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("note: trained on the built-in demonstration corpus (templated dialogues")
    assert "'I lost my job today' may get 'that is so great to hear'" in lines[1]
    # a model of real data, or of a run whose config is not beside the checkpoint: nothing to say
    assert builtin_model_notice({"source": "ed", "name": "empathetic_dialogues"}) is None
    assert builtin_model_notice(None) is None
