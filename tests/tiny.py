"""One definition of a tiny training run for the tests (seconds on one CPU thread), and the tiny random
generators and batches the model tests build.

Test files import it as ``from tiny import tiny_overrides`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

from pathlib import Path

#: the repository's root (train.py, sweep.py, src/): the one definition for every test file
REPO = Path(__file__).resolve().parents[1]
#: the foundation's generator pre-training alone: no critic phases
MLE_ONLY = ("training.phases.critic_pretrain=0", "training.phases.adversarial=0")


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
    if mle_only:
        overrides += MLE_ONLY
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


def short_adversarial_run(root: Path, *overrides: str) -> list[str]:
    """Hydra overrides of conf/train.yaml for the tiny run with a few updates of every phase, the critics'
    included, nothing logged, then ``overrides``; its folder is ``root / "run"`` (the "adding a ..." proofs)."""
    return [
        *tiny_overrides(),
        "logger=none",
        "training.sample_generations=0",
        "training.phases.generator_pretrain=2",
        "training.phases.critic_pretrain=2",
        "training.phases.adversarial=1",
        "adversarial.g_steps=1",
        "adversarial.report_batches=1",
        *overrides,
        f"paths.root_dir={root}",
        f"paths.output_dir={root / 'run'}",
    ]


def logged_keys():
    """A Lightning callback keeping the module (``.module``) and every metric key it logged at a training
    step (``.keys``: the keys of ``step_metrics``, so critic updates between logging steps count too)."""
    import pytorch_lightning as pl

    class LoggedKeys(pl.Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            self.module, self.keys = pl_module, set()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.keys |= set(pl_module.step_metrics)

    return LoggedKeys()


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


def tiny_generator(
    generator_cls: type,
    settings_cls: type,
    sizes: dict,
    vocab: int,
    *,
    seed: int = 0,
    sharpen: float = 4.0,
    **overrides,
):
    """A seeded random generator in eval mode, ``sizes`` updated by ``overrides``.

    ``sharpen`` scales the output layer so that greedy, beam and sampling disagree often enough to matter
    (1: as initialised).
    """
    import torch

    torch.manual_seed(seed)
    model = generator_cls(settings_cls(**{**sizes, **overrides}), vocab_size=vocab)
    if sharpen != 1:
        with torch.no_grad():
            model.output.weight.mul_(sharpen)
    return model.eval()


def random_context(vocab: int, batch_size: int, gen, length: int = 9) -> dict:
    """Random context ids drawn from ``gen``: ``[CLS]`` first, the first row padded, every turn the speaker's."""
    import torch

    from empdg.data.vocab import CLS_ID, PAD_ID, SPK_ID

    ids = torch.randint(8, vocab, (batch_size, length), generator=gen)
    ids[:, 0] = CLS_ID
    ids[0, -3:] = PAD_ID  # one padded row
    return {
        "context_ids": ids,
        "context_pad_mask": ids.eq(PAD_ID),
        "context_state": torch.full_like(ids, SPK_ID).masked_fill(ids.eq(PAD_ID), PAD_ID),
        "context_ext_ids": ids.clone(),
    }


def random_emotion_words(vocab: int, batch_size: int, gen) -> dict:
    """Four random emotion-context ids per row drawn from ``gen``, ``[LAB]`` first."""
    import torch

    from empdg.data.vocab import LAB_ID, PAD_ID

    emo = torch.randint(8, vocab, (batch_size, 4), generator=gen)
    emo[:, 0] = LAB_ID
    return {"emotion_context_ids": emo, "emotion_context_pad_mask": emo.eq(PAD_ID)}


def random_decoding_batch(vocab: int, batch_size: int = 4, seed: int = 1, max_oov: int = 0, length: int = 9) -> dict:
    """A random encoder batch for decoding tests: :func:`random_context`, then :func:`random_emotion_words`."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    batch = random_context(vocab, batch_size, gen, length)
    if max_oov:
        batch["context_ext_ids"][:, 2] = vocab  # an OOV word the copy mechanism may reproduce
    return {**batch, **random_emotion_words(vocab, batch_size, gen), "max_oov": max_oov}
