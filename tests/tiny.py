"""One definition of a tiny training run for the tests: seconds on one CPU thread.

Test files import it as ``from tiny import tiny_overrides`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations


def tiny_overrides(
    dim: int = 16,
    *,
    train: int = 2,
    valid: int = 1,
    test: int = 1,
    batch_size: int = 8,
    mle_only: bool = False,
) -> list[str]:
    """Hydra overrides of conf/train.yaml for a tiny model on a tiny built-in corpus."""
    overrides = [
        "experiment=quickstart",
        f"model.emb_dim={dim}",
        f"model.hidden_dim={dim}",
        f"model.attn_dim={dim}",
        f"model.ff_dim={dim}",
        *_tiny_corpus_and_critics(train, valid, test, batch_size),
    ]
    if mle_only:  # the foundation's generator pre-training alone
        overrides += ["training.phases.critic_pretrain=0", "training.phases.adversarial=0"]
    return overrides


def tiny_hf_overrides(pretrained, *, train: int = 2, valid: int = 1, test: int = 1, batch_size: int = 8) -> list[str]:
    """Hydra overrides for a tiny pretrained-format generator (``model=hf_*``) on a tiny built-in corpus.

    ``experiment=hf_quickstart`` instead of ``quickstart``: the word-level size keys it sets have no
    meaning for a pretrained model (its folder decides them) and are refused.
    """
    return [
        "experiment=hf_quickstart",
        f"model.pretrained={pretrained}",
        *_tiny_corpus_and_critics(train, valid, test, batch_size),
    ]


def _tiny_corpus_and_critics(train: int, valid: int, test: int, batch_size: int) -> list[str]:
    return [
        "adversarial.critic.hidden_dim=16",
        "adversarial.critic.num_filters=8",
        f"data.builtin.train_per_emotion={train}",
        f"data.builtin.valid_per_emotion={valid}",
        f"data.builtin.test_per_emotion={test}",
        f"data.batch_size={batch_size}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
