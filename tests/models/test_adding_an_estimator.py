"""A new estimator is one class: an estimator defined only in this file is a choice of the config and trains.

REINFORCE with the batch's mean reward as its baseline (no greedy reply): its fake view is the sampled reply,
its generator term the score-function gradient. It registers when this module is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import logged_keys, short_adversarial_run
from torch import Tensor

from empdg.config import compose
from empdg.config.schema import AdversarialConfig, typed
from empdg.data.dataset import collate
from empdg.models.base import GeneratorOutput
from empdg.models.critic_inputs import CriticCondition, ResponseView
from empdg.models.decoding import sequence_log_prob
from empdg.models.estimators import Estimator, GeneratorAdversarialTerm, estimator_names, register_estimator
from empdg.training.run import run_training


@register_estimator
class MeanBaselineReinforce(Estimator):
    name = "reinforce_mean"

    def fake_view(self, game: Any, batch: dict, out: GeneratorOutput) -> ResponseView:
        return game.panel.ids_view(game.decode(out.encoded, "sample"))

    def generator_term(
        self, game: Any, batch: dict, out: GeneratorOutput, rows: Tensor, conditions: dict[str, CriticCondition]
    ) -> GeneratorAdversarialTerm:
        with torch.no_grad():
            sampled = game.decode(out.encoded, "sample")
            reward = game.reward(game.panel.ids_view(sampled).rows(rows), conditions)
        log_prob = sequence_log_prob(game.generator, out.encoded, sampled)[rows]
        loss = -((reward - reward.mean()) * log_prob).mean()
        return GeneratorAdversarialTerm(loss, {"wgan/reinforce_mean_reward": reward.mean()})


def test_the_config_knows_a_registered_estimator() -> None:
    assert "reinforce_mean" in estimator_names()
    assert typed(AdversarialConfig, {"estimator": "reinforce_mean"}, "adversarial").estimator == "reinforce_mean"
    with pytest.raises(ValueError, match="reinforce_mean"):  # the choices an unknown name is told of
        typed(AdversarialConfig, {"estimator": "policy"}, "adversarial")


def test_a_second_class_cannot_take_a_registered_name() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_estimator
        class Impostor(Estimator):
            name = "reinforce_mean"


def test_an_estimator_defined_here_trains_and_reaches_the_generator(tmp_path: Path) -> None:
    torch.manual_seed(0)
    overrides = ["adversarial.estimator=reinforce_mean", "trainer.val_check_interval=1000"]
    cfg = compose("train", short_adversarial_run(tmp_path, *overrides))
    seen = logged_keys()
    run_training(cfg, [seen])
    assert {"wgan/reinforce_mean_reward", "wgan/d_sem_fake", "wgan/g_adv"} <= seen.keys
    assert "wgan/reinforce_reward" not in seen.keys  # the built-in REINFORCE did not run

    # its term alone moves the decoder (no MLE, no emotion loss, an absolute weight)
    module = seen.module
    module.adv.mle_weight, module.training_cfg.emotion_loss_weight = 0.0, 0.0
    module.adv.w_adv = "abs:1"
    items = [it for it in module.trainer.datamodule.datasets["train"].items if it.has_feedback][:8]
    module.generator.zero_grad()
    loss, parts = module.adversarial_generator_loss(collate(items))
    loss.backward()
    assert parts["g_adv"].requires_grad
    assert sum(float(p.grad.norm()) for p in module.generator.decoder_parameters() if p.grad is not None) > 0
