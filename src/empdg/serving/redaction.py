"""Personal data out of chat text before it reaches disk: e-mails, phone numbers, URLs, cards, IP addresses, names.

Built on Microsoft Presidio's analyzer (``presidio-analyzer``, the ``privacy`` extra) with its pattern recognizers
only: e-mail, URL, IPv4/IPv6, card numbers (regex + Luhn checksum) and phone numbers (Google's libphonenumber via
``phonenumbers``, national formats of Presidio's regions and any international one). Presidio's person-name
recognizer needs a spaCy NER model that the package registry does not carry, so names come from
:class:`CuedNameRecognizer`: a capitalised name after a cue ("my name is", "call me", "my friend", "Mr.", ...).
A name without such a cue is not found (docs/privacy.md has the measured figures).

Every found span becomes ``[KIND]`` (``[EMAIL]``, ``[PHONE]``, ``[URL]``, ``[CARD]``, ``[IP]``, ``[NAME]``).
Nothing here touches the network: spaCy runs as a blank English tokenizer and the e-mail check reads
tldextract's bundled public-suffix snapshot instead of downloading the list.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from empdg.errors import ConfigError

#: Presidio's entity -> our kind; a span of kind ``k`` is written as ``[K]``
KIND_OF = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "URL": "url",
    "CREDIT_CARD": "card",
    "IP_ADDRESS": "ip",
    "PERSON": "name",
}
#: the kinds the benchmark measures and docs/privacy.md names, in that order
KINDS = tuple(KIND_OF.values())

_NAME = r"[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?"
_CUES = (
    r"(?i:my name is|my name's|name is|i am called|i'm called|call me|called|named|this is|signed|regards,?)",
    r"(?i:my|our|his|her|their)\s+(?i:friend|best friend|wife|husband|partner|boyfriend|girlfriend|fianc[ée]e?|son"
    r"|daughter|brother|sister|mom|mum|mother|dad|father|boss|coworker|co-worker|colleague|roommate|neighbou?r"
    r"|cousin|aunt|uncle|nephew|niece|grandma|grandpa|grandmother|grandfather|teacher|doctor|therapist|baby|kid"
    r"|dog|cat|puppy|kitten|ex)",
    r"(?:Mr|Mrs|Ms|Miss|Dr|Prof|Mx)\.?",
)
#: a cue, then one or two capitalised words (the name); the cue itself stays
_CUED_NAME = re.compile(rf"\b(?:{'|'.join(_CUES)}),?\s+({_NAME}(?:\s+{_NAME})?)\b")
_NON_SPACE = re.compile(r"\S*")
#: capitalised words after a cue that are not names ("my friend And I", "this is Amazing")
_NOT_NAMES = frozenset(
    re.findall(
        r"\w+",
        "I A An And The But So Or My It Is Was He She We They You This That What When Why How Where Who Not No Yes "
        "Oh Ok Okay Just Really Very Too Also Then Now Today Yesterday Tomorrow God Sir Madam",
    )
)


@dataclass(frozen=True)
class Finding:
    """One span of personal data: ``text[start:end]`` is of ``kind`` (one of :data:`KINDS`)."""

    kind: str
    start: int
    end: int


def _cued_name_recognizer() -> Any:
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    class CuedNameRecognizer(LocalRecognizer):
        """A person's name where a cue announces it; offline stand-in for Presidio's spaCy NER."""

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            found = []
            for match in _CUED_NAME.finditer(text):
                words = match.group(1).split()
                if words[0] in _NOT_NAMES:
                    continue
                if words[-1] in _NOT_NAMES:  # "my friend Sam And I": keep the name only
                    words = words[:-1]
                start = match.start(1)
                found.append(RecognizerResult("PERSON", start, start + len(" ".join(words)), 0.6))
            return found

    return CuedNameRecognizer(supported_entities=["PERSON"], name="CuedNameRecognizer")


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    """Presidio's engine with the pattern recognizers only, on a blank (offline) spaCy tokenizer."""
    # Presidio logs the words around a finding at DEBUG ("Context list is: ..."): user text must not reach a log
    for name in ("presidio-analyzer", "decision_process"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
    )

    class BlankEnglish(SpacyNlpEngine):
        def load(self) -> None:  # no NER model to download: names come from CuedNameRecognizer
            self.nlp = {"en": spacy.blank("en")}

    suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled snapshot: no download

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return suffixes(pattern_text).fqdn != ""

    engine = BlankEnglish()
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        OfflineEmailRecognizer(),
        PhoneRecognizer(),
        UrlRecognizer(),
        CreditCardRecognizer(),
        IpRecognizer(),
        _cued_name_recognizer(),
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def _url_end(text: str, end: int) -> int:
    """Presidio's URL pattern stops before a port or a query string: a URL runs on to the next space (less the
    sentence's closing punctuation)."""
    rest = _NON_SPACE.match(text, end).group()
    return end + len(rest.rstrip(".,;:!?)]}'\""))


def ready() -> None:
    """Build the analyzer now (seconds: spaCy and Presidio load), or say how to install it."""
    try:
        _analyzer()
    except ImportError as error:
        raise ConfigError(
            f"chat.log.enabled=true redacts with presidio-analyzer, which cannot be imported ({error}); "
            "install the privacy extra: pip install 'empdg[privacy]'"
        ) from None


def find(text: str) -> list[Finding]:
    """The personal data in ``text``, overlapping spans merged (the longer one's kind wins), in order."""
    if not text.strip():
        return []
    results = _analyzer().analyze(text=text, language="en", entities=list(KIND_OF))
    spans = sorted(
        ((r.start, _url_end(text, r.end) if r.entity_type == "URL" else r.end, KIND_OF[r.entity_type])
         for r in results if r.entity_type in KIND_OF),
        key=lambda s: (s[0], -(s[1] - s[0])),
    )  # fmt: skip
    merged: list[Finding] = []
    for start, end, kind in spans:
        if merged and start < merged[-1].end:  # inside or across the previous span: one placeholder
            last = merged[-1]
            merged[-1] = Finding(last.kind, last.start, max(last.end, end))
        else:
            merged.append(Finding(kind, start, end))
    return merged


def redact(text: str, findings: Iterable[Finding] | None = None) -> str:
    """``text`` with each span of personal data replaced by its ``[KIND]`` placeholder."""
    spans = find(text) if findings is None else list(findings)
    pieces, at = [], 0
    for finding in spans:
        pieces += [text[at : finding.start], f"[{finding.kind.upper()}]"]
        at = finding.end
    return "".join(pieces) + text[at:]
