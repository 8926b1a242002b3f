"""How well the chat log's redactor finds personal data, and how much ordinary text it wrongly removes.

    python -m empdg.benchmarks.redaction [DATA_ROOT] [n=200] [seed=0]
        # DATA_ROOT default ../shared/data/ed-real-sample (from here): its listener replies

Recall: a seeded generator writes ``n`` sentences per kind, each with one item of personal data in one of many
formats (e-mail addresses; phone numbers of Presidio's eight regions in national, international, E.164, dotted and
dashed forms and of other countries in international form; URLs with and without scheme, ports, paths, queries;
Luhn-valid Visa, Mastercard, Amex and Discover numbers, plain, spaced and dashed; IPv4, full and compressed IPv6;
names after a cue such as "my name is" or "my friend", and names without a cue). An item counts as found when the
redactor's spans cover every character of it. Wrong redactions: the share of the real replies' words that a span
touches (ED's crowd-workers rarely wrote personal data, so this is an upper bound; the redacted words are listed).
"""

from __future__ import annotations

import ipaddress
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from empdg.benchmarks.common import REAL_SAMPLE
from empdg.serving.redaction import KINDS, find

FIRST = [
    "Sarah",
    "James",
    "Priya",
    "Mohammed",
    "Olga",
    "Kenji",
    "Lucia",
    "Tom",
    "Aisha",
    "Pierre",
    "Ingrid",
    "Diego",
    "Mei",
    "Liam",
    "Fatima",
    "Noah",
]
LAST = [
    "Connor",
    "Smith",
    "Patel",
    "Haddad",
    "Ivanova",
    "Tanaka",
    "Rossi",
    "Baker",
    "Okafor",
    "Dubois",
    "Larsen",
    "Garcia",
    "Chen",
    "Murphy",
    "Khan",
    "Wells",
]
TLDS = ["com", "org", "net", "io", "de", "co.uk", "fr", "edu", "info", "com.br", "ca", "in"]
WORDS = "blue river home mail shop news cloud my team sunny north".split()  # noqa: SIM905
#: Presidio's phone regions (national formats are read for these) and others (international formats only)
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")
OTHER_REGIONS = ("AU", "JP", "ES", "IT", "NL", "MX", "ZA", "SE")


def _email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower()
    local = rng.choice([f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first[0]}_{last}", f"{first}+chat"])
    domain = rng.choice([rng.choice(WORDS), f"{rng.choice(WORDS)}-{rng.choice(WORDS)}", f"mail.{rng.choice(WORDS)}"])
    address = f"{local}@{domain}.{rng.choice(TLDS)}"
    return address.upper() if rng.random() < 0.1 else address


def _phone(rng: random.Random) -> str:
    import phonenumbers
    from phonenumbers import PhoneNumberFormat, PhoneNumberType

    national = rng.random() < 0.6
    region = rng.choice(PHONE_REGIONS if national else PHONE_REGIONS + OTHER_REGIONS)
    kind = rng.choice([PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE])
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    digits = phonenumbers.national_significant_number(example)  # with Italy's leading zero
    for _ in range(1000):  # the example number with its last four digits drawn at random, kept when still valid
        number = phonenumbers.parse(f"+{example.country_code}{digits[:-4]}{rng.randint(0, 9999):04d}")
        if phonenumbers.is_valid_number(number):
            break
    else:
        raise RuntimeError(f"no valid {region} number like {digits}")
    if national:
        text = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    else:
        text = phonenumbers.format_number(number, rng.choice([PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164]))
    separator = rng.choice([" ", " ", "-", "."])
    return text.replace(" ", separator) if separator != " " and "(" not in text else text


def _url(rng: random.Random) -> str:
    host = rng.choice([f"www.{rng.choice(WORDS)}", rng.choice(WORDS), f"{rng.choice(WORDS)}.{rng.choice(WORDS)}"])
    url = f"{rng.choice(['https://', 'http://', '', 'https://'])}{host}{rng.choice(WORDS)}.{rng.choice(TLDS)}"
    if url.startswith(("http", "www")) or rng.random() < 0.5:
        url += rng.choice(["", ":8080", ""]) + rng.choice(["", "/", f"/{rng.choice(WORDS)}/{rng.randint(1, 999)}"])
        url += rng.choice(["", f"?id={rng.randint(1, 9999)}&ref={rng.choice(WORDS)}"])
    return url


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, digit in enumerate(reversed(body)):  # the check digit will sit right of these: double every other one
        d = int(digit) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice(
        [("4", 16), (str(rng.randint(51, 55)), 16), (rng.choice(["34", "37"]), 15), ("6011", 16)]
    )
    number = _luhn_complete(prefix, length, rng)
    groups = [number[:4], number[4:10], number[10:]] if length == 15 else [number[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice(["", " ", "-"]).join(groups)


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return str(ipaddress.IPv4Address(rng.randint(1, 223) << 24 | rng.getrandbits(24)))
    address = ipaddress.IPv6Address((0x2001 << 112) | rng.getrandbits(96))
    return address.exploded if rng.random() < 0.3 else address.compressed


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}" if rng.random() < 0.5 else rng.choice(FIRST)


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "email": _email, "phone": _phone, "url": _url, "card": _card, "ip": _ip, "name": _name,
}  # fmt: skip
TEMPLATES = {
    "any": ["you can reach me at {x} if you want.", "It is {x}, thanks!", "({x})", "{x}", "ok so {x} is mine"],
    "name": [
        "my name is {x} and I feel lonely.", "Hi, I'm called {x}.", "My friend {x} stopped talking to me.",
        "my wife {x} left last week", "I told Dr. {x} about it.", "call me {x} please",
    ],
    "name without a cue": ["{x} said I was not good enough.", "I went to the beach with {x} yesterday.",
                           "Yesterday {x} and I had a fight."],
}  # fmt: skip


def corpus(n: int, seed: int) -> list[tuple[str, str, str]]:
    """``(kind, sentence, item)`` rows: ``n`` per kind, and ``n`` names without a cue (kind ``name without a cue``)."""
    rng = random.Random(seed)
    rows = []
    for kind in (*KINDS, "name without a cue"):
        make = GENERATORS["name" if kind.startswith("name") else kind]
        templates = TEMPLATES.get(kind, TEMPLATES["any"])
        for _ in range(n):
            item = make(rng)
            rows.append((kind, rng.choice(templates).format(x=item), item))
    return rows


def covered(sentence: str, item: str) -> bool:
    """Every character of ``item`` (its first place in ``sentence``) is inside a span the redactor found."""
    start = sentence.index(item)
    spans = find(sentence)
    return all(any(f.start <= i < f.end for f in spans) for i in range(start, start + len(item)))


def recall(rows: list[tuple[str, str, str]]) -> tuple[dict[str, float], dict[str, list[str]]]:
    found: Counter = Counter()
    total: Counter = Counter()
    missed: dict[str, list[str]] = {}
    for kind, sentence, item in rows:
        total[kind] += 1
        if covered(sentence, item):
            found[kind] += 1
        else:
            missed.setdefault(kind, []).append(item)
    return {kind: found[kind] / total[kind] for kind in total}, missed


def wrongly_redacted(replies: list[str]) -> tuple[int, int, Counter]:
    """(words touched by a span, all words, the touched words with their kind) over ``replies``."""
    touched, words, examples = 0, 0, Counter()
    for reply in replies:
        spans = find(reply)
        at = 0
        for word in reply.split():
            start = reply.index(word, at)
            at = start + len(word)
            words += 1
            hit = next((f for f in spans if f.start < at and start < f.end), None)
            if hit is not None:
                touched += 1
                examples[(hit.kind, word)] += 1
    return touched, words, examples


def ed_replies(root: Path) -> list[str]:
    from empdg.data.ed_csv import load_ed_splits

    splits, _ = load_ed_splits(root)
    return [u for conversations in splits.values() for c in conversations for u in c.utterances[1::2]]


def main(argv: list[str]) -> None:
    settings = dict(a.split("=", 1) for a in argv if "=" in a)
    paths = [a for a in argv if "=" not in a]
    n, seed = int(settings.get("n", 200)), int(settings.get("seed", 0))
    root = Path(paths[0]) if paths else REAL_SAMPLE
    start = time.perf_counter()
    rows = corpus(n, seed)
    rates, missed = recall(rows)
    print(f"recall on a generated corpus ({n} sentences per kind, seed {seed}):")
    for kind, rate in rates.items():
        shown = f"; missed e.g. {missed[kind][:3]}" if kind in missed else ""
        print(f"  {kind:<20} {rate:7.1%}{shown}")
    replies = ed_replies(root)
    touched, words, examples = wrongly_redacted(replies)
    print(f"real replies ({root}): {len(replies)} replies, {words} words, {touched} redacted = {touched / words:.3%}")
    for (kind, word), count in examples.most_common(30):
        print(f"  {count:>4} x {kind}: {word!r}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
