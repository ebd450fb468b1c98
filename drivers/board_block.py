"""The ArC boards' fixed 32 x 32 lines, and what happens when a run needs more.

A run or a characterisation needs a block of devices (protocols.block: `--block`, the
top-left corner by default) inside the array connected to the board (`--array`, by default
just large enough for the block). Both must fit the board's 32 word/bit lines (ArC ONE) or
its 32 x 32 channel layout (ArC TWO); otherwise the request is refused before anything is
opened, as an `ArrayTooSmall` that carries the board's size so that the caller can say what
would fit.
"""

from __future__ import annotations

from protocols.block import Block
from protocols.errors import InputError


class ArrayTooSmall(InputError):
    """The requested devices do not fit the board; `board` and `needed` say by how much."""

    def __init__(self, message: str, board: tuple[int, int], needed: tuple[int, int]) -> None:
        super().__init__(message)
        self.board = board
        self.needed = needed


def array_on_board(
    name: str, board: tuple[int, int], blk: Block, shape: tuple[int, int] | None
) -> tuple[int, int]:
    """The array the board is driven as (`shape`, else the block's extent), checked."""
    array = shape if shape is not None else blk.extent
    if array[0] > board[0] or array[1] > board[1]:
        what = (
            f"a {blk.rows} x {blk.cols} block of devices"
            + (f" ({blk.describe()})" if blk.row0 or blk.col0 else "")
            if shape is None
            else f"--array {array[0]}x{array[1]}"
        )
        raise ArrayTooSmall(
            f"{name}: the run needs {what}; the board is {board[0]} x {board[1]}", board, array
        )
    return array
