"""Instruments that show what the critics judge and what they do to the generator.

- :func:`critic_report_counts`: on validation examples, how often each critic scores the gold reply
  above the generator's greedy reply, a sampled reply, another dialogue's gold reply (same words,
  wrong context and feedback) and, with a teacher-forced estimator (soft), its relaxed reply. A critic that judges fit
  must prefer gold in most of each; one that prefers greedy text, or is at chance against
  mismatched gold, judges form or nothing.
- :func:`output_sharpness`: the generator's mean output entropy and max-probability (peakiness).
- :func:`gradient_probe`: norm ratio and cosine between the adversarial and the MLE gradient at the
  decoder -- is the adversarial term a nudge, a takeover, or a tug against MLE?
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from empdg.models.critic_inputs import mismatch_permutation

REPORT_SEED = 20201208


@torch.no_grad()
def critic_report_counts(game, batch: dict, out) -> tuple[dict[str, float], Tensor | None]:
    """Sums over one batch: ``{critic}_gold_beats_{other}`` counts, score sums and ``n``; plus greedy ids.

    ``game`` is an :class:`~empdg.training.adversarial.AdversarialGame`; ``out`` the teacher-forced
    generator output on ``batch`` (for the soft comparison). Samples and the mismatch pairing draw
    from a fixed-seed generator: every report sees the same draws, and validation never moves the
    global RNG (a resumed run must continue exactly).
    """
    encoded = out.encoded
    rng = torch.Generator(device=encoded.device).manual_seed(REPORT_SEED)
    greedy = game.decode(encoded, "greedy")
    panel = game.panel
    rows = panel.rows(batch)
    counts: dict[str, float] = {}
    if rows.numel() < 2 or not len(panel):
        return counts, greedy
    conditions = panel.conditions(batch, encoded, rows)
    views = {
        "gold": panel.gold_view(batch).rows(rows),
        "greedy": panel.ids_view(greedy).rows(rows),
        "sample": panel.ids_view(game.decode(encoded, "sample", rng)).rows(rows),
    }
    if game.estimator.teacher_forced:  # its fake reply draws nothing: validation leaves the global RNG alone
        views[game.estimator.name] = game.estimator.fake_view(game, batch, out).rows(rows)
    perm = mismatch_permutation(rows.numel(), generator=rng, device=rows.device)
    counts["n"] = float(rows.numel())
    # D_emo reads only a reply's emotion words (adversarial.critic.emotion_floor=0): without any, gold and
    # mismatched gold are the same empty input, so it can beat chance on the replies that have some only
    emotional = views["gold"].emotion_weight.sum(dim=1) > 0
    counts["n_emotional"] = float(emotional.sum())
    for name, rule in panel.rules.items():
        short = rule.short
        gold = panel.score(name, views["gold"], conditions[name])
        scores = {other: panel.score(name, view, conditions[name]) for other, view in views.items() if other != "gold"}
        scores["mismatch"] = panel.score(name, views["gold"], conditions[name].rows(perm))
        counts[f"{short}_score_gold"] = float(gold.sum())
        for other, score in scores.items():
            counts[f"{short}_gold_beats_{other}"] = float((gold > score).sum())
            counts[f"{short}_score_{other}"] = float(score.sum())
        if rule.reports_emotional_mismatch:
            counts[f"{short}_gold_beats_mismatch_emotional"] = float(((gold > scores["mismatch"]) & emotional).sum())
    return counts, greedy


def shares_from_counts(counts: dict[str, float]) -> dict[str, float]:
    """Turn summed counts into shares and mean scores (divide by ``n``; ``*_emotional`` counts by
    ``n_emotional``, the examples whose gold reply has an emotion word)."""
    n = counts.get("n", 0.0)
    if n <= 0:
        return {}
    n_emotional = counts.get("n_emotional", 0.0)
    shares = {"n": n}
    for key, value in counts.items():
        if key in ("n", "n_emotional"):
            continue
        if key.endswith("_emotional"):
            if n_emotional > 0:
                shares[key] = value / n_emotional
        else:
            shares[key] = value / n
    if "n_emotional" in counts:
        shares["n_emotional"] = n_emotional
    return shares


def output_sharpness(log_probs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(sum of entropies, sum of max-probabilities, number of positions) over ``mask``-ed positions."""
    probs = log_probs.exp()
    entropy = -(probs * log_probs).sum(dim=-1)
    max_prob = probs.max(dim=-1).values
    mask = mask.to(entropy.dtype)
    return (entropy * mask).sum(), (max_prob * mask).sum(), mask.sum()


def gradient_probe(mle: Tensor, adv: Tensor, params: Sequence[nn.Parameter]) -> tuple[Tensor, Tensor, Tensor]:
    """(‖∇mle‖, ‖∇adv‖, cosine) over ``params``; the graphs are kept for the real backward pass."""
    params = [p for p in params if p.requires_grad]
    g_mle = torch.autograd.grad(mle, params, retain_graph=True, allow_unused=True)
    g_adv = torch.autograd.grad(adv, params, retain_graph=True, allow_unused=True)
    flat_mle = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(g_mle, params)])
    flat_adv = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(g_adv, params)])
    norm_mle, norm_adv = flat_mle.norm(), flat_adv.norm()
    cosine = (flat_mle @ flat_adv) / (norm_mle * norm_adv).clamp_min(1e-12)
    return norm_mle.detach(), norm_adv.detach(), cosine.detach()
