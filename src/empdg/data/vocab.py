"""The project's vocabulary: fixed special-token ids, then words or a pretrained tokenizer's pieces.

Special ids are fixed (not data-dependent) so that model code can refer to ``PAD_ID``, ``LAB_ID`` and
friends as constants, and so that a saved checkpoint stays meaningful against any rebuilt vocabulary.
Ordering of ordinary tokens is by descending count then alphabetical, which makes the id assignment a
pure function of the data (the cache and checkpoints rely on that via :meth:`Vocab.fingerprint`).

Both kinds live here because one ``vocab.json`` format holds either and :meth:`Vocab.load` returns the
kind the file names.

:class:`SubwordVocab`: a pretrained model's own subword tokenizer behind the same interface.

Ids ``0..7`` stay the project's special tokens (``PAD_ID``, ``EOS_ID``, ... are constants everywhere);
tokenizer id ``k`` is project id ``k + 8``. The generator maps the specials onto its tokenizer's own
(pad, eos, separators) and back, so the data layer never needs to know them.

Text is tokenised one word at a time as ``" " + word``: the examples are already normalised word lists,
and word-aligned pieces let the word-level machinery (the emotion-word masks, the emotion words the
emotion encoder reads) mark every piece of a word. For byte-level BPE and SentencePiece tokenizers that
split on spaces this equals tokenising the whole line with a leading space.

Decoding detokenises with the tokenizer and re-tokenises with the project's normaliser, the way ED
references are tokenised, so Distinct-n and BLEU count the same kind of words for every model.

WordPiece (BERT) splits every punctuation mark off as a word of its own, so its pieces lose the
boundaries of words like ``'s``, ``n't`` or ``co-worker``; :func:`rejoin_wordpiece_text` puts them
back as ED text writes them (docs/pretrained.md has its measured effect on the real sample).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from empdg.data.file_schema import MB, invalid, load_json_bounded, validate

PAD, UNK, SOS, EOS = "[PAD]", "[UNK]", "[SOS]", "[EOS]"
CLS = "[CLS]"
LAB = "[LAB]"  # starts the emotion sequence fed to the emotion discriminator/encoder
SPK, LST = "[SPK]", "[LST]"  # dialogue-state tokens: speaker turn / listener turn

SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, SOS, EOS, CLS, LAB, SPK, LST)
PAD_ID, UNK_ID, SOS_ID, EOS_ID, CLS_ID, LAB_ID, SPK_ID, LST_ID = range(len(SPECIAL_TOKENS))

FORMAT_VERSION = 1
#: a word vocabulary is well under 1 MB, a pretrained tokenizer's tokenizer.json tens of MB at most
VOCAB_MAX_BYTES = 256 * MB
_VOCAB_MAX_DEPTH = 32  # a subword file nests its tokenizer as a string, so a word or subword file nests 2 levels


@functools.cache
def _file_schemas() -> tuple[Any, Any]:
    """The schemas of a word and of a subword ``vocab.json`` (pydantic is imported when a vocabulary is read)."""
    from typing import Annotated, Literal

    from pydantic import Field
    from typing_extensions import NotRequired, TypedDict

    from empdg.data.text import SCHEMES

    # functional syntax: under __future__ annotations the class syntax would leave these names unresolved
    word = TypedDict(  # noqa: UP013
        "word_vocab",
        {
            "format_version": Literal[FORMAT_VERSION],
            # the specials and at least one ordinary token, as Vocab.build writes them
            "tokens": Annotated[list[str], Field(min_length=len(SPECIAL_TOKENS) + 1)],
            "counts": NotRequired[dict[str, Annotated[int, Field(ge=1)]] | None],
            "fingerprint": NotRequired[str | None],
        },
    )
    subword = TypedDict(  # noqa: UP013
        "subword_vocab",
        {
            "format_version": Literal[FORMAT_VERSION],
            "kind": Literal["subword"],
            "tokenizer_json": str,
            "normalization": NotRequired[Literal[SCHEMES]],  # type: ignore[valid-type]
            "fingerprint": NotRequired[str | None],
        },
    )
    return word, subword


def _check_tokens(tokens: list[str], counts: dict[str, int] | None, path: Path) -> None:
    """What the schema cannot say: specials first, every token once, counts only for ordinary tokens."""
    for index, special in enumerate(SPECIAL_TOKENS):
        if tokens[index] != special:
            raise invalid(path, f"expected the special token {special!r}, found {tokens[index]!r}", f"tokens[{index}]")
    seen: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token in seen:
            raise invalid(path, f"{token!r} is also tokens[{seen[token]}]: every token must appear once",
                          f"tokens[{index}]")  # fmt: skip
        seen[token] = index
    unknown = [token for token in counts or {} if seen.get(token, 0) < len(SPECIAL_TOKENS)]
    if unknown:
        raise invalid(path, f"{unknown[0]!r} is not an ordinary token of the list", f"counts.{unknown[0]}")


class Vocab:
    """Bidirectional token <-> id map; ids ``0..7`` are always the special tokens.

    Word-level: one id per word. :class:`SubwordVocab` gives a pretrained
    tokenizer's pieces behind the same interface (``unit``, ``pieces``, ``turn_markers`` tell them apart).
    """

    unit = "word"  # what one id is: perplexity is per this unit
    turn_markers = False  # True: the context carries an [SPK]/[LST] id before every utterance

    def __init__(self, tokens: Sequence[str], counts: dict[str, int] | None = None) -> None:
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIAL_TOKENS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        self._itos: list[str] = tokens
        self._stoi: dict[str, int] = {tok: i for i, tok in enumerate(tokens)}
        self.counts: dict[str, int] = dict(counts or {})

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Count tokens and keep the frequent ones; ``max_size`` counts the specials too."""
        counter: Counter[str] = Counter()
        for tokens in token_lists:
            counter.update(tokens)
        for special in SPECIAL_TOKENS:
            counter.pop(special, None)
        if not counter:  # say so, rather than blame data.min_count for an empty training split
            raise ValueError("no tokens to build the vocabulary from: the train split is empty")
        kept = [(tok, n) for tok, n in counter.items() if n >= min_count]
        kept.sort(key=lambda item: (-item[1], item[0]))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIAL_TOKENS))]
        if not kept:
            raise ValueError(
                f"no token reached data.min_count={min_count} (max_size={max_size}); lower it or check the data"
            )
        return cls(list(SPECIAL_TOKENS) + [tok for tok, _ in kept], dict(kept))

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._itos == other._itos

    def __hash__(self) -> int:
        return hash(tuple(self._itos))

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, fingerprint={self.fingerprint()[:12]})"

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._itos)

    def token_to_id(self, token: str) -> int:
        return self._stoi.get(token, UNK_ID)

    def id_to_token(self, idx: int) -> str:
        return self._itos[idx]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self._stoi.get(tok, UNK_ID) for tok in tokens]

    def metric_name(self, name: str) -> str:
        """A per-token metric's name for this unit: ``ppl`` for words, ``subword_ppl`` for subword pieces."""
        return name if self.unit == "word" else f"{self.unit}_{name}"

    def pieces(self, word: str) -> list[int]:
        """The ids one word becomes: itself (or UNK) here, several subword pieces in a SubwordVocab."""
        return [self._stoi.get(word, UNK_ID)]

    def spec(self) -> dict | None:
        """What a checkpoint stores besides the token list to rebuild this vocabulary (nothing here)."""
        return None

    def decode(self, ids: Iterable[int], strip_special: bool = True, stop_at_eos: bool = True) -> list[str]:
        """Ids -> tokens; by default stops at the first EOS and drops specials except UNK."""
        out: list[str] = []
        for idx in ids:
            idx = int(idx)
            if stop_at_eos and idx == EOS_ID:
                break
            if strip_special and idx < len(SPECIAL_TOKENS) and idx != UNK_ID:
                continue
            out.append(self._itos[idx])
        return out

    def fingerprint(self) -> str:
        """sha256 of the token list: identifies the id assignment for caches and checkpoints."""
        payload = "\n".join(self._itos).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()

    def emotion_token_ids(self, lexicon_predicate: Callable[[str], bool]) -> list[int]:
        """Ids of ordinary tokens the predicate marks as emotion words (specials never count)."""
        return [i for i, tok in enumerate(self._itos) if i >= len(SPECIAL_TOKENS) and lexicon_predicate(tok)]

    def save(self, path: Path | str) -> None:
        data = {
            "format_version": FORMAT_VERSION,
            "tokens": self._itos,
            "counts": self.counts,
            "fingerprint": self.fingerprint(),
        }
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=0), encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> Vocab:
        """The vocabulary :meth:`save` wrote; any other content (too large, too deep, wrong types, missing or
        repeated specials, duplicate tokens, an edited file) is an :class:`InvalidFileError` naming the field."""
        path = Path(path)
        data = load_json_bounded(path, max_bytes=VOCAB_MAX_BYTES, max_depth=_VOCAB_MAX_DEPTH, what="vocabulary")
        if not isinstance(data, dict):
            raise invalid(path, f"expected a JSON object, found {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise invalid(path, f"vocabulary format version {version!r}, expected {FORMAT_VERSION}")
        word_schema, subword_schema = _file_schemas()
        if data.get("kind") is not None:  # a pretrained model's tokenizer (SubwordVocab)
            validate(data, subword_schema, path=path)
            try:
                vocab: Vocab = SubwordVocab(data["tokenizer_json"], data.get("normalization", "moel"))
            except ImportError:
                raise
            except Exception as error:  # the tokenizers library's own parse error
                raise invalid(
                    path, f"not a tokenizer the tokenizers library reads: {error}", "tokenizer_json"
                ) from None
            if data.get("fingerprint") not in (None, vocab.fingerprint()):
                raise invalid(path, "does not match its tokenizer (file edited?)", "fingerprint")
            return vocab
        validate(data, word_schema, path=path)
        _check_tokens(data["tokens"], data.get("counts"), path)
        vocab = cls(data["tokens"], data.get("counts"))
        if data.get("fingerprint") not in (None, vocab.fingerprint()):
            raise invalid(path, "does not match its token list (file edited?)", "fingerprint")
        return vocab


#: project id of tokenizer id 0
OFFSET = len(SPECIAL_TOKENS)


def _load_tokenizer(tokenizer_json: str):
    try:
        from tokenizers import Tokenizer
    except ImportError as error:  # pragma: no cover - the hf extra is part of the dev install
        raise ImportError("pretrained generators need the Hugging Face extras: pip install 'empdg[hf]'") from error
    tokenizer = Tokenizer.from_str(tokenizer_json)
    # one word's pieces, never padded or cut: some tokenizer.json files pad every encoding to a fixed length
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


#: WordPiece detokenised text -> ED text: clitics, hyphenated words, numbers ("' s" -> "'s", "co - worker" ->
#: "co-worker", "1, 000" -> "1,000"); the word-level metrics then re-tokenise it as they do the references
_WORDPIECE_REJOIN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<=\w) ' (?=(?:s|ll|re|ve|d|m)\b)"), " '"),
    (re.compile(r"\bn ' t\b"), "n't"),
    (re.compile(r"(?<=\w) - (?=\w)"), "-"),
    (re.compile(r"- -"), "--"),
    (re.compile(r"(?<=\d) ?([,.:]) (?=\d)"), r"\1"),
)


def rejoin_wordpiece_text(text: str) -> str:
    """Undo the spaces WordPiece's punctuation split leaves inside ED words (see the module docstring)."""
    for pattern, replacement in _WORDPIECE_REJOIN:
        text = pattern.sub(replacement, text)
    return text


class SubwordVocab(Vocab):
    """Project specials, then every token of a pretrained ``tokenizers`` tokenizer (ids shifted by 8)."""

    unit = "subword"
    turn_markers = True  # utterances are separated by [SPK]/[LST] ids (the model maps them to its separators)

    def __init__(self, tokenizer_json: str, normalization: str = "moel") -> None:
        self.tokenizer_json = tokenizer_json
        self.normalization = normalization
        self._tokenizer = _load_tokenizer(tokenizer_json)
        # WordPiece pieces carry no spaces: punctuation loses its word (text) and word starts look alike
        # inside a word (emotion_token_ids)
        self._wordpiece = type(self._tokenizer.model).__name__ == "WordPiece"
        # the tokenizer's own unknown piece (WordPiece's [UNK] for an emoji) is the project's UNK: its shifted
        # id is a special the generator may never produce, so a gold reply holding it had an infinite NLL
        unk_token = getattr(self._tokenizer.model, "unk_token", None)
        self._model_unk = self._tokenizer.token_to_id(unk_token) if unk_token else None
        size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        pieces = []
        for index in range(size):
            piece = self._tokenizer.id_to_token(index)
            if piece is None:  # a hole in the id range
                piece = f"<empdg-unused-{index}>"
            pieces.append(f"hf:{piece}" if piece in SPECIAL_TOKENS else piece)
        super().__init__(list(SPECIAL_TOKENS) + pieces)
        self._word_pieces: dict[str, list[int]] = {}

    @classmethod
    def from_pretrained(cls, folder: str | Path, normalization: str = "moel") -> SubwordVocab:
        """The tokenizer saved in a Hugging Face model folder (its ``tokenizer.json``)."""
        path = Path(folder) / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: model.pretrained must be a folder with a fast tokenizer (tokenizer.json), "
                "as save_pretrained() writes it"
            )
        return cls(path.read_text(encoding="utf-8"), normalization)

    # -- text -> ids -----------------------------------------------------------------------
    def pieces(self, word: str) -> list[int]:
        """The project ids of ``word`` as the tokenizer splits ``" " + word``."""
        ids = self._word_pieces.get(word)
        if ids is None:
            encoding = self._tokenizer.encode(" " + word, add_special_tokens=False)
            ids = [UNK_ID if index == self._model_unk else index + OFFSET for index in encoding.ids]
            self._word_pieces[word] = ids
        return ids

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [index for word in tokens for index in self.pieces(word)]

    def token_to_id(self, token: str) -> int:
        """The id of a one-piece word (or of a raw tokenizer piece); multi-piece words give UNK."""
        pieces = self.pieces(token)
        if len(pieces) == 1:
            return pieces[0]
        return super().token_to_id(token)

    # -- ids -> text -----------------------------------------------------------------------
    def text(self, ids: Iterable[int], stop_at_eos: bool = True) -> str:
        """The tokenizer's detokenised text of the ordinary ids (specials are dropped)."""
        kept = []
        for index in ids:
            index = int(index)
            if stop_at_eos and index == EOS_ID:
                break
            if OFFSET <= index < len(self):
                kept.append(index - OFFSET)
        text = self._tokenizer.decode(kept, skip_special_tokens=True)
        return rejoin_wordpiece_text(text) if self._wordpiece else text

    def decode(self, ids: Iterable[int], strip_special: bool = True, stop_at_eos: bool = True) -> list[str]:
        """Detokenise, then re-tokenise the text as ED references are (the project's normaliser)."""
        from empdg.data.text import normalize

        return normalize(self.text(ids, stop_at_eos=stop_at_eos), self.normalization)

    def emotion_token_ids(self, lexicon_predicate: Callable[[str], bool]) -> list[int]:
        """Pieces that are a whole emotion word on their own (``" happy"`` is; ``"happ"`` is not).

        A byte-level BPE piece that starts a word decodes with its leading space; a WordPiece piece has no
        space, so there the piece must be what the word alone encodes to (``"happy"``, not ``"##happy"``).
        """
        found = []
        for index in range(OFFSET, len(self)):
            text = self._tokenizer.decode([index - OFFSET], skip_special_tokens=True)
            word = text[1:] if text.startswith(" ") else text
            if not (word.isalpha() and lexicon_predicate(word.lower())):
                continue
            if text.startswith(" ") or (self._wordpiece and self.pieces(word) == [index]):
                found.append(index)
        return found

    # -- identity and files ----------------------------------------------------------------
    def fingerprint(self) -> str:
        payload = (self.normalization + "\n" + self.tokenizer_json).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()

    def spec(self) -> dict[str, str]:
        """What a checkpoint stores to rebuild this vocabulary without the original folder."""
        return {"kind": "subword", "tokenizer_json": self.tokenizer_json, "normalization": self.normalization}

    def save(self, path: Path | str) -> None:
        data = {"format_version": FORMAT_VERSION, **self.spec(), "fingerprint": self.fingerprint()}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def vocab_from_spec(spec: dict | None, tokens: list[str]) -> Vocab:
    """The vocabulary a checkpoint describes: subword when it stored a tokenizer, else its word list."""
    if spec and spec.get("kind") == "subword":
        vocab = SubwordVocab(spec["tokenizer_json"], spec.get("normalization", "moel"))
        if tokens and list(tokens) != vocab.tokens:
            raise ValueError("the checkpoint's tokenizer does not match its stored token list (file edited?)")
        return vocab
    return Vocab(tokens)
