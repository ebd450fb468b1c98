"""Pattern files: the text grid and .npy loaders, every malformed case, and corruption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hil.network.patterns import (
    PatternSet,
    builtin_patterns,
    corrupt,
    load_patterns,
    parse_text,
    test_set,
)
from protocols.errors import InputError

GOOD = """\
[bar]
##.
...

[dot]
.#.
.#.
"""


def load_patterns_text(text: str) -> PatternSet:
    return parse_text(text, "<test>")


def write(tmp_path: Path, text: str, name: str = "p.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_text_grid_round_trip(tmp_path: Path) -> None:
    ps = load_patterns(write(tmp_path, GOOD))
    assert ps.names == ("bar", "dot")
    assert ps.shape == (2, 3)
    np.testing.assert_array_equal(ps.patterns[0], [1, 1, -1, -1, -1, -1])
    np.testing.assert_array_equal(ps.images()[1], [[-1, 1, -1], [-1, 1, -1]])


def test_names_are_optional_and_extra_blank_lines_are_fine(tmp_path: Path) -> None:
    ps = load_patterns(write(tmp_path, "\n\n#.\n.#\n\n\n\n.#\n#.  \n\n"))
    assert ps.names == ("p0", "p1")
    np.testing.assert_array_equal(ps.patterns[1], [-1, 1, 1, -1])


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "empty file"),
        ("\n\n  \n", 1, "empty file"),
        ("#.\n#x\n", 2, "stray character 'x' at column 2"),
        ("#.\n#.#\n", 2, "row has 3 pixels"),
        ("#.\n#.\n\n#.#\n#.#\n", 4, "is 2x3, the first pattern is 2x2"),
        ("#.\n#.\n\n#.\n", 4, "is 1x2"),
        ("[a]\n#.\n[b]\n#.\n", 3, "inside a pattern"),
        ("[a]\n[b]\n#.\n", 2, "two name lines"),
        ("[a\n#.\n", 1, "malformed name line"),
        ("[ ]\n#.\n", 1, "empty pattern name"),
        ("[a]\n#.\n\n[a]\n.#\n", 4, "duplicate pattern name 'a'"),
        ("#.\n\n[orphan]\n", 3, "has no grid"),
    ],
)
def test_malformed_text_names_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_patterns(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ")
    assert fragment in message
    assert "\n" not in message


def test_non_utf8_text_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.txt"
    path.write_bytes(b"#.\n\xff\xfe\n")
    with pytest.raises(InputError, match=r"bin\.txt: not a UTF-8 text grid"):
        load_patterns(path)
    with pytest.raises(InputError, match="no such pattern file"):
        load_patterns(tmp_path / "missing.txt")


def test_npy_shapes_and_encodings(tmp_path: Path) -> None:
    imgs = np.array([[[1, -1], [-1, 1]], [[1, 1], [-1, -1]]], dtype=np.int8)
    path = tmp_path / "a.npy"
    np.save(path, imgs)
    ps = load_patterns(path)
    assert ps.shape == (2, 2)
    np.testing.assert_array_equal(ps.images(), imgs)

    np.save(path, np.array([[0, 1, 1, 0, 1, 0]], dtype=float))  # 0/1, N not a square
    ps = load_patterns(path)
    assert ps.shape == (1, 6)
    np.testing.assert_array_equal(ps.patterns[0], [-1, 1, 1, -1, 1, -1])


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.array([[1.0, np.nan], [1.0, -1.0]]), "non-finite value at index (0, 1)"),
        (np.array([[1.0, 0.5], [1.0, -1.0]]), "value 0.5 at index (0, 1)"),
        (np.array([[1.0, 0.0], [-1.0, 1.0]]), "value 0.0 at index (0, 1)"),
        (np.ones(4), "shape (4,) is not (K, H, W) or (K, N)"),
        (np.ones((2, 2, 2, 2)), "is not (K, H, W) or (K, N)"),
        (np.ones((0, 4)), "holds no patterns"),
        (np.array([["a", "b"]]), "is not numeric"),
    ],
)
def test_malformed_npy_is_one_line_naming_the_file(
    tmp_path: Path, array: np.ndarray, fragment: str
) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(InputError) as info:
        load_patterns(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_npy_that_is_not_npy(tmp_path: Path) -> None:
    path = write(tmp_path, "#.\n", "fake.npy")
    with pytest.raises(InputError, match=r"fake\.npy: not a readable \.npy array"):
        load_patterns(path)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj\.npy"):
        load_patterns(tmp_path / "obj.npy")


def test_builtin_set_is_sixteen_correlated_but_distinct_letters() -> None:
    ps = builtin_patterns()
    assert ps.count == 16 and ps.shape == (10, 10)
    assert ps.names == tuple("ADEJKLMPSTUVWXYZ")
    assert set(np.unique(ps.patterns)) == {-1.0, 1.0}
    C = ps.correlation()
    off = C[~np.eye(16, dtype=bool)]
    assert off.mean() > 0.25  # correlated, like letters (mean 0.28, largest 0.69)
    hamming = (ps.patterns[:, None, :] != ps.patterns[None, :, :]).sum(axis=2)
    assert hamming[~np.eye(16, dtype=bool)].min() >= 16  # yet every pair stays separable
    np.testing.assert_allclose(np.diag(C), 1.0)


def test_subset_by_name() -> None:
    ps = load_patterns_text(GOOD)
    sub = ps.subset(["dot", "bar"])
    assert sub.names == ("dot", "bar")
    np.testing.assert_array_equal(sub.patterns, ps.patterns[::-1])
    with pytest.raises(InputError, match="no pattern named 'x'"):
        ps.subset(["x"])


def test_correlation_is_pearson() -> None:
    P = np.array([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, 1.0, -1.0]])
    ps = PatternSet(patterns=P, names=("a", "b", "c"), shape=(2, 2))
    np.testing.assert_allclose(ps.correlation(), np.corrcoef(P), atol=1e-12)


def test_corruption_rate_and_seed() -> None:
    P = np.ones((4, 2500))
    a = corrupt(P, 0.2, np.random.default_rng(7))
    b = corrupt(P, 0.2, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    rate = float((a == -1).mean())
    assert abs(rate - 0.2) < 0.01  # 10000 Bernoulli(0.2): sd 0.004
    np.testing.assert_array_equal(corrupt(P, 0.0, np.random.default_rng(1)), P)
    np.testing.assert_array_equal(corrupt(P, 1.0, np.random.default_rng(1)), -P)
    with pytest.raises(InputError, match="outside"):
        corrupt(P, 1.5, np.random.default_rng(1))


def test_test_set_groups_samples_by_class() -> None:
    ps = builtin_patterns()
    X, labels = test_set(ps.patterns, 3, 0.0, np.random.default_rng(0))
    assert X.shape == (48, 100)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(16), 3))
    np.testing.assert_array_equal(X, ps.patterns[labels])


def test_docs_font_loads_and_contains_the_builtin_set() -> None:
    font = load_patterns(Path(__file__).parents[1] / "docs" / "patterns" / "letters26.txt")
    assert font.count == 26 and font.shape == (10, 10)
    builtin = builtin_patterns()
    for name, pattern in zip(builtin.names, builtin.patterns, strict=True):
        np.testing.assert_array_equal(font.patterns[font.names.index(name)], pattern)
