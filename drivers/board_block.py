"""A block of devices on a fixed-size board, shared by the ArC ONE and ArC TWO backends.

A run or a characterisation asks for `rows x cols` devices; on a 32 x 32 board the backend
addresses the block whose first device is (`row_offset`, `col_offset`), the top-left corner
by default, as `characterize` lays out its devices. A block that does not fit is refused
before anything is opened, with the board's size in the message.
"""

from __future__ import annotations

from protocols.errors import InputError


class ArrayTooSmall(InputError):
    """The requested block does not fit the board; `board` and `needed` say by how much."""

    def __init__(self, message: str, board: tuple[int, int], needed: tuple[int, int]) -> None:
        super().__init__(message)
        self.board = board
        self.needed = needed


def check_block(
    name: str, board: tuple[int, int], rows: int, cols: int, row_offset: int, col_offset: int
) -> None:
    """Refuse a block that does not fit `board` (rows, cols) at the given offsets."""
    if row_offset < 0 or col_offset < 0:
        raise InputError(
            f"{name}: block offsets must be >= 0, got row_offset={row_offset}, "
            f"col_offset={col_offset}"
        )
    if row_offset + rows > board[0] or col_offset + cols > board[1]:
        where = f" from row {row_offset}, column {col_offset}" if row_offset or col_offset else ""
        raise ArrayTooSmall(
            f"{name}: the run needs a {rows} x {cols} block of devices{where}; the board is "
            f"{board[0]} x {board[1]}",
            board,
            (rows + row_offset, cols + col_offset),
        )
