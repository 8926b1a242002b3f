"""Hydra's composition errors (a misspelt option, an unknown key, a malformed override) as one line with a hint.

The commands print these lines (tests/e2e/test_user_errors.py); here, what each error becomes.
"""

from __future__ import annotations

import pytest

from empdg.config import compose
from empdg.config.hydra_errors import describe_compose_error

MODEL_OPTIONS = "emoprepend, empdg, hf_causal, hf_seq2seq, mime, moel, multi_trs, seq2seq, transformer"


def compose_error(*overrides: str) -> str | None:
    with pytest.raises(Exception) as caught:
        compose("train", overrides)
    return describe_compose_error(caught.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=empdgg", f"model=empdgg: no such option of the 'model' config group (did you mean model=empdg?); "
                         f"the options: {MODEL_OPTIONS}"),
        ("trainer=ddpp", "trainer=ddpp: no such option of the 'trainer' config group (did you mean trainer=ddp?); "
                         "the options: cpu, ddp, gpu"),
        ("optim=zzz", "optim=zzz: no such option of the 'optim' config group; the options: adam, finetune, noam"),
        ("modle.hidden_dim=8", "unknown key modle.hidden_dim (did you mean model.hidden_dim?)"),
        ("model.hidden_dimm=8", "unknown key model.hidden_dimm (did you mean model.hidden_dim?)"),
        ("data.bucketting=false", "unknown key data.bucketting (did you mean data.bucketing or data.bucket_by?)"),
        ("foo", "cannot read the override 'foo': missing EQUAL at '<EOF>' "
                "(write key=value, group=option, +key=value or ~key)"),
        ("~nothing", "Could not delete from config. 'nothing' does not exist."),
    ],
)  # fmt: skip
def test_each_composition_error_is_one_line_with_a_hint(override: str, expected: str) -> None:
    assert compose_error(override) == expected


def test_an_unknown_key_without_a_close_name_lists_the_keys_next_to_it() -> None:
    message = compose_error("model.zzz=1")
    assert message is not None and message.startswith("unknown key model.zzz; the keys of model: emb_dim, hidden_dim,")
    assert "\n" not in message


def test_a_wrong_type_names_the_override_and_the_problem() -> None:
    message = compose_error("model.hidden_dim=abc")
    assert message is not None and "model.hidden_dim=abc" in message and "could not be converted to Integer" in message
    assert "\n" not in message


def test_other_exceptions_are_not_composition_errors() -> None:
    assert describe_compose_error(ValueError("a bug")) is None
    assert describe_compose_error(KeyError("model")) is None
