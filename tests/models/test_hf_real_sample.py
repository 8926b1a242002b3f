"""On the real ED sample: a pretrained-format generator's emotion head learns the emotion (above chance)."""

from __future__ import annotations

import pytest

from empdg.training.run import run_training


@pytest.mark.real_data
@pytest.mark.slow
def test_the_emotion_head_rises_above_chance_on_the_real_sample(real_sample_dir, tiny_pretrained, compose_train):
    """32 emotions: chance is 3.1%; always answering the most frequent emotion scores about 6.5%."""
    overrides = [
        "experiment=hf_quickstart",
        "model=hf_seq2seq",
        f"model.pretrained={tiny_pretrained['seq2seq']}",
        "adversarial.critic.hidden_dim=16",
        "adversarial.critic.num_filters=8",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "model.emotion_encoder=true",
        "data=empathetic_dialogues",
        f"data.root={real_sample_dir}",
        "data.download=false",
        "+data.limit_examples.valid=300",
        "optim.lr=2e-3",
        "training.phases.generator_pretrain=160",
        "training.phases.critic_pretrain=0",
        "training.phases.adversarial=0",
        "trainer.val_check_interval=160",
        "training.sample_generations=0",
        "logger=none",
    ]
    metrics = run_training(compose_train(*overrides, tiny=False))
    # above chance, and above always guessing the most frequent emotion
    assert metrics["val/emotion_acc"] > 0.08, metrics
