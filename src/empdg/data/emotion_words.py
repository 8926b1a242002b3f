"""Fine-grained emotion resolution of EmpDG: which context tokens are emotion words.

EmpDG marks the words of the dialogue context that carry emotion (found in the NRC Emotion
Lexicon, EmoLex) and feeds them to its emotion-word encoder and discriminator.  The lexicon
file ships inside the ``nrclex`` package; we read the JSON directly so that no TextBlob or
NLTK corpus is ever loaded.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

#: English function words, written here because NLTK's stop-word corpus needs a download.
#: Includes the pieces that contraction expansion and Treebank tokenisation produce.
_STOPWORD_TEXT = """
    a about above after again against all almost also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each either
    else ever every few for from further get got had has have having he her here hers herself
    him himself his how however i if in into is it its itself just least less let like may me
    might more most much must my myself neither no nor not now of off often on once only or other
    others our ours ourselves out over own per quite rather really same shall she should since so
    some such than that the their theirs them themselves then there these they this those though
    through thus to too under until up upon us very was we well were what whatever when where
    whether which while who whom whose why will with within without would yet you your yours
    yourself yourselves one ok okay oh yes yeah cannot
    s t d m ll re ve n y ca wo sha ai gon wan na
    's 'm 're 've 'll 'd n't
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())


def _default_lexicon_path() -> Path:
    """Locate ``nrclex/data/nrc_en.json`` without importing (executing) the nrclex package."""
    spec = importlib.util.find_spec("nrclex")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nrclex package is not installed; pip install nrclex")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "nrc_en.json"
        if path.is_file():
            return path
    raise FileNotFoundError("nrclex is installed but nrclex/data/nrc_en.json is missing")


class EmotionLexicon:
    """Word -> affect categories (NRC EmoLex), with EmpDG's emotion-word rule."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else _default_lexicon_path()
        with self.path.open(encoding="utf-8") as handle:
            raw = json.load(handle)
        if not isinstance(raw, dict):
            raise ValueError(f"{self.path}: expected a JSON object word -> list of affects")
        self._affects: dict[str, tuple[str, ...]] = {
            str(word).lower(): tuple(affects) for word, affects in raw.items()
        }

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word.lower() in self._affects

    def __len__(self) -> int:
        return len(self._affects)

    def affects(self, word: str) -> tuple[str, ...]:
        """The lexicon's affect categories for ``word`` (empty when absent)."""
        return self._affects.get(word.lower(), ())

    def is_emotion_word(self, token: str) -> bool:
        """True for alphabetic, non-stop-word tokens found in the lexicon."""
        word = token.lower()
        return word.isalpha() and word not in STOPWORDS and word in self._affects

    def emotion_words(self, tokens: list[str]) -> list[str]:
        """The emotion words of ``tokens``, in order (repeats kept, as in EmpDG)."""
        return [tok for tok in tokens if self.is_emotion_word(tok)]

    def emotion_mask(self, tokens: list[str]) -> list[int]:
        """1 where the token is an emotion word, else 0; same length as ``tokens``."""
        return [int(self.is_emotion_word(tok)) for tok in tokens]


@lru_cache(maxsize=1)
def get_lexicon() -> EmotionLexicon:
    """The shared default lexicon, loaded once on first use."""
    return EmotionLexicon()
