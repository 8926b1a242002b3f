"""Which critics exist and what each reads: one :class:`CriticRule` subclass per critic, registered by name.

A rule says, for the critic named in ``adversarial.critics``: its short name in logged metric keys
(``wgan/d_<short>_*``), the batch fields it reads as its condition (the context's words for
``word_match``, the user's feedback), the encoder summary it is conditioned on, how it weights the
response's positions, and whether the critic report checks it on emotional replies apart. The
:class:`~empdg.models.critic_panel.CriticPanel` applies the rules; nothing else branches on a critic's name.

A new critic is one class::

    @register_critic
    class LengthCritic(CriticRule):
        name, short = "length", "len"

(plus a config section only if it needs settings; tests/models/test_adding_a_critic.py proves it). An
out-of-tree critic registers when its module is imported, before the config naming it is checked.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from torch import Tensor, nn

from empdg.models.base import EncodedDialogue
from empdg.models.critic_inputs import ResponseView, critic_emotion_weight
from empdg.models.critics import CriticConfig, ResponseCritic
from empdg.models.rule_registry import RuleRegistry

R = TypeVar("R", bound=type["CriticRule"])


class CriticRule:
    """One critic: what it reads. The defaults are the semantic critic's (every word, x̃0, context, feedback)."""

    name: ClassVar[str]
    short: ClassVar[str]  # in logged metric keys: wgan/d_<short>_real, ...
    context_key: ClassVar[str] = "context"  # batch["<key>_ids"]: the context words a word_match critic matches
    feedback_key: ClassVar[str] = "feedback"  # batch["<key>_ids"]: the user's next utterance it reads
    reports_emotional_mismatch: ClassVar[bool] = False  # the report's gold-vs-mismatch on emotional replies

    def summary(self, encoded: EncodedDialogue) -> Tensor:
        """[B, hidden] the encoder summary the critic is conditioned on."""
        return encoded.x0

    def position_weight(self, view: ResponseView, emotion_floor: float) -> Tensor | None:
        """[B, T] the factor of each response position's vector (and word-match weight); None: all alike."""
        return None

    def build(self, config: CriticConfig) -> nn.Module:
        """The critic network (called once per run, in ``adversarial.critics`` order)."""
        return ResponseCritic(config)


_CRITICS = RuleRegistry(CriticRule, "critic", ("name", "short"))


def register_critic(cls: R) -> R:
    """Class decorator: ``cls.name`` becomes a choice of ``adversarial.critics``."""
    if isinstance(getattr(cls, "short", None), str):  # the metric keys must tell the critics apart
        taken = {rule.short: rule.name for rule in _CRITICS.classes() if rule.name != getattr(cls, "name", None)}
        if cls.short in taken:
            raise ValueError(f"critic short name {cls.short!r} is already used by critic {taken[cls.short]!r}")
    return _CRITICS.register(cls)


def critic_names() -> tuple[str, ...]:
    """Every registered critic, in registration order (the built-ins first)."""
    return _CRITICS.names()


def get_critic_rule(name: str) -> CriticRule:
    """The rule of critic ``name``; an unknown name fails with the list of choices."""
    return _CRITICS.get(name)


@register_critic
class SemanticCritic(CriticRule):
    """D_sem: the response's word vectors, conditioned on x̃0 and the feedback's word vectors."""

    name, short = "semantic", "sem"


@register_critic
class EmotionCritic(CriticRule):
    """D_emo: the response's emotion words (see :func:`critic_emotion_weight`), conditioned on w̃0 (x̃0
    without an emotion encoder) and the feedback's emotion words."""

    name, short = "emotion", "emo"
    context_key = "emotion_context"
    feedback_key = "feedback_emotion"
    reports_emotional_mismatch = True

    def summary(self, encoded: EncodedDialogue) -> Tensor:
        return encoded.w0 if encoded.w0 is not None else encoded.x0

    def position_weight(self, view: ResponseView, emotion_floor: float) -> Tensor | None:
        return critic_emotion_weight(view, emotion_floor)
