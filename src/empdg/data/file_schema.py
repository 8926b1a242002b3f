"""One mechanism to validate every file the project reads back, before anything uses its content.

Caches, run configs, vocabularies, prediction files, sweep outputs and checkpoints are read back from
disk, where anyone (or a crash) may have left something else. Rather than one check per crash, every
reader goes through these three steps, and each one raises
:class:`empdg.data.errors.InvalidFileError` ``(path, problem)`` -- a ``DataError``, so a command prints one
``error: <file>: <problem>`` line and exits with status 2:

1. :func:`read_bytes_bounded` / :func:`read_text_bounded`: the size is checked *before* reading
   (``max_bytes``; the message names the setting that raises the limit), and text must be UTF-8 (the
   message names the byte offset).
2. :func:`load_json_bounded`: the nesting depth is checked *without recursion* (strings are dropped,
   then innermost ``[]``/``{}`` pairs are removed one level per pass, at most ``max_depth`` passes, all
   in C: 10-15 ms per MB) before ``json.loads``, whose recursive parser would otherwise raise
   ``RecursionError`` on a crafted file.
3. :func:`validate`: the parsed value is checked against a declarative schema: any type pydantic 2 can
   validate (``TypedDict``, dataclass, ``list[...]``, ``Annotated[int, Field(ge=0, le=31)]``,
   ``Literal``, :func:`fixed_array` for a JSON array of fixed shape, ...), in strict mode (a string is
   never turned into a number, a float never into an int).
   (On Python < 3.12 pydantic needs ``typing_extensions.TypedDict``, not ``typing.TypedDict``.)
   The message names the field, e.g. ``splits.train.examples[3][1]: Input should be less than or equal
   to 31``. Cross-field rules (an index below the size of a table) are checked by the caller after this
   step, raising :func:`invalid` with the field's path.

Typical use::

    data = load_json_bounded(path, max_bytes=64 * MB, what="vocabulary")
    vocab_file = validate(data, VocabFile, path=path)  # VocabFile: a typing_extensions.TypedDict

For line-based files (JSONL) read the text once (:func:`read_text_bounded`), then parse each line with
``path=`` and ``line=``: ``load_json_bounded(text_of_line_3, path=path, line=3)`` (messages: ``file:3: ...``).

A reader that can recover (the preprocessing cache) catches ``InvalidFileError``, warns with its
message and rebuilds; any other reader lets it propagate to the command.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from empdg.data.errors import InvalidFileError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MB",
    "InvalidFileError",
    "check_json_depth",
    "decode_utf8",
    "fixed_array",
    "invalid",
    "join_where",
    "load_json_bounded",
    "load_yaml_bounded",
    "mb_to_bytes",
    "paused_gc",
    "read_bytes_bounded",
    "read_text_bounded",
    "validate",
]

T = TypeVar("T")

MB = 1024 * 1024
#: deeper than any file the project writes (the preprocessing cache nests 5 levels), far below Python's
#: recursion limit
DEFAULT_MAX_DEPTH = 64

_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the byte it escapes (\" must not end a string)
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')  # the bytes bytes.translate deletes
_STRING = re.compile(rb'"[^"]*"')  # once only quotes and brackets are left
_INNER_PAIR = re.compile(rb"\[\]|\{\}")


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while the containers of a parsed file are built: they hold no cycles,
    and with a large payload alive every automatic collection re-scans all of it (on the real sample's cache,
    json.loads + validation took 2-3x longer with it running)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def mb_to_bytes(megabytes: float) -> int:
    """A ``*_max_file_mb`` setting in bytes."""
    return int(float(megabytes) * MB)


def join_where(where: str, field: str) -> str:
    """``"splits.train"`` + ``"tokens"`` -> ``"splits.train.tokens"``; ``"[3]"`` is appended as it is."""
    if not where:
        return field
    if not field:
        return where
    return where + field if field.startswith("[") else f"{where}.{field}"


def invalid(path: Path | str, problem: str, where: str = "", line: int | None = None) -> InvalidFileError:
    """The error for ``problem`` at field ``where`` (of line ``line``) of ``path`` (raise it)."""
    return InvalidFileError(path, f"{where}: {problem}" if where else problem, line)


def _amount(n_bytes: int) -> str:
    return f"{n_bytes / MB:.1f} MB" if n_bytes >= MB // 10 else f"{n_bytes} bytes"


def _size_problem(size: int, max_bytes: int, what: str, setting: str | None) -> str:
    limit = f"{max_bytes / MB:g} MB" if max_bytes >= MB // 10 else f"{max_bytes} bytes"
    hint = f"; raise {setting} if the {what} is really that large" if setting else ""
    return f"{what} is {_amount(size)}, over the limit of {limit}{hint}"


def read_bytes_bounded(
    path: Path | str, *, max_bytes: int | None, what: str = "file", setting: str | None = None
) -> bytes:
    """The bytes of ``path``, refused (before reading) when larger than ``max_bytes`` (None: no limit).

    ``setting`` names the option that raises the limit (e.g. ``evaluate.max_file_mb``); the message says
    so. ``OSError`` (missing, unreadable file) is left to the caller, which knows what to advise.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        if max_bytes is not None:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise InvalidFileError(path, _size_problem(size, max_bytes, what, setting))
            data = handle.read(max_bytes + 1)  # a file growing meanwhile (or a pipe) is still bounded
            if len(data) > max_bytes:
                raise InvalidFileError(path, _size_problem(len(data), max_bytes, what, setting))
            return data
        return handle.read()


def decode_utf8(data: bytes, path: Path | str, what: str = "file") -> str:
    """``data`` as UTF-8 text, or an error naming ``path`` and the first bad byte's offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InvalidFileError(
            path, f"{what} is not UTF-8 text (byte {err.start}, line {line}: {err.reason}); save it as UTF-8"
        ) from None


def read_text_bounded(
    path: Path | str, *, max_bytes: int | None, what: str = "file", setting: str | None = None
) -> str:
    """The UTF-8 text of ``path`` with the size guard of :func:`read_bytes_bounded`."""
    return decode_utf8(read_bytes_bounded(path, max_bytes=max_bytes, what=what, setting=setting), path, what)


def check_json_depth(
    data: bytes | str, *, max_depth: int, path: Path | str, where: str = "", line: int | None = None
) -> None:
    """Raise when the JSON text nests arrays/objects deeper than ``max_depth``; linear, no recursion.

    Malformed text (unbalanced brackets) passes: ``json.loads`` reports it, and cannot recurse further
    than the balanced part allows, which has been checked.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)
    # keep quotes and brackets (translate runs in C, unlike a regex over every string); then drop adjacent
    # quote pairs (an empty string, or the end of one string and the start of the next: no bracket between
    # them is lost either way), so only strings holding brackets are left for the regex
    structure = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    brackets = _STRING.sub(b"", structure)
    for _ in range(max_depth):
        if not brackets:
            return
        reduced = _INNER_PAIR.sub(b"", brackets)
        if len(reduced) == len(brackets):
            return  # unbalanced: json.loads says where
        brackets = reduced
    # what is left after max_depth levels: a balanced pair here is a level too deep
    if _INNER_PAIR.search(brackets):
        raise invalid(path, f"nested more than {max_depth} levels deep", where, line)


def load_json_bounded(
    source: Path | str | bytes,
    *,
    max_bytes: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    path: Path | str | None = None,
    where: str = "",
    line: int | None = None,
    what: str = "file",
    setting: str | None = None,
) -> Any:
    """Parse JSON from a file (``source`` a ``Path``) or from text already read (``str``/``bytes``).

    Text already read needs ``path=`` (the file it came from, for messages) and may give ``line=`` (its
    line number in a JSONL file: messages read ``file:3: problem``) or ``where=`` (a field path). Size
    (``max_bytes``, None: no limit), UTF-8, depth and syntax problems raise :class:`InvalidFileError`; the
    types and values are :func:`validate`'s job.
    """
    if isinstance(source, Path):
        path = source if path is None else path
        data: bytes | str = read_bytes_bounded(source, max_bytes=max_bytes, what=what, setting=setting)
    else:
        if path is None:
            raise TypeError("load_json_bounded(text) needs path= (the file the text came from)")
        data = source
        size = len(data)  # characters for str: near enough for a guard
        if max_bytes is not None and size > max_bytes:
            raise invalid(path, _size_problem(size, max_bytes, what, setting), where, line)
    check_json_depth(data, max_depth=max_depth, path=path, where=where, line=line)
    if isinstance(data, bytes):
        data = decode_utf8(data, path, what)
    try:
        with paused_gc():
            return json.loads(data)
    except json.JSONDecodeError as err:
        at = f"line {err.lineno} column {err.colno}" if line is None else f"column {err.colno}"
        raise invalid(path, f"not valid JSON ({err.msg} at {at})", where, line) from None
    except RecursionError:  # unbalanced and deep ("[[[[..."), passed to json.loads: deeper than the recursion limit
        raise invalid(path, f"nested more than {max_depth} levels deep", where, line) from None


_ADAPTERS: dict[Hashable, Any] = {}


def _adapter(schema: Any) -> Any:
    from pydantic import TypeAdapter

    if isinstance(schema, TypeAdapter):
        return schema
    try:
        cached = _ADAPTERS.get(schema)
    except TypeError:  # unhashable schema (rare): build each time
        return TypeAdapter(schema)
    if cached is None:
        cached = _ADAPTERS[schema] = TypeAdapter(schema)
    return cached


def _list_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def fixed_array(*items: Any) -> Any:
    """Schema of a JSON array with one type per position (``[id, emotion, ...]``); strict mode alone would
    accept only a Python tuple, never the list ``json.loads`` gives."""
    from typing import Annotated

    from pydantic import BeforeValidator

    return Annotated[tuple[items], BeforeValidator(_list_to_tuple)]


def _format_loc(loc: tuple[Any, ...], where: str) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out = f"{out}[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "tagged-union")):
            out = join_where(out, part)
    return ": ".join(part for part in (where, out) if part)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate(value: Any, schema: Any, *, path: Path | str, where: str = "", line: int | None = None) -> Any:
    """``value`` checked against ``schema`` (a type pydantic validates, or a ``TypeAdapter``), strictly.

    Returns the validated value (pydantic's copy: dataclasses come back as instances). The error names
    the first wrong field (after ``where``, on line ``line``: ``"p.jsonl:3: context[0]: Input should be a valid
    string (found 5)"``), what was expected and what was found, and how many other fields are wrong.
    """
    from pydantic import ValidationError

    try:
        with paused_gc():
            return _adapter(schema).validate_python(value, strict=True)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        first = errors[0]
        field = _format_loc(tuple(first.get("loc", ())), where)
        problem = f"{first['msg']} (found {_describe(first.get('input'))})"
        if len(errors) > 1:
            problem += f"; {len(errors) - 1} more problem(s)"
        raise invalid(path, problem, field, line) from None


#: YAML nodes a run config may expand to (aliases counted at every use): a run's config.yaml has ~300
DEFAULT_MAX_YAML_NODES = 100_000


def _expanded_nodes(root: Any, path: Path | str, max_nodes: int, max_depth: int) -> None:
    """Refuse a YAML node graph whose tree, with every alias expanded, exceeds ``max_nodes`` or ``max_depth``.

    An alias is one node in the graph but a copy in the tree that OmegaConf and every reader walk: five lines
    of nested aliases expand to millions of nodes. Sizes are memoised per node, so the count costs the graph's
    size, not the tree's; a node that contains itself (``&a [*a]``) is refused.
    """
    import yaml

    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            else:
                children = list(node.value)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            if sizes[key] > max_nodes:
                raise InvalidFileError(
                    path, f"expands to more than {max_nodes} YAML nodes (nested aliases); not a file this project wrote"
                )
            if depths[key] > max_depth:
                raise InvalidFileError(path, f"nested more than {max_depth} levels deep")
            continue
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key], depths[key] = 1, 1
            continue
        if key in open_nodes:
            raise InvalidFileError(path, "holds a YAML alias that contains itself; not a file this project wrote")
        open_nodes.add(key)
        stack.append((node, True))
        children = (
            [child for pair in node.value for child in pair] if isinstance(node, yaml.MappingNode) else node.value
        )
        stack.extend((child, False) for child in children if id(child) not in sizes)


def load_yaml_bounded(
    path: Path | str,
    *,
    max_bytes: int | None = 16 * MB,
    max_nodes: int = DEFAULT_MAX_YAML_NODES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    what: str = "YAML file",
    setting: str | None = None,
) -> Any:
    """Parse a YAML file as OmegaConf does (its safe loader), with size, alias expansion and depth bounded.

    Tags that build objects (``!!python/object:...``) and malformed YAML raise :class:`InvalidFileError`
    naming the file, like every bound here; the value's types are :func:`validate`'s job.
    """
    import yaml
    from omegaconf._utils import get_yaml_loader

    path = Path(path)
    text = read_text_bounded(path, max_bytes=max_bytes, what=what, setting=setting)
    loader = get_yaml_loader()(text)
    loader.name = path.name  # marks say 'in "config.yaml", line 3' instead of "<unicode string>"
    try:
        try:
            node = loader.get_single_node()  # the node graph: aliases are shared, not copied, so this is cheap
        except RecursionError:  # PyYAML's composer recurses once per nesting level
            raise InvalidFileError(path, "nested too deeply") from None
        if node is None:
            return None
        _expanded_nodes(node, path, max_nodes, max_depth)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InvalidFileError(path, f"not a valid {what}: {problem}{at}") from None
    finally:
        loader.dispose()
