"""Instruments that show what the critics judge and what they do to the generator.

- :func:`critic_report_counts`: on validation examples, how often each critic scores the gold reply
  above the generator's greedy reply, a sampled reply, another dialogue's gold reply (same words,
  wrong context and feedback) and, on the soft path, the relaxed reply. A critic that judges fit
  must prefer gold in most of each; one that prefers greedy text, or is at chance against
  mismatched gold, judges form or nothing.
- :func:`output_sharpness`: the generator's mean output entropy and max-probability (peakiness).
- :func:`gradient_probe`: norm ratio and cosine between the adversarial and the MLE gradient at the
  decoder -- is the adversarial term a nudge, a takeover, or a tug against MLE?
- :func:`reply_diversity`: Distinct-1/2 and the unique-reply count of greedy replies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from empdg.data.text_metrics import distinct_n
from empdg.training.critic_inputs import CRITIC_SHORT, gold_view, mismatch_permutation
from empdg.training.relaxation import soft_response

COMPARISONS = ("greedy", "sample", "mismatch", "soft")
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
    rows = game.rows(batch)
    counts: dict[str, float] = {}
    if rows.numel() < 2 or not len(game.critics):
        return counts, greedy
    conditions = game.conditions(batch, encoded, rows)
    views = {
        "gold": gold_view(game.generator, batch, game.emotion_vocab, game.match_vocab).rows(rows),
        "greedy": game.ids_view(greedy).rows(rows),
        "sample": game.ids_view(game.decode(encoded, "sample", rng)).rows(rows),
    }
    if game.settings.estimator == "soft":
        tau = game.settings.tau
        pad = batch["target_pad_mask"]
        soft = soft_response(game.generator, out.log_probs, pad, game.emotion_vocab, tau, game.match_vocab)
        views["soft"] = soft.rows(rows)
    perm = mismatch_permutation(rows.numel(), generator=rng, device=rows.device)
    counts["n"] = float(rows.numel())
    # D_emo reads only a reply's emotion words (adversarial.critic.emotion_floor=0): without any, gold and
    # mismatched gold are the same empty input, so it can beat chance on the replies that have some only
    emotional = views["gold"].emotion_weight.sum(dim=1) > 0
    counts["n_emotional"] = float(emotional.sum())
    for name in game.critics:
        short = CRITIC_SHORT[name]
        gold = game.score(name, views["gold"], conditions[name])
        scores = {other: game.score(name, view, conditions[name]) for other, view in views.items() if other != "gold"}
        scores["mismatch"] = game.score(name, views["gold"], conditions[name].rows(perm))
        counts[f"{short}_score_gold"] = float(gold.sum())
        for other, score in scores.items():
            counts[f"{short}_gold_beats_{other}"] = float((gold > score).sum())
            counts[f"{short}_score_{other}"] = float(score.sum())
        if name == "emotion":
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


def reply_diversity(replies: Sequence[str]) -> dict[str, float]:
    """Distinct-1/2 (in %, as the evaluation reports them) and the number of distinct replies."""
    tokens = [reply.split() for reply in replies]
    return {
        "dist_1": distinct_n(tokens, 1),
        "dist_2": distinct_n(tokens, 2),
        "unique_replies": float(len({" ".join(t) for t in tokens})),
        "n_replies": float(len(tokens)),
    }


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
