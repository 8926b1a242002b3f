"""Text normalisation as in the EmpatheticDialogues literature (MoEL, EmpDG).

Published outputs are lower-cased, contraction-expanded and Treebank-tokenised; normalising our
data the same way keeps BLEU / Distinct-n comparable with the papers.  Everything here works
offline: no NLTK data package (punkt, stopwords) is needed.
"""

from __future__ import annotations

import re

from nltk.tokenize.destructive import NLTKWordTokenizer

COMMA_TOKEN = "_comma_"

#: Contraction schemes accepted by :func:`expand_contractions` and :func:`normalize`.
SCHEMES: tuple[str, ...] = ("full", "moel")

# Irregular forms first: a generic rule would turn "won't" into "wo not".
_IRREGULAR: dict[str, str] = {
    "won't": "will not",
    "can't": "can not",
    "cannot": "can not",
    "shan't": "shall not",
    "ain't": "is not",
    "let's": "let us",
    "y'all": "you all",
    "ma'am": "madam",
}
# "'s" is only expanded after pronouns/adverbs; after nouns it is a possessive ("mom's car").
_IS_HOSTS = ("it", "that", "what", "there", "here", "he", "she", "who", "where", "how", "when", "why")
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (r"n't", " not"),
    (r"'re", " are"),
    (r"'ve", " have"),
    (r"'ll", " will"),
    (r"'d", " would"),
    (r"'m", " am"),
)
# Words MoEL's preprocessing expanded; the published EmpDG/MoEL outputs keep every other
# contraction as split tokens ("she 's", "i 'll", "have n't").
_MOEL_WORDS: tuple[str, ...] = (
    "it's", "don't", "doesn't", "didn't", "you'd", "you're", "you'll", "i'm", "they're", "that's",
    "what's", "couldn't", "i've", "we've", "can't", "i'd", "aren't", "isn't", "wasn't", "weren't",
    "won't", "there's", "there're",
)


def _word(alternatives: list[str] | tuple[str, ...]) -> str:
    """A regex matching any of ``alternatives`` as a whole word (apostrophes count as inside)."""
    body = "|".join(re.escape(a) for a in sorted(alternatives, key=len, reverse=True))
    return rf"(?<![\w'])(?:{body})(?![\w'])"


_IRREGULAR_RE = re.compile(_word(list(_IRREGULAR)))
_IS_RE = re.compile(rf"(?<![\w'])({'|'.join(_IS_HOSTS)})'s(?![\w'])")
_SUFFIX_RES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"(?<=[a-z]){re.escape(suffix)}(?![\w'])"), repl) for suffix, repl in _SUFFIXES
)
_APOSTROPHES_RE = re.compile("[\u2019\u2018\u02bc\u2032`]")
_MOEL_RE = re.compile(_word(_MOEL_WORDS))
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")
_WHITESPACE_RE = re.compile(r"\s+")

_TOKENIZER = NLTKWordTokenizer()


def restore_commas(text: str) -> str:
    """Undo the ED CSV escaping of commas (``_comma_`` -> ``,``)."""
    return text.replace(COMMA_TOKEN, ",")


def _expand_full(text: str) -> str:
    text = _IRREGULAR_RE.sub(lambda m: _IRREGULAR[m.group(0)], text)
    text = _IS_RE.sub(r"\1 is", text)
    for pattern, repl in _SUFFIX_RES:
        text = pattern.sub(repl, text)
    return text


_MOEL_TABLE: dict[str, str] = {word: _expand_full(word) for word in _MOEL_WORDS}


def expand_contractions(text: str, scheme: str = "full") -> str:
    """Expand English contractions in lower-cased ``text``.

    ``scheme="full"`` expands every contraction it knows; ``scheme="moel"`` expands only the
    words MoEL/EmpDG expanded, which reproduces the tokens of the published outputs exactly.
    Curly apostrophes are treated as straight ones.
    """
    text = _APOSTROPHES_RE.sub("'", text)
    if scheme == "full":
        return _expand_full(text)
    if scheme == "moel":
        return _MOEL_RE.sub(lambda m: _MOEL_TABLE[m.group(0)], text)
    raise ValueError(f"unknown contraction scheme {scheme!r}; expected one of {SCHEMES}")


def split_sentences(text: str) -> list[str]:
    """Split after ``.``, ``!`` or ``?`` followed by whitespace (no punkt model needed)."""
    return [s for s in _SENTENCE_END_RE.split(text) if s and not s.isspace()]


def tokenize(text: str) -> list[str]:
    """Treebank word tokens, sentence by sentence so that mid-text periods are split off."""
    tokens: list[str] = []
    for sentence in split_sentences(text):
        tokens.extend('"' if tok in ("``", "''") else tok for tok in _TOKENIZER.tokenize(sentence))
    return tokens


def normalize(text: str, scheme: str = "full") -> list[str]:
    """Raw ED utterance -> tokens: restore commas, lower-case, expand contractions, tokenize."""
    text = _WHITESPACE_RE.sub(" ", restore_commas(text)).strip().lower()
    return tokenize(expand_contractions(text, scheme))
