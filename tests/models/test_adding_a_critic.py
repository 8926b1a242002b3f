"""A new critic is one class: a critic defined only in this file trains, is reported and scores the chat's replies.

The length critic reads no word of a reply, only where it has words (every position's vector scaled by 0):
what it can judge is the reply's length given the dialogue. It registers when this module is imported and
reaches the run only through ``adversarial.critics`` and its :class:`~empdg.models.critic_rules.CriticRule`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import logged_keys, short_adversarial_run
from torch import Tensor

from empdg.config import compose
from empdg.config.schema import AdversarialConfig, typed
from empdg.models.critic_inputs import ResponseView
from empdg.models.critic_rules import CriticRule, critic_names, register_critic
from empdg.models.decoding import DecodingConfig
from empdg.serving.chat_session import ChatSession, ChatSettings
from empdg.training.checkpoint import load_checkpoint
from empdg.training.critic_report import render_critic_report
from empdg.training.run import run_training


@register_critic
class LengthCritic(CriticRule):
    """D_len: where the reply has words, not which (conditioned on x̃0, the context's words and the feedback)."""

    name, short = "length", "len"

    def position_weight(self, view: ResponseView, emotion_floor: float) -> Tensor | None:
        return torch.zeros_like(view.emotion_weight)


def test_the_config_knows_a_registered_critic() -> None:
    assert critic_names()[:2] == ("semantic", "emotion") and "length" in critic_names()
    settings = typed(AdversarialConfig, {"critics": ["length", "semantic"]}, "adversarial")
    assert settings.critic_names == ["semantic", "length"]  # the registry's order, whatever the list's


def test_a_critic_names_itself_and_keeps_its_short_name_to_itself() -> None:
    with pytest.raises(ValueError, match="short name 'sem' is already used by critic 'semantic'"):
        register_critic(type("Echo", (CriticRule,), {"name": "echo", "short": "sem"}))
    with pytest.raises(TypeError, match="`short`"):
        register_critic(type("Unnamed", (CriticRule,), {"name": "unnamed"}))
    assert "echo" not in critic_names() and "unnamed" not in critic_names()


def test_the_report_checks_any_critic_on_emotional_replies_when_its_rule_asks() -> None:
    shares = {"n": 4.0, "n_emotional": 3.0, "aff_gold_beats_mismatch": 0.5, "aff_gold_beats_mismatch_emotional": 2 / 3}
    report = render_critic_report([{"step": 1.0, **{f"wgan/critic/{k}": v for k, v in shares.items()}}])
    assert "aff on the 3 examples whose gold reply has an emotion word" in report and "66.7%" in report


def test_a_critic_defined_here_trains_is_reported_and_scores_the_chat(tmp_path: Path) -> None:
    torch.manual_seed(0)
    overrides = ["adversarial.critics=[semantic,emotion,length]", "trainer.val_check_interval=4"]
    cfg = compose("train", short_adversarial_run(tmp_path, *overrides))
    seen = logged_keys()
    metrics = run_training(cfg, [seen])
    module = seen.module
    assert list(module.critics) == ["semantic", "emotion", "length"]
    # it trains: the critic update logs its scores and gradient penalty under its short name
    assert {"wgan/d_len_real", "wgan/d_len_fake", "wgan/d_len_mismatch", "wgan/gp_len"} <= seen.keys
    # it is reported: the validation's critic report compares it as it does the built-in critics
    assert "wgan/critic/len_gold_beats_mismatch" in metrics
    assert "| len |" in (tmp_path / "run" / "critic_report.md").read_text()

    # what it reads: the panel applies its rule -- no word, only the reply's positions
    panel = module.game.panel
    ids = torch.tensor([[9, 10, 3], [11, 12, 3]])  # two different two-word replies, then EOS (id 3)
    vectors, mask, _ = panel.input(panel.ids_view(ids), "length")
    assert torch.count_nonzero(vectors) == 0 and bool(mask.all())

    # it scores the chat's candidates, through the checkpoint's critics
    loaded = load_checkpoint(next((tmp_path / "run" / "checkpoints").glob("*.ckpt")))
    assert set(loaded.bundle.critics) == {"semantic", "emotion", "length"}
    chat = compose("chat", ["ckpt_path=unused", "chat.rerank=3"])
    settings = ChatSettings.from_config(chat.chat, cfg.data, chat.data)
    session = ChatSession(loaded.bundle, DecodingConfig(strategy="sample", max_len=4, seed=0), settings)
    turn = session.respond("my dog died last week and i miss him")
    assert not turn.notes, turn.notes
    assert all({"semantic", "emotion", "length"} <= set(c.scores) for c in turn.candidates)
