"""Pattern sets: the built-in 16 letters, user pattern files, and seeded corruption.

Patterns are ±1 arrays of shape (K, N) with a display shape (H, W), H * W = N. User files
are either a text grid (`#` on, `.` off, a blank line between patterns, an optional
`[name]` line before each) or a `.npy` array of shape (K, H, W) or (K, N) holding ±1 or
0/1. Anything else is refused with one line naming the file and the line (or index).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from hil.network.font import BUILTIN_LETTERS, LETTERS26_TEXT
from protocols.errors import InputError
from protocols.loading import MAX_DATA_BYTES, read_bytes, short

Array = NDArray[np.float64]

#: Most units (pixels per pattern) a network may have: W is N x N and the array N x 2N.
MAX_UNITS = 1024
#: Most patterns a set may hold (far above the capacity of an N <= MAX_UNITS network).
MAX_PATTERNS = 1024

ON, OFF = "#", "."


@dataclass(frozen=True)
class PatternSet:
    """K bipolar patterns of N = H * W pixels, with names for tables and figures."""

    patterns: Array
    names: tuple[str, ...]
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        k, n = self.patterns.shape
        if len(self.names) != k or self.shape[0] * self.shape[1] != n:
            raise ValueError("names/shape do not match the pattern array")

    @property
    def count(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def size(self) -> int:
        return int(self.patterns.shape[1])

    def images(self) -> Array:
        """The patterns as (K, H, W) images."""
        return self.patterns.reshape(self.count, *self.shape)

    def subset(self, names: tuple[str, ...] | list[str]) -> PatternSet:
        """The patterns with these names, in the order given."""
        missing = [name for name in names if name not in self.names]
        if missing:
            raise InputError(f"no pattern named {missing[0]!r} in the set")
        idx = [self.names.index(name) for name in names]
        return PatternSet(patterns=self.patterns[idx], names=tuple(names), shape=self.shape)

    def correlation(self) -> Array:
        """Pearson correlation matrix between patterns (the paper's Fig. 2, bottom)."""
        P = self.patterns - self.patterns.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(P, axis=1)
        norm[norm == 0.0] = 1.0
        P = P / norm[:, None]
        return np.clip(P @ P.T, -1.0, 1.0)


def parse_text(text: str, source: str = "<text>") -> PatternSet:
    """Parse the text-grid format; errors name `source` and the 1-based line."""
    grids: list[list[str]] = []
    names: list[str] = []
    starts: list[int] = []
    current: list[str] = []
    pending_name: tuple[str, int] | None = None

    def close_grid() -> None:
        nonlocal current, pending_name
        if current:
            check_size(len(grids) + 1, len(current) * len(current[0]), f"{source}:{starts[-1]}")
            grids.append(current)
            names.append(pending_name[0] if pending_name else f"p{len(names)}")
            pending_name = None
            current = []

    lines = text.splitlines()
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if not line:
            close_grid()
            continue
        if line.startswith("["):
            if current:
                raise InputError(
                    f"{source}:{lineno}: name line {short(line)} inside a pattern "
                    "(put a blank line before it)"
                )
            if pending_name is not None:
                raise InputError(
                    f"{source}:{lineno}: two name lines in a row "
                    f"(previous at line {pending_name[1]})"
                )
            if not line.endswith("]") or len(line) < 3:
                raise InputError(
                    f"{source}:{lineno}: malformed name line {short(line)} (use [name])"
                )
            name = line[1:-1].strip()
            if not name:
                raise InputError(f"{source}:{lineno}: empty pattern name")
            if name in names:
                raise InputError(f"{source}:{lineno}: duplicate pattern name {short(name)}")
            pending_name = (name, lineno)
            continue
        for col, ch in enumerate(line, start=1):
            if ch not in (ON, OFF):
                raise InputError(
                    f"{source}:{lineno}: stray character {ch!r} at column {col} "
                    f"(allowed: '{ON}' on, '{OFF}' off)"
                )
        if len(line) > MAX_UNITS:
            raise InputError(
                f"{source}:{lineno}: row of {len(line)} pixels; a pattern may have at most "
                f"{MAX_UNITS} pixels"
            )
        if current and len(line) != len(current[0]):
            raise InputError(
                f"{source}:{lineno}: row has {len(line)} pixels, the rows above have "
                f"{len(current[0])}"
            )
        if not current:
            starts.append(lineno)
        elif (len(current) + 1) * len(line) > MAX_UNITS:
            check_size(len(grids) + 1, (len(current) + 1) * len(line), f"{source}:{lineno}")
        current.append(line)
    if pending_name is not None and not current:
        raise InputError(f"{source}:{pending_name[1]}: name [{pending_name[0]}] has no grid")
    close_grid()
    if not grids:
        raise InputError(f"{source}:1: no patterns found (empty file)")
    h, w = len(grids[0]), len(grids[0][0])
    for grid, start, name in zip(grids, starts, names, strict=True):
        if (len(grid), len(grid[0])) != (h, w):
            raise InputError(
                f"{source}:{start}: pattern {short(name)} is {len(grid)}x{len(grid[0])}, "
                f"the first pattern is {h}x{w}"
            )
    P = np.array([[1.0 if ch == ON else -1.0 for row in grid for ch in row] for grid in grids])
    return PatternSet(patterns=P, names=tuple(names), shape=(h, w))


def check_size(count: int, units: int, where: str) -> None:
    """Refuse a pattern set too large to train (before any array is built)."""
    if units > MAX_UNITS:
        raise InputError(
            f"{where}: patterns of {units} pixels; at most {MAX_UNITS} (the network's W is "
            f"N x N and the array N x 2N)"
        )
    if count > MAX_PATTERNS:
        raise InputError(f"{where}: more than {MAX_PATTERNS} patterns")


def _load_npy(path: Path) -> PatternSet:
    raw = read_bytes(path, str(path), MAX_DATA_BYTES)
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        header = (
            np.lib.format.read_array_header_1_0(buf)
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0(buf)
        )
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    shape, _, dtype = header
    if dtype.kind == "c":
        raise InputError(f"{path}: dtype {dtype} is complex; patterns are real (±1 or 0/1)")
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: dtype {dtype} is not numeric")
    if len(shape) not in (2, 3):
        raise InputError(f"{path}: shape {shape} is not (K, H, W) or (K, N)")
    check_size(int(shape[0]), math.prod(int(d) for d in shape[1:]), str(path))
    buf.seek(0)
    try:
        arr = np.load(buf, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.ndim == 3:
        k, h, w = arr.shape
    else:
        k, n = arr.shape
        side = math.isqrt(n)
        h, w = (side, side) if side * side == n else (1, n)
    if arr.size == 0 or k == 0:
        raise InputError(f"{path}: shape {arr.shape} holds no patterns")
    flat = arr.reshape(k, h * w).astype(np.float64)
    bad = ~np.isfinite(flat)
    if bad.any():
        idx = np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape)
        raise InputError(f"{path}: non-finite value at index {tuple(int(i) for i in idx)}")
    values = set(np.unique(flat).tolist())
    if values <= {-1.0, 1.0}:
        P = flat
    elif values <= {0.0, 1.0}:
        P = 2.0 * flat - 1.0
    else:
        odd = np.flatnonzero(~np.isin(flat, (-1.0, 1.0)))[0]
        idx = np.unravel_index(int(odd), arr.shape)
        raise InputError(
            f"{path}: value {float(flat.ravel()[odd])!r} at index {tuple(int(i) for i in idx)} "
            "(allowed: ±1, or 0/1)"
        )
    names = tuple(f"p{i}" for i in range(k))
    return PatternSet(patterns=P, names=names, shape=(h, w))


def load_patterns(path: str | Path) -> PatternSet:
    """Load a pattern file: `.npy` arrays, anything else as a text grid.

    Read through `protocols.loading` (regular files only, size cap); at most MAX_PATTERNS
    patterns of at most MAX_UNITS pixels, refused before any array is built.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such pattern file")
    if path.suffix.lower() == ".npy":
        return _load_npy(path)
    data = read_bytes(path, str(path), MAX_DATA_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not a UTF-8 text grid ({exc.reason} at byte {exc.start})"
        ) from None
    return parse_text(text, str(path))


def letters26() -> PatternSet:
    """The 26-letter 10 x 10 font (`hil.network.font`) the built-in set is drawn from."""
    return parse_text(LETTERS26_TEXT, "<26-letter font>")


def builtin_patterns() -> PatternSet:
    """The built-in 16 letters: the least correlated 16 of the font (`hil.network.font`)."""
    return letters26().subset(BUILTIN_LETTERS)


def corrupt(patterns: Array, p: float, rng: np.random.Generator) -> Array:
    """Flip each pixel independently with probability p."""
    if not 0.0 <= p <= 1.0:
        raise InputError(f"corruption probability {p} is outside [0, 1]")
    P = np.asarray(patterns, dtype=np.float64)
    return np.where(rng.random(P.shape) < p, -P, P)


def test_set(
    patterns: Array, samples: int, p: float, rng: np.random.Generator
) -> tuple[Array, NDArray[np.intp]]:
    """`samples` corrupted copies of every pattern, grouped by class, and their labels."""
    P = np.asarray(patterns, dtype=np.float64)
    labels = np.repeat(np.arange(P.shape[0]), samples)
    return corrupt(P[labels], p, rng), labels


test_set.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# --- the 32-unit set: a network that fits a 32 x 32 array ------------------------------------

# Eight digits, 0-7, four pixels wide and eight tall (N = 32). With one differential pair per
# unordered pair of units (no diagonal) the network needs 32 x 31 = 992 devices, so it trains
# on one 32 x 32 board (ArC ONE, ArC TWO). Strokes are one pixel wide; any two digits differ
# in at least four pixels (13 on average). docs/in-situ.md shows what the paper's protocol
# reaches on it.
GLYPHS32_TEXT = """\
[0]
.##.
#..#
#..#
#..#
#..#
#..#
#..#
.##.

[1]
..#.
.##.
#.#.
..#.
..#.
..#.
..#.
####

[2]
.##.
#..#
...#
..#.
.#..
#...
#...
####

[3]
###.
...#
...#
.##.
...#
...#
...#
###.

[4]
#..#
#..#
#..#
####
...#
...#
...#
...#

[5]
####
#...
#...
###.
...#
...#
#..#
.##.

[6]
.##.
#...
#...
###.
#..#
#..#
#..#
.##.

[7]
####
...#
...#
..#.
..#.
.#..
.#..
.#..
"""


def _glyphs32() -> PatternSet:
    return parse_text(GLYPHS32_TEXT, "<built-in glyphs32>")


#: Built-in pattern sets by name; a run config names one as `builtin:<name>`.
BUILTIN_SETS: dict[str, tuple[Callable[[], PatternSet], str]] = {
    "letters16": (builtin_patterns, "the 16 least correlated 10 x 10 capital letters (N = 100)"),
    "glyphs32": (_glyphs32, "8 digits 0-7 on a 4 x 8 grid (N = 32)"),
}
BUILTIN_PREFIX = "builtin:"


def builtin_set(name: str) -> PatternSet:
    """A built-in pattern set by name (`letters16`, `glyphs32`)."""
    try:
        load, _ = BUILTIN_SETS[name]
    except KeyError:
        raise InputError(
            f"unknown built-in pattern set {name!r}; choose one of {', '.join(BUILTIN_SETS)}"
        ) from None
    return load()


def patterns_from_spec(spec: str | None) -> PatternSet:
    """None: the built-in 16 letters; `builtin:<name>`: a built-in set; else a pattern file."""
    if spec is None:
        return builtin_patterns()
    if spec.startswith(BUILTIN_PREFIX):
        return builtin_set(spec[len(BUILTIN_PREFIX) :])
    return load_patterns(spec)
