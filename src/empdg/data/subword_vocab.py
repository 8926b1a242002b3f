"""A pretrained model's own subword tokenizer behind the project's vocabulary interface.

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
back as ED text writes them (on the real sample's 8,706 train and valid utterances, re-tokenising the
detokenised pieces gives the original words for all but 86, against 652 without it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from empdg.data.vocab import EOS_ID, FORMAT_VERSION, SPECIAL_TOKENS, Vocab

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
            ids = [index + OFFSET for index in encoding.ids]
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
