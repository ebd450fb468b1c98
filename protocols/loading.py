"""Reading user files without hanging or exhausting memory: the one loader every entry uses.

Protocol files, run configs, pattern files, fitted responses and the run directory's own
files all come through here, so each gets the same caps before any parsing starts:

* regular files only: a FIFO would block `open`, a device such as /dev/zero would fill memory;
  the file is opened non-blocking and checked again on the open descriptor;
* a size cap (`MAX_DOCUMENT_BYTES` for YAML/JSON/TOML documents, `MAX_DATA_BYTES` for data);
* a nesting cap (`MAX_DEPTH`): deep nesting makes the recursive parsers and validators raise
  RecursionError;
* a YAML alias-expansion cap (`MAX_YAML_NODES`): a "billion laughs" file is a few hundred
  bytes whose aliases expand to billions of nodes; it is refused from the parser's event
  stream (no recursion, nothing expanded) before any object is built.

Every refusal is an `InputError` in one line naming the file and the cap.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import yaml

from protocols.errors import InputError

#: Largest YAML, JSON or TOML document (protocol files and run configs are a few kB).
MAX_DOCUMENT_BYTES = 1 << 20
#: Largest data file (pattern grids and arrays, characterization.json).
MAX_DATA_BYTES = 64 << 20
#: Deepest nesting of mappings and lists in a document.
MAX_DEPTH = 32
#: Most nodes a YAML document may hold once its aliases are expanded.
MAX_YAML_NODES = 100_000

STRUCTURED_SUFFIXES = (".yaml", ".yml", ".json", ".toml")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)` on one line, cut to `limit` characters (user text is echoed this way)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_bytes(path: str | Path, source: str, max_bytes: int = MAX_DATA_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or a one-line `InputError`."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{source}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{source}: not a regular file ({_kind(st.st_mode)}); give a file on disk")
    if st.st_size > max_bytes:
        raise InputError(
            f"{source}: {st.st_size} bytes is larger than the {_mib(max_bytes)} this file may have"
        )
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        # Checked again on the descriptor: the path may have been swapped since the stat.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{source}: not a regular file; give a file on disk")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise InputError(f"{source}: larger than the {_mib(max_bytes)} this file may have")
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def read_text(path: str | Path, source: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """A capped regular file decoded as UTF-8, or a one-line `InputError`."""
    data = read_bytes(path, source, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte {exc.start})") from None


# -- nesting and alias expansion ------------------------------------------------------------
def check_yaml(text: str, source: str) -> None:
    """Refuse a YAML text nested deeper than MAX_DEPTH or expanding to more than
    MAX_YAML_NODES nodes, from the event stream alone (no recursion, nothing built).

    Syntax errors are left to the real parse, whose message says where.
    """
    sizes: dict[str, int] = {}  # anchor -> expanded node count of its node
    stack: list[list[Any]] = []  # [anchor, nodes so far] per open collection
    total = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([event.anchor, 1])
                if len(stack) > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise InputError(
                        f"{source}: line {line}: nested deeper than {MAX_DEPTH} levels"
                    )
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, n = stack.pop()
            elif isinstance(event, yaml.ScalarEvent):
                anchor, n = event.anchor, 1
            elif isinstance(event, yaml.AliasEvent):
                anchor, n = None, sizes.get(str(event.anchor), 1)
            else:
                continue
            if anchor is not None:
                sizes[str(anchor)] = n
            if stack:
                stack[-1][1] += n
            else:
                total += n
            if n > MAX_YAML_NODES or total > MAX_YAML_NODES:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise InputError(
                    f"{source}: line {line}: its aliases expand to more than "
                    f"{MAX_YAML_NODES} nodes (a 'billion laughs' document?)"
                )
    except yaml.YAMLError:
        return


def check_depth(data: Any, source: str) -> None:
    """Refuse parsed data nested deeper than MAX_DEPTH (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth >= MAX_DEPTH:
            raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    pass


def _yaml_duplicates(text: str, source: str) -> None:
    """InputError if one mapping of a YAML text names a key twice (composed, not built;
    `check_yaml` has already bounded the graph this walks)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return
    stack = [root]
    seen_nodes: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))  # an alias points at a node already checked
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise InputError(
                            f"{source}: line {key.start_mark.line + 1}: key "
                            f"{short(key.value)} appears twice in one mapping"
                        )
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def parse_document(text: str, source: str, suffix: str) -> Any:
    """Plain data from YAML, JSON or TOML text, with every cap; one-line errors.

    A key written twice in one mapping is refused (YAML and JSON keep the last value
    silently, so a limit written twice would take the value the reader did not notice).
    """
    suffix = suffix.lower()
    try:
        if suffix == ".json":
            try:
                data = json.loads(text, object_pairs_hook=_no_duplicates)
            except _DuplicateKey as exc:
                raise InputError(
                    f"{source}: key {short(exc.args[0])} appears twice in one mapping"
                ) from None
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{source}: line {exc.lineno}, column {exc.colno}: JSON syntax error: {exc.msg}"
                ) from None
        elif suffix == ".toml":
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"{source}: TOML syntax error: {exc}") from None
        elif suffix in (".yaml", ".yml"):
            check_yaml(text, source)
            _yaml_duplicates(text, source)
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
                problem = getattr(exc, "problem", None) or str(exc)
                raise InputError(
                    " ".join(f"{source}: {where}YAML syntax error: {problem}".split())
                ) from None
        else:
            raise InputError(
                f"{source}: unknown extension {suffix!r}; use {', '.join(STRUCTURED_SUFFIXES)}"
            )
    except RecursionError:
        raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    check_depth(data, source)
    return data


def load_document(
    path: str | Path,
    source: str,
    suffixes: tuple[str, ...] = STRUCTURED_SUFFIXES,
) -> Any:
    """Plain data from a YAML/JSON/TOML file (by extension) with every cap applied."""
    text = read_text(path, source)
    suffix = Path(path).suffix.lower()
    if suffix not in suffixes:
        raise InputError(
            f"{source}: unknown extension {short(Path(path).suffix)}; use {', '.join(suffixes)}"
        )
    return parse_document(text, source, suffix)


def open_new_file(path: str | Path, source: str) -> int:
    """A descriptor on a file created here (never an existing file, FIFO or device)."""
    try:
        return os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666
        )
    except FileExistsError:
        raise InputError(
            f"{source}: {path} already exists; choose a new file name (nothing is overwritten)"
        ) from None
    except OSError as exc:
        raise InputError(f"{source}: cannot write {path}: {exc.strerror or exc}") from None


def remove_quietly(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


__all__ = [
    "MAX_DATA_BYTES",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_YAML_NODES",
    "check_depth",
    "check_yaml",
    "load_document",
    "open_new_file",
    "parse_document",
    "read_bytes",
    "read_text",
    "short",
]
