"""Typed schemas of the run's config: ``adversarial``, ``training``, ``optim`` and ``data``.

Each dataclass is registered in Hydra's ConfigStore (:func:`register_run_schemas`) under ``schema/``
and named in the defaults list of its YAML files (``train.yaml`` names
``/schema/training/default@training``, a data option ``/schema/data/<name>@_here_``), so a wrong type or an
unknown key fails while Hydra composes, naming the key. Values that are typed right but impossible
(a negative budget, ``n_critic + g_steps = 0``, an unknown estimator) are each class's
``__post_init__`` -- the one home of every such rule: :func:`empdg.training.settings.validate_config`
builds the objects (``OmegaConf.to_object``) before any data is read, and the training module builds
them again from its hyper-parameters, so both meet the same rules. Rules that need two groups at once
are :func:`run_problems`.

A dataclass default is the one source of what a key means: the YAML files state only what differs from it,
and a stored config of an older run is first rewritten to today's keys by :mod:`empdg.config.migration`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from empdg.models.critic_rules import critic_names as known_critics
from empdg.models.critics import FUSIONS
from empdg.models.estimators import estimator_names

#: ``adversarial.*`` choices (critics and estimators: their registries in empdg.models)
ADVERSARIAL_LOSS_NAMES = ("wgan_gp", "gan", "wgan_clip")  # empdg.training.adversarial_losses implements each
#: ``training.*`` / ``optim.*`` choices
PHASES = ("generator_pretrain", "critic_pretrain", "adversarial")
CRITIC_PHASES = ("critic_pretrain", "adversarial")
ON_NONFINITE = ("error", "skip")
VAL_MEANING = ("auto", "true", "false")
SCHEDULERS = ("none", "noam", "linear_warmup")

T = TypeVar("T")


class InvalidSettings(ValueError):
    """Impossible values of one config section; ``problems`` lists each one, naming its key."""

    def __init__(self, section: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid {section} configuration:\n  - " + "\n  - ".join(problems))


def _raise_if(section: str, problems: list[str]) -> None:
    if problems:
        raise InvalidSettings(section, problems)


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> list[str]:
    return [] if value in choices else [f"{key}={value!r}: choose one of {choices}"]


def _at_least(key: str, value: float, low: float) -> list[str]:
    return [] if value >= low else [f"{key}={value} must be >= {low:g}"]


def _positive(key: str, value: float) -> list[str]:
    return [] if value > 0 else [f"{key}={value} must be > 0"]


def _fraction(key: str, value: float) -> list[str]:
    return [] if 0.0 <= value < 1.0 else [f"{key}={value} must be in [0, 1)"]


def _betas(key: str, betas: list[float]) -> list[str]:
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        return [f"{key}={list(betas)} must be two numbers in [0, 1)"]
    return []


# -- adversarial -----------------------------------------------------------------------------------
@dataclass
class CriticSizes:
    """``adversarial.critic``: the sizes of each critic (empdg.models.critics.CriticConfig)."""

    hidden_dim: int = 128
    num_filters: int = 64
    kernel_sizes: list[int] = field(default_factory=lambda: [2, 3, 4])
    dropout: float = 0.0
    # sum: ReLU(f + d_F + W x̃0) as the paper; sum_product adds f ⊙ (d_F + W x̃0)
    fusion: str = "sum_product"
    # also score how the reply's words match the context's and feedback's words (docs/critics.md)
    word_match: bool = True
    # what the emotional critic reads of a reply: each token's vector times floor + (1 - floor) * its
    # emotion weight; 0: its emotion words only (the paper's D_emo)
    emotion_floor: float = 0.0

    def problems(self) -> list[str]:
        found = _at_least("adversarial.critic.hidden_dim", self.hidden_dim, 1)
        found += _at_least("adversarial.critic.num_filters", self.num_filters, 1)
        if not self.kernel_sizes or min(self.kernel_sizes) < 1:
            found.append(f"adversarial.critic.kernel_sizes={list(self.kernel_sizes)} must be one or more sizes >= 1")
        found += _fraction("adversarial.critic.dropout", self.dropout)
        found += _choice("adversarial.critic.fusion", self.fusion, FUSIONS)
        if not 0.0 <= self.emotion_floor <= 1.0:
            found.append(
                f"adversarial.critic.emotion_floor={self.emotion_floor} must be in [0, 1] "
                "(0: the emotional critic reads the emotion words only; 1: every word alike)"
            )
        return found


@dataclass(frozen=True)
class AdversarialWeight:
    """``adversarial.w_adv`` read: how the critics' term is weighted in the generator's loss.

    ``relative``: w set so that ||w * grad_adv|| = ``value`` * ||grad_mle|| at the decoder, whatever the
    critics' score scale; ``absolute``: w = ``value``; ``off`` (0 or abs:0): the same-batch control, the
    critics still train on the same batches but their term is not computed.
    """

    mode: str
    value: float


W_ADV_SPELLINGS = "a share of the MLE gradient such as 0.2 (0: off), or abs:<weight> such as abs:0.01"


def parse_w_adv(text: Any) -> AdversarialWeight:
    """``adversarial.w_adv`` (a number, or ``abs:<number>``) as an :class:`AdversarialWeight`; ValueError if neither."""
    spelled = str(text).strip()
    absolute = spelled.lower().startswith("abs:")
    try:
        value = float(spelled[4:] if absolute else spelled)
    except ValueError:
        raise ValueError(f"adversarial.w_adv={spelled!r} is not a weight: write {W_ADV_SPELLINGS}") from None
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise ValueError(
            f"adversarial.w_adv={spelled} must be a finite number >= 0 (a negative weight rewards replies the "
            f"critics see as fake): write {W_ADV_SPELLINGS}"
        )
    if value == 0:
        return AdversarialWeight("off", 0.0)
    return AdversarialWeight("absolute" if absolute else "relative", value)


@dataclass
class AdversarialConfig:
    """The ``adversarial`` group: which critics exist and how the adversarial game is played.

    Each default is what a new run uses (conf/adversarial/empdg.yaml restates none); docs/critics.md ("Settings")
    documents every key. A run stored before a key existed is rewritten by empdg.config.migration.
    """

    # the critics trained and played against, by name ([]: the generator trains alone, as adversarial=none)
    critics: list[str] = field(default_factory=lambda: ["semantic", "emotion"])
    loss: str = "wgan_gp"  # wgan_gp | gan (vanilla, sigmoid + BCE) | wgan_clip (weight clipping)
    # gumbel: free-running straight-through Gumbel-softmax (hard tokens forward); reinforce: sampled replies,
    # self-critical REINFORCE; soft: expected embeddings, every response position rescaled to unit length
    estimator: str = "gumbel"
    tau: float = 1.0  # temperature of the soft / gumbel relaxations
    max_gen_len: int = 30  # free-running length (reinforce, gumbel, critic report)
    # share of the critic's fake term given to mismatched negatives (a real reply with another dialogue's
    # context + feedback); 0: none
    mismatch_weight: float = 0.5
    n_critic: int = 1  # critic updates (each on its own batch) per generator update ...
    g_steps: int = 5  # ... and generator updates per cycle (the original code's 1 and 5)
    gp_lambda: float = 10.0
    # the critics' weight in the generator's loss (parse_w_adv): a number is the share of the MLE gradient at
    # the decoder (0: the same-batch control), abs:<x> the weight itself; a string because abs: is one
    w_adv: str = "0.2"
    mle_weight: float = 1.0  # weight of the MLE term during the adversarial phase
    feedback: bool = True  # critics read the user's next utterance (false = ablation no_feedback)
    probe_every: int = 10  # adversarial/MLE gradient ratio and cosine every N generator updates (0: never)
    report_batches: int = 4  # validation batches of the critic report (greedy/sample/mismatch comparisons)
    critic_lr: float = 1.0e-3  # the adversarial study's rate (its README, "Default", says why not 1e-4)
    critic: CriticSizes = field(default_factory=CriticSizes)

    def __post_init__(self) -> None:
        if isinstance(self.critic, Mapping):  # built by hand from a plain mapping
            self.critic = CriticSizes(**self.critic)
        self.w_adv = str(self.w_adv)  # a number set by hand (or a sweep's float) reads as its text
        _raise_if("adversarial", self.problems())

    @property
    def critic_names(self) -> list[str]:
        """The critics switched on, in the registry's order (the order of ``critics`` changes nothing)."""
        return [name for name in known_critics() if name in self.critics]

    @property
    def weight(self) -> AdversarialWeight:
        return parse_w_adv(self.w_adv)

    def problems(self) -> list[str]:
        found = [
            f"adversarial.critics: unknown critic {name!r}; known critics: {list(known_critics())} ([]: none)"
            for name in self.critics
            if name not in known_critics()
        ]
        if len(set(self.critics)) != len(self.critics):
            found.append(f"adversarial.critics={list(self.critics)} names a critic twice")
        found += _choice("adversarial.loss", self.loss, ADVERSARIAL_LOSS_NAMES)
        found += _choice("adversarial.estimator", self.estimator, estimator_names())
        found += _fraction("adversarial.mismatch_weight", self.mismatch_weight)
        found += _at_least("adversarial.n_critic", self.n_critic, 0)
        found += _at_least("adversarial.g_steps", self.g_steps, 0)
        if self.n_critic + self.g_steps == 0:
            found.append(
                "adversarial.n_critic + adversarial.g_steps = 0: an adversarial cycle would have no update, "
                "so the adversarial phase would never end; set adversarial.g_steps >= 1"
            )
        if self.gp_lambda < 0:
            found.append(f"adversarial.gp_lambda={self.gp_lambda} must be >= 0 (a negative penalty rewards steepness)")
        try:
            parse_w_adv(self.w_adv)
        except ValueError as error:
            found.append(str(error))
        found += _at_least("adversarial.mle_weight", self.mle_weight, 0)
        found += _positive("adversarial.tau", self.tau)
        found += _at_least("adversarial.max_gen_len", self.max_gen_len, 1)
        found += _at_least("adversarial.probe_every", self.probe_every, 0)
        found += _at_least("adversarial.report_batches", self.report_batches, 0)
        found += _positive("adversarial.critic_lr", self.critic_lr)
        return found + self.critic.problems()


# -- training --------------------------------------------------------------------------------------
@dataclass
class PhaseBudgets:
    """``training.phases``: updates per phase (0 skips it); the run stops after the last one."""

    generator_pretrain: int = 12000  # generator updates (MLE)
    critic_pretrain: int = 1000  # critic updates against the frozen generator
    adversarial: int = 4000  # cycles of n_critic critic + g_steps generator updates

    def problems(self) -> list[str]:
        return [p for name in PHASES for p in _at_least(f"training.phases.{name}", getattr(self, name), 0)]


@dataclass
class TrainingConfig:
    """``training``: phase budgets and the generator's loss and update settings."""

    phases: PhaseBudgets = field(default_factory=PhaseBudgets)
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = 2.0  # max generator gradient norm; null (or 0) disables
    label_smoothing: float = 0.1
    emotion_loss_weight: float = 1.0
    on_nonfinite: str = "error"
    sample_generations: int = 8
    sample_max_len: int = 30
    # the metrics that read meaning on validation's greedy replies (empdg.training.validation.ValidationMeaning);
    # auto: on for the real data (data.source=ed) when the packaged MiniLM is installed
    val_meaning: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.phases, Mapping):  # built by hand from a plain mapping
            self.phases = PhaseBudgets(**self.phases)
        self.val_meaning = str(self.val_meaning).lower()  # `=true` on the command line arrives as "True"
        _raise_if("training", self.problems())

    def budgets(self, with_critics: bool) -> dict[str, int]:
        """The budget of every phase that runs: a model without critics skips the critic phases."""
        return {name: getattr(self.phases, name) for name in PHASES if with_critics or name not in CRITIC_PHASES}

    def problems(self) -> list[str]:
        found = self.phases.problems()
        found += _at_least("training.accumulate_grad_batches", self.accumulate_grad_batches, 1)
        if self.gradient_clip_val is not None:
            found += _at_least("training.gradient_clip_val", self.gradient_clip_val, 0)
        found += _fraction("training.label_smoothing", self.label_smoothing)
        found += _at_least("training.emotion_loss_weight", self.emotion_loss_weight, 0)
        if self.on_nonfinite not in ON_NONFINITE:
            found.append(f"training.on_nonfinite={self.on_nonfinite!r} must be 'error' or 'skip'")
        found += _at_least("training.sample_generations", self.sample_generations, 0)
        found += _at_least("training.sample_max_len", self.sample_max_len, 1)
        found += _choice("training.val_meaning", self.val_meaning, VAL_MEANING)
        return found


# -- optim -----------------------------------------------------------------------------------------
@dataclass
class OptimConfig:
    """The ``optim`` group: Adam for the generator and its learning-rate schedule."""

    lr: float = 1.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1.0e-9
    weight_decay: float = 0.0
    scheduler: str = "none"
    warmup_steps: int = 8000
    noam_factor: float = 1.0
    decay_steps: Optional[int] = None  # linear_warmup: the lr falls linearly to 0 at this step (null: stays)

    def __post_init__(self) -> None:
        found = _positive("optim.lr", self.lr) + _betas("optim.betas", self.betas)
        found += _at_least("optim.eps", self.eps, 0) + _at_least("optim.weight_decay", self.weight_decay, 0)
        found += _choice("optim.scheduler", self.scheduler, SCHEDULERS)
        if self.scheduler == "noam":
            found += _at_least("optim.warmup_steps", self.warmup_steps, 1)
            found += _positive("optim.noam_factor", self.noam_factor)
        if self.scheduler == "linear_warmup":
            found += _at_least("optim.warmup_steps", self.warmup_steps, 0)
            if self.decay_steps is not None and self.decay_steps <= self.warmup_steps:
                found.append(
                    f"optim.decay_steps={self.decay_steps} must be > optim.warmup_steps={self.warmup_steps} (or null)"
                )
        _raise_if("optim", found)


# -- data (types only: the data layer checks its values where it reads them) -----------------------
@dataclass
class VocabSettings:
    min_count: int = 1
    max_size: Optional[int] = None


@dataclass
class BuiltinSizes:
    seed: int = 0
    train_per_emotion: int = 24
    valid_per_emotion: int = 3
    test_per_emotion: int = 3


@dataclass
class DataConfig:
    """Keys every ``data`` group option has."""

    name: str = MISSING
    source: str = MISSING
    cache_dir: str = MISSING
    normalization: str = "moel"
    vocab: VocabSettings = field(default_factory=VocabSettings)
    max_context_len: int = 256
    max_target_len: int = 64
    max_emotion_words: int = 64
    batch_size: int = 16
    eval_batch_size: int = 32
    num_workers: int = 0
    bucketing: bool = True
    bucket_size_multiplier: int = 50
    # what each bucket is sorted by: context_reply (the generator's ids; every study here) or longest (of context,
    # reply and next utterance: pads the critics' input less, no faster on a CPU; docs/gpu.md)
    bucket_by: str = "context_reply"
    limit_examples: dict[str, int] = field(default_factory=dict)  # e.g. {train: 200, valid: 50}


@dataclass
class BuiltinDataConfig(DataConfig):
    """``data=builtin``: the project's demonstration corpus."""

    builtin: BuiltinSizes = field(default_factory=BuiltinSizes)


@dataclass
class EmpatheticDialoguesConfig(DataConfig):
    """``data=empathetic_dialogues``: the official release, read from ``root`` (downloaded if allowed)."""

    root: str = MISSING
    download: bool = True
    url: str = MISSING
    archive_sha256: Optional[str] = None
    download_timeout: float = 15.0
    download_retries: int = 2


# -- chat logging --------------------------------------------------------------------------------------
@dataclass
class ChatLogConfig:
    """``chat.log.*``: off by default; when on, each chat turn is written with personal data redacted.

    ``dir`` holds one JSONL file per pseudonymous session; records older than ``retention_days`` are deleted
    whenever the chat or ``python -m empdg.chat_logs`` starts (docs/privacy.md).
    """

    enabled: bool = False
    dir: str = "chat_logs"
    retention_days: float = 30.0

    def __post_init__(self) -> None:
        _raise_if("chat.log", _positive("chat.log.retention_days", self.retention_days))


# -- checks across groups, building from mappings, registration --------------------------------------
def run_problems(training: TrainingConfig, adversarial: AdversarialConfig) -> list[str]:
    """Settings each fine alone that together would train nothing, play against frozen critics, or measure nothing."""
    found = []
    budgets = training.budgets(with_critics=bool(adversarial.critic_names))
    if not any(budgets.values()):
        found.append(
            "every phase budget that runs is 0 (training.phases; the critic phases run only with critics): "
            "nothing would be trained"
        )
    if training.val_meaning == "true" and adversarial.report_batches == 0:
        found.append(
            "training.val_meaning=true scores the greedy replies of the critic report's validation batches, "
            "but adversarial.report_batches=0 decodes none: set it >= 1"
        )
    rounds = budgets.get("adversarial", 0)
    if rounds > 0 and adversarial.n_critic == 0 and adversarial.g_steps > 0:
        found.append(
            f"adversarial.n_critic=0 with critics and training.phases.adversarial={rounds}: the critics "
            "would never be trained during the adversarial phase (the generator would play against frozen "
            "critics); set adversarial.n_critic >= 1, or training.phases.adversarial=0"
        )
    return found


def typed(schema: type[T], values: Any, section: str) -> T:
    """``values`` (a mapping or config node) as a ``schema`` object, every rule checked.

    Unknown keys and wrong types are ``ValueError``s naming ``<section>.<key>``; impossible values
    raise :class:`InvalidSettings` from the dataclass itself.
    """
    if isinstance(values, DictConfig):  # detached from its root, an interpolation could not resolve
        values = OmegaConf.to_container(values, resolve=True)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)  # runs __post_init__
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        where = f"{section}.{key}" if key else section
        message = str(error).splitlines()[0]
        if type(error).__name__ == "ConfigKeyError":
            known = ", ".join(f.name for f in dataclasses.fields(schema))
            raise ValueError(f"unknown key {where} ({message}); known keys: {known}") from None
        raise ValueError(f"{where}: {message}") from None


def register_run_schemas(store: Any) -> None:
    """Store the schemas the YAML files name in their defaults lists."""
    store.store(group="schema/adversarial", name="default", node=AdversarialConfig)
    store.store(group="schema/training", name="default", node=TrainingConfig)
    store.store(group="schema/optim", name="default", node=OptimConfig)
    store.store(group="schema/data", name="builtin", node=BuiltinDataConfig)
    store.store(group="schema/data", name="empathetic_dialogues", node=EmpatheticDialoguesConfig)
    store.store(group="schema/chat_log", name="default", node=ChatLogConfig)
