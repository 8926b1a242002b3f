"""The one place that rewrites a stored run's settings to today's keys: checkpoints' hyper-parameters and
old MLflow params.

A checkpoint stores ``config_version`` beside its hyper-parameters (absent: version 1, every run before the
key existed). :func:`migrate_hparams` rewrites a version-1 mapping to :data:`CONFIG_VERSION`, each rule
saying what the old keys meant in the new ones (docs/critics.md, "Migrating old runs"):

- ``model.<name>_critic`` (the oldest runs) and ``adversarial.<name>_critic`` -> ``adversarial.critics``;
- ``relaxation`` (an alias) -> ``estimator``; ``mismatched_negatives: false`` -> ``mismatch_weight: 0``;
- ``w_adv_mode`` / ``w_adv_share`` / ``w_adv`` / ``same_batch_control`` -> the one ``w_adv``;
- ``input_norm``: dropped (the soft estimator now always rescales to unit length);
- ``critic.fusion`` / ``critic.word_match`` absent: the behaviour before those keys (``sum``, ``false``);
- keys whose behaviour became fixed (``sample_temperature``, ``greedy_negatives``, ...) are dropped at their
  old default and refused otherwise: such a run cannot be rebuilt by today's code.

Keys it does not name pass through: a version-1 key absent from the mapping meant its default then, which
every rule below applies, so the rewritten mapping means what the old code read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from empdg.errors import UserError

#: the settings format new checkpoints store as ``config_version``
CONFIG_VERSION = 2

_CRITICS = ("semantic", "emotion")  # the critics version 1 knew, each a switch ``<name>_critic`` (default true)

#: version-1 keys whose behaviour is now fixed: their only value today (a run with another cannot be rebuilt)
_FIXED = {
    "sample_temperature": 1.0,
    "greedy_negatives": True,
    "critic_grad_to_encoders": False,
    "critic_betas": [0.5, 0.9],
    "clip_value": 0.01,
}
_FIXED_CRITIC = {"match_scale": 30.0, "match_idf_power": 2.0}
#: version 1's defaults of the keys the rules below read (what the old code used when a key was absent)
_V1_DEFAULTS = {"w_adv_mode": "relative", "w_adv_share": 0.2, "w_adv": 0.01, "estimator": "gumbel"}


class UnmigratableRunError(UserError, ValueError):
    """A stored run used a setting today's code cannot express."""


def migrate_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``hyper_parameters`` (``model``, ``adversarial``, ...) at :data:`CONFIG_VERSION`.

    A mapping already at that version comes back as it was (a copy); an unknown newer version is refused.
    """
    version = int(hparams.get("config_version") or 1)
    if version > CONFIG_VERSION:
        raise UnmigratableRunError(
            f"these settings are config_version {version}, newer than this empdg's {CONFIG_VERSION}: upgrade empdg"
        )
    migrated = dict(hparams)
    if version == 1:
        model = dict(hparams.get("model") or {})
        adversarial = dict(hparams.get("adversarial") or {})
        for name in _CRITICS:  # runs before the adversarial group kept the switches in model
            if f"{name}_critic" in model:
                adversarial.setdefault(f"{name}_critic", bool(model.pop(f"{name}_critic")))
        migrated["model"] = model
        migrated["adversarial"] = adversarial_v1_to_v2(adversarial)
    migrated["config_version"] = CONFIG_VERSION
    return migrated


def adversarial_v1_to_v2(old: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 ``adversarial`` section in today's keys (see the module's docstring for each rule)."""
    new = dict(old)
    new["critics"] = [name for name in _CRITICS if _flag(new.pop(f"{name}_critic", True))]
    relaxation = new.pop("relaxation", None)
    if relaxation not in (None, "None", "null"):  # the alias won when set
        new["estimator"] = relaxation
    if not _flag(new.pop("mismatched_negatives", True)):
        new["mismatch_weight"] = 0.0
    new["w_adv"] = _weight(
        str(new.pop("w_adv_mode", _V1_DEFAULTS["w_adv_mode"])),
        new.pop("w_adv_share", _V1_DEFAULTS["w_adv_share"]),
        new.get("w_adv", _V1_DEFAULTS["w_adv"]),
        _flag(new.pop("same_batch_control", False)),
    )
    input_norm = str(new.pop("input_norm", "none"))
    estimator = str(new.get("estimator", _V1_DEFAULTS["estimator"]))
    # soft with input_norm=none stays soft, which now rescales (plain soft was broken: docs/critics.md)
    if input_norm == "unit" and estimator != "soft":
        raise UnmigratableRunError(
            f"this run used adversarial.input_norm=unit with estimator={estimator}: today only the soft estimator "
            "rescales its inputs, so the run cannot be rebuilt"
        )
    for key, value in _FIXED.items():
        _drop_fixed(new, key, value, "adversarial.")
    critic = dict(new.get("critic") or {})
    for key, value in _FIXED_CRITIC.items():
        _drop_fixed(critic, key, value, "adversarial.critic.")
    critic.setdefault("fusion", "sum")  # what a run stored before the key existed played with
    critic.setdefault("word_match", False)
    new["critic"] = critic
    return new


def migrate_flat_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """MLflow params of a run (flat ``adversarial.x`` / ``model.x`` keys, values as logged text) in today's
    keys; a run logged at version 1 has no ``config_version`` param."""
    nested: dict[str, Any] = {}
    rest = {}
    for key, value in params.items():
        section, dot, name = str(key).partition(".")
        if dot and section in ("model", "adversarial"):
            _set(nested.setdefault(section, {}), name.split("."), _read_text(value))
        else:
            rest[key] = value
    if "config_version" in params:
        nested["config_version"] = params["config_version"]
    migrated = migrate_hparams(nested)
    flat = dict(rest)
    for section in ("model", "adversarial"):
        flat.update(_flatten(migrated.get(section) or {}, section + "."))
    return flat


def _weight(mode: str, share: Any, absolute: Any, control: bool) -> str:
    if control:
        return "0"
    if mode == "absolute":
        return f"abs:{float(absolute):g}" if float(absolute) else "0"
    return f"{float(share):g}"


def _drop_fixed(section: dict[str, Any], key: str, fixed: Any, prefix: str) -> None:
    if key not in section:
        return
    value = section.pop(key)
    if isinstance(value, (list, tuple)):
        same = list(value) == fixed
    else:  # a logged param is text: "[0.5, 0.9]", "1.0"
        same = _read_text(value) == fixed or str(value).replace(" ", "") == str(fixed).replace(" ", "")
    if not same:
        raise UnmigratableRunError(
            f"this run used {prefix}{key}={value!r}; the key is gone and its behaviour is fixed at {fixed!r} "
            "(docs/critics.md, 'Migrating old runs'), so the run cannot be rebuilt by this empdg"
        )


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


def _read_text(value: Any) -> Any:
    """A logged param's text as the value it was (``"True"`` -> True, ``"0.5"`` -> 0.5); other values as they are."""
    if not isinstance(value, str):
        return value
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return float(value) if any(c in value for c in ".eE") else int(value)
    except ValueError:
        return value


def _set(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def _flatten(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
