"""Critics that judge replies, not relaxations: estimators, input forms, mismatched negatives,
the relative adversarial weight, the same-batch control and the critic report."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from empdg.config.schema import AdversarialConfig, typed
from empdg.data.datamodule import DialogueDataModule
from empdg.data.dataset import collate
from empdg.data.vocab import EOS_ID
from empdg.models.critic_inputs import ResponseView, critic_response, mismatch_permutation
from empdg.models.critic_panel import CriticPanel
from empdg.models.critic_rules import get_critic_rule
from empdg.models.estimators import get_estimator
from empdg.training.critic_report import render_critic_report
from empdg.training.instruments import critic_report_counts, shares_from_counts
from empdg.training.module import EmpDGModule
from empdg.training.run import build_module, run_training

ESTIMATORS = ["reinforce", "gumbel", "soft"]


def build(cfg) -> tuple[DialogueDataModule, EmpDGModule]:
    datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
    datamodule.setup("fit")
    return datamodule, build_module(cfg, datamodule)


def feedback_batch(datamodule: DialogueDataModule, n: int = 8) -> dict:
    items = [it for it in datamodule.datasets["train"].items if it.has_feedback][:n]
    return collate(items)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_each_estimator_reaches_the_generator_and_is_zero_without_weight(compose_train, estimator):
    torch.manual_seed(0)
    only_adv = [
        "adversarial.mle_weight=0",
        "training.emotion_loss_weight=0",
        f"adversarial.estimator={estimator}",
        "adversarial.w_adv=abs:0.01",  # a relative weight scales by the (here zero) MLE gradient
    ]
    datamodule, module = build(compose_train(*only_adv))
    batch = feedback_batch(datamodule)
    loss, parts = module.adversarial_generator_loss(batch)
    assert parts["g_adv"].requires_grad
    loss.backward()
    assert sum(float(p.grad.norm()) for p in module.generator.decoder.parameters() if p.grad is not None) > 0

    _, module = build(compose_train(*only_adv, "adversarial.w_adv=0"))
    loss, _ = module.adversarial_generator_loss(batch)
    loss.backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in module.generator.decoder.parameters() if p.grad is not None)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_zero_weight_leaves_only_the_mle_gradient(compose_train, estimator):
    torch.manual_seed(0)
    datamodule, module = build(compose_train(f"adversarial.estimator={estimator}", "adversarial.w_adv=0"))
    batch = feedback_batch(datamodule)
    params = module.generator.decoder_parameters()
    total = torch.autograd.grad(module.adversarial_generator_loss(batch)[0], params, allow_unused=True)
    mle = torch.autograd.grad(module.generator_losses(batch)["loss"], params, allow_unused=True)
    for a, b in zip(total, mle):
        if a is not None:
            torch.testing.assert_close(a, b)


def critic_views(module: EmpDGModule, batch: dict) -> tuple[ResponseView, ResponseView]:
    """The gold and the generated response exactly as the critic update builds them."""
    game = module.game
    with torch.no_grad():
        out = module.generator(batch)
        fake = game.estimator.fake_view(game, batch, out)
    return game.panel.gold_view(batch), fake


def mean_position_norm(view: ResponseView, critic: str, unit_norm: bool) -> float:
    vectors, mask = critic_response(view, get_critic_rule(critic), unit_norm)
    return float(vectors.norm(dim=-1)[mask].mean())


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_critics_see_real_and_fake_in_one_form(compose_train, estimator):
    """Real and fake positions look alike to a critic: same kind of vector, same size (soft: unit-normed)."""
    torch.manual_seed(0)
    datamodule, module = build(compose_train(f"adversarial.estimator={estimator}"))
    unit = module.game.panel.unit_norm
    assert unit == (estimator == "soft")
    real, fake = critic_views(module, feedback_batch(datamodule))
    real_norm = mean_position_norm(real, "semantic", unit)
    fake_norm = mean_position_norm(fake, "semantic", unit)
    assert fake_norm == pytest.approx(real_norm, rel=0.15)
    if estimator != "soft":  # hard tokens: every generated position is a row of the embedding table
        table = module.generator.embedding.weight.detach()
        vectors = fake.vectors[fake.mask].detach()
        distance = (vectors[:, None, :] - table[None]).abs().amax(dim=-1).amin(dim=1)
        assert float(distance.max()) < 1e-4


def test_the_plain_soft_path_has_a_content_free_cue(compose_train):
    """Expected embeddings are much shorter than word vectors: without the soft estimator's unit norm the
    check above fails on them."""
    torch.manual_seed(0)
    datamodule, module = build(compose_train("adversarial.estimator=soft"))
    real, fake = critic_views(module, feedback_batch(datamodule))
    ratio = mean_position_norm(fake, "semantic", False) / mean_position_norm(real, "semantic", False)
    assert ratio < 0.85


@pytest.mark.parametrize("n", [2, 3, 7, 32])
def test_mismatched_negatives_never_pair_an_example_with_itself(n):
    for seed in range(50):
        perm = mismatch_permutation(n, generator=torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == list(range(n))
        assert all(perm[i] != i for i in range(n))
    with pytest.raises(ValueError, match="at least 2"):
        mismatch_permutation(1)


def test_critic_loss_includes_mismatched_negatives_when_on(compose_train):
    torch.manual_seed(0)
    datamodule, module = build(compose_train())
    _, logs = module.critic_losses(feedback_batch(datamodule))
    assert {"wgan/d_sem_mismatch", "wgan/d_emo_mismatch", "wgan/d_sem_real", "wgan/d_sem_fake"} <= set(logs)
    _, module = build(compose_train("adversarial.mismatch_weight=0"))
    _, logs = module.critic_losses(feedback_batch(datamodule))
    assert "wgan/d_sem_mismatch" not in logs


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
def test_word_match_critics_read_the_contexts_words_and_mismatches_move_them(compose_train, estimator):
    """With ``word_match`` the conditions carry the context's word vectors without special ids, a
    mismatched negative gets another dialogue's words, and both losses still train end to end."""
    torch.manual_seed(0)
    overrides = ["adversarial.critic.word_match=true", f"adversarial.estimator={estimator}"]
    datamodule, module = build(compose_train(*overrides))
    batch = feedback_batch(datamodule)
    rows = module.game.panel.rows(batch)
    conditions = module.game.panel.conditions(batch, module.generator.encode(batch), rows)
    semantic = conditions["semantic"]
    ids = batch["context_ids"][rows]
    assert torch.equal(semantic.context_words_mask, ids >= 8)
    torch.testing.assert_close(semantic.context_words, module.generator.embed_tokens(ids))
    emotion_ids = batch["emotion_context_ids"][rows]
    assert torch.equal(conditions["emotion"].context_words_mask, emotion_ids >= 8)
    assert not conditions["emotion"].context_words_mask[:, 0].any()  # [LAB] is no word
    shifted = semantic.rows(mismatch_permutation(rows.numel(), generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(shifted.context_words, semantic.context_words)
    critic_loss, logs = module.critic_losses(batch)
    critic_loss.backward()
    assert module.critics["semantic"].match_gate.weight.grad.abs().sum() > 0
    assert torch.isfinite(logs["wgan/d_loss"])
    loss, parts = module.adversarial_generator_loss(batch)
    loss.backward()
    assert sum(float(p.grad.norm()) for p in module.generator.decoder.parameters() if p.grad is not None) > 0


def test_relative_weight_sets_the_adversarial_share_of_the_decoder_gradient(compose_train):
    torch.manual_seed(0)
    cfg = compose_train("adversarial.w_adv=0.3", "adversarial.estimator=soft")
    datamodule, module = build(cfg)
    batch = feedback_batch(datamodule)
    params = module.generator.decoder_parameters()
    loss, parts = module.adversarial_generator_loss(batch)
    total = torch.autograd.grad(loss, params, allow_unused=True)
    mle = torch.autograd.grad(module.generator_losses(batch)["loss"], params, allow_unused=True)
    flat = lambda grads: torch.cat([g.flatten() for g in grads if g is not None])  # noqa: E731
    adversarial_part = flat(total) - flat(mle)
    assert float(adversarial_part.norm() / flat(mle).norm()) == pytest.approx(0.3, rel=1e-3)
    assert float(parts["wgan/adv_mle_grad_ratio"]) == pytest.approx(0.3, rel=1e-3)


def test_unknown_or_impossible_adversarial_settings_are_named():
    with pytest.raises(ValueError, match="unknown key adversarial.w_adversarial"):
        typed(AdversarialConfig, {"w_adversarial": 1.0}, "adversarial")
    with pytest.raises(ValueError, match="adversarial.n_critic: .*could not be converted"):
        typed(AdversarialConfig, {"n_critic": "three"}, "adversarial")
    with pytest.raises(ValueError, match="adversarial.estimator='policy'"):
        typed(AdversarialConfig, {"estimator": "policy"}, "adversarial")
    with pytest.raises(ValueError, match="unknown key adversarial.relaxation"):  # an old alias: migration.py's
        typed(AdversarialConfig, {"relaxation": "gumbel"}, "adversarial")


class BatchRecorder(pl.Callback):
    def __init__(self) -> None:
        self.batches: list[tuple[str, list]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append((pl_module.phases.current, list(batch["example_ids"])))


def test_same_batch_control_replays_the_adversarial_runs_batches(compose_train):
    common = [
        "training.phases.generator_pretrain=3",
        "training.phases.critic_pretrain=2",
        "training.phases.adversarial=3",
        "adversarial.n_critic=1",
        "adversarial.g_steps=2",
        "trainer.val_check_interval=1000",
    ]
    adversarial, control = BatchRecorder(), BatchRecorder()
    run_training(compose_train(*common, run="adversarial"), [adversarial])
    run_training(compose_train(*common, "adversarial.w_adv=0", run="control"), [control])
    assert len(adversarial.batches) >= 3 + 2 + 3 * 3
    assert control.batches == adversarial.batches


class _StubGenerator:
    def embed_tokens(self, ids):
        return ids.float().unsqueeze(-1)


class _SumCritic:
    """Scores a response by the sum of its token ids plus the context value: hand-computable."""

    def __call__(self, response, response_mask, context, response_weight=None, **condition):
        return (response.squeeze(-1) * response_mask).sum(dim=1) + context.squeeze(1)


class _StubGame:
    """The report's game: the real critic panel around a one-number embedding and a summing critic."""

    def __init__(self) -> None:
        self.generator = _StubGenerator()
        self.estimator = get_estimator("gumbel")
        emotion_vocab = torch.zeros(10)
        self.panel = CriticPanel(self.generator, {"semantic": _SumCritic()}, emotion_vocab=lambda: emotion_vocab)
        self.panel.feedback = False  # every example is read

    def decode(self, encoded, strategy, rng=None):
        # greedy replies [4, EOS, 0] score 4 + 3 = 7, sampled [6, EOS, 0] score 9: counted up to EOS (id 3)
        first = 4 if strategy == "greedy" else 6
        return torch.tensor([[first, EOS_ID, 0]] * 4)


def test_critic_report_counts_against_a_hand_built_case():
    # gold replies [k, EOS] score k + 3: 5, 7, 9, 11; the context adds 10 to example 2
    target = torch.tensor([[2, EOS_ID], [4, EOS_ID], [6, EOS_ID], [8, EOS_ID]])
    batch = {
        "target_ids": target,
        "target_pad_mask": torch.zeros_like(target, dtype=torch.bool),
        "has_feedback": torch.ones(4, dtype=torch.bool),
    }
    x0 = torch.tensor([[0.0], [0.0], [10.0], [0.0]])
    out = type("Out", (), {"encoded": type("Enc", (), {"x0": x0, "device": torch.device("cpu")})()})()
    counts, _ = critic_report_counts(_StubGame(), batch, out)
    # gold: 5, 7, 19, 11; greedy: 7, 7, 17, 7 -> gold wins for examples 2 and 3
    assert counts["n"] == 4
    assert counts["sem_gold_beats_greedy"] == 2
    # sampled: 9, 9, 19, 9 -> gold wins for example 3 only (19 vs 19 is no win)
    assert counts["sem_gold_beats_sample"] == 1
    assert counts["sem_score_gold"] == 5 + 7 + 19 + 11
    shares = shares_from_counts(counts)
    assert shares["sem_gold_beats_greedy"] == 0.5
    report = render_critic_report([{"step": 7.0, **{f"wgan/critic/{k}": v for k, v in shares.items()}}])
    assert "| sem | 50.0% | 25.0% |" in report and "FAILS" in report


def test_emotional_shares_count_only_replies_with_an_emotion_word():
    counts = {"n": 4.0, "n_emotional": 2.0, "emo_gold_beats_mismatch": 3.0, "emo_gold_beats_mismatch_emotional": 2.0}
    shares = shares_from_counts(counts)
    assert shares["emo_gold_beats_mismatch"] == 0.75 and shares["emo_gold_beats_mismatch_emotional"] == 1.0
    assert shares["n_emotional"] == 2.0
    assert "emo_gold_beats_mismatch_emotional" not in shares_from_counts({**counts, "n_emotional": 0.0})
    report = render_critic_report([{"step": 1.0, **{f"wgan/critic/{k}": v for k, v in shares.items()}}])
    assert "emo on the 2 examples whose gold reply has an emotion word" in report and "100.0%" in report


def test_a_run_logs_the_instruments_and_writes_the_critic_report(compose_train, tmp_path):
    cfg = compose_train(
        "training.phases.generator_pretrain=3",
        "training.phases.critic_pretrain=2",
        "training.phases.adversarial=2",
        "adversarial.probe_every=1",
        "trainer.val_check_interval=4",
    )
    metrics = run_training(cfg)
    for key in (
        "val/entropy",
        "val/max_prob",
        "val/greedy_dist_2",
        "val/greedy_unique_replies",
        "wgan/critic/sem_gold_beats_greedy",
        "wgan/critic/emo_gold_beats_mismatch",
    ):
        assert key in metrics, key
    report = (tmp_path / "run" / "critic_report.md").read_text()
    assert "gold > greedy" in report and "| sem |" in report


def test_invalid_adversarial_settings_stop_before_any_data_is_read(compose_train, tmp_path):
    from empdg.training.settings import validate_config

    with pytest.raises(ValueError, match="adversarial.estimator='policy'"):
        validate_config(compose_train("adversarial.estimator=policy"))
    with pytest.raises(ValueError, match="mismatch_weight"):
        validate_config(compose_train("adversarial.mismatch_weight=1.5"))
    assert not (tmp_path / ".cache").exists()


def test_a_failing_critic_is_explained_under_the_table():
    passing = {"step": 1.0, "wgan/critic/sem_gold_beats_greedy": 0.9, "wgan/critic/sem_gold_beats_mismatch": 0.75}
    assert "passes" in render_critic_report([passing])
    assert "FAILS:" not in render_critic_report([passing])
    failing = {**passing, "wgan/critic/sem_gold_beats_mismatch": 0.5}
    report = render_critic_report([failing])
    table_end = report.index("| sem |")
    reason = report.index("FAILS: the check asks whether a critic can judge replies at all")
    assert table_end < reason < report.index("## Every validation")
    assert "not expected to pass" in report and "built-in templated corpus (the quickstart)" in report
