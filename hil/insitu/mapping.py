"""Weights on devices: one differential pair of conductances per weight.

W = (G+ - G-) / g_scale. The N x N weight matrix sits on an N x 2N physical array: row i holds
the pairs of weight row i, either as two blocks (G+ in columns [0, N), G- in [N, 2N)) or
interleaved (G+ in column 2j, G- in 2j + 1). g_scale (siemens per unit weight) is chosen from
the device range so that |W| <= w_max fits with both devices inside [G_min, G_max].

A positive dW can raise G+ (SET) or lower G- (RESET); a negative one the reverse. The split
sends each update to the device of the pair with more room in the needed direction, which
keeps pairs away from the bounds (where nonlinear devices stop moving) and lets a weight keep
learning, in both directions, through one device when its partner is stuck.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
Layout = Literal["blocks", "interleaved"]


@dataclass(frozen=True)
class DifferentialMapping:
    """Layout and scale of an N-unit weight matrix on an N x 2N array of devices."""

    n: int
    g_min_s: float
    g_max_s: float
    g_scale: float
    layout: Layout = "blocks"
    plus_cols: NDArray[np.intp] = field(init=False, repr=False, compare=False)
    minus_cols: NDArray[np.intp] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError(f"the network needs at least one unit, got n={self.n}")
        if not (0.0 < self.g_min_s < self.g_max_s):
            raise ValueError(
                f"device range must satisfy 0 < g_min < g_max, got [{self.g_min_s}, "
                f"{self.g_max_s}] S"
            )
        if not (np.isfinite(self.g_scale) and self.g_scale > 0.0):
            raise ValueError(f"g_scale must be positive and finite, got {self.g_scale}")
        if self.layout == "blocks":
            plus = np.arange(self.n, dtype=np.intp)
            minus = plus + self.n
        elif self.layout == "interleaved":
            plus = 2 * np.arange(self.n, dtype=np.intp)
            minus = plus + 1
        else:
            raise ValueError(f"layout must be 'blocks' or 'interleaved', got {self.layout!r}")
        object.__setattr__(self, "plus_cols", plus)
        object.__setattr__(self, "minus_cols", minus)

    @classmethod
    def from_range(
        cls,
        n: int,
        g_min_s: float,
        g_max_s: float,
        *,
        w_max: float,
        layout: Layout = "blocks",
    ) -> DifferentialMapping:
        """Scale so that |W| = w_max uses the whole range of one device of the pair."""
        if not (np.isfinite(w_max) and w_max > 0.0):
            raise ValueError(f"w_max must be positive and finite, got {w_max}")
        return cls(n, g_min_s, g_max_s, (g_max_s - g_min_s) / w_max, layout)

    @property
    def shape(self) -> tuple[int, int]:
        """Physical array shape (rows, cols) = (N, 2N)."""
        return (self.n, 2 * self.n)

    @property
    def w_max(self) -> float:
        return (self.g_max_s - self.g_min_s) / self.g_scale

    @property
    def g_mid_s(self) -> float:
        return 0.5 * (self.g_min_s + self.g_max_s)

    # -- layout --------------------------------------------------------------------------
    def split(self, G: Array) -> tuple[Array, Array]:
        """(G+, G-), each N x N, from the physical N x 2N array."""
        G = np.asarray(G, dtype=np.float64)
        if G.shape != self.shape:
            raise ValueError(f"conductances have shape {G.shape}, the mapping needs {self.shape}")
        if self.layout == "blocks":  # views, no copies (the hot path)
            return G[:, : self.n], G[:, self.n :]
        return G[:, self.plus_cols], G[:, self.minus_cols]

    def join(self, g_plus: Array, g_minus: Array) -> Array:
        """The physical N x 2N array from the two N x N halves."""
        if self.layout == "blocks":
            return np.concatenate((g_plus, g_minus), axis=1)
        out = np.empty(self.shape, dtype=np.float64)
        out[:, self.plus_cols] = g_plus
        out[:, self.minus_cols] = g_minus
        return out

    def weights(self, G: Array) -> Array:
        """W = (G+ - G-) / g_scale."""
        g_plus, g_minus = self.split(G)
        return (g_plus - g_minus) / self.g_scale

    def pair_mask(self, device_mask: BoolArray) -> BoolArray:
        """N x N: True where either device of the weight's pair is flagged."""
        plus, minus = self.split(device_mask.astype(np.float64))
        return (plus > 0) | (minus > 0)

    def device_roles(self) -> tuple[NDArray[np.bool_], NDArray[np.intp], NDArray[np.intp]]:
        """Per device of the array: is it a G+, and the weight (i, j) its pair stores."""
        plus = np.zeros(self.shape[1], dtype=bool)
        plus[self.plus_cols] = True
        inv = np.empty(self.shape[1], dtype=np.intp)
        inv[self.plus_cols] = np.arange(self.n)
        inv[self.minus_cols] = np.arange(self.n)
        rows = np.arange(self.n, dtype=np.intp)[:, None]
        return (
            np.broadcast_to(plus, self.shape).copy(),
            np.broadcast_to(rows, self.shape).copy(),
            np.broadcast_to(inv, self.shape).copy(),
        )

    # -- programming targets and updates -------------------------------------------------
    def targets(self, W: Array) -> Array:
        """Conductances realising W symmetrically about mid-range: G± = G_mid ± W g_scale / 2."""
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (self.n, self.n):
            raise ValueError(f"W has shape {W.shape}, the mapping needs {(self.n, self.n)}")
        over = np.abs(W) > self.w_max
        if over.any():
            i, j = np.argwhere(over)[0]
            raise ValueError(
                f"weight W[{i}, {j}] = {W[i, j]:.4g} is outside +-w_max = {self.w_max:.4g}; "
                "raise mapping.w_max"
            )
        half = 0.5 * W * self.g_scale
        return self.join(self.g_mid_s + half, self.g_mid_s - half)

    def request(self, dW: Array, G: Array, stuck: BoolArray | None = None) -> Array:
        """Per-device dG (N x 2N) realising dW, each weight's change on one device of its pair.

        For dW > 0 the candidates are SET on G+ (room G_max - G+) and RESET on G- (room
        G- - G_min); for dW < 0 the mirror. The device with more room takes the whole change;
        stuck devices have no room, so a weight with one stuck device learns through the other
        and a weight with both stuck gets no request.
        """
        dW = np.asarray(dW, dtype=np.float64)
        if dW.shape != (self.n, self.n):
            raise ValueError(f"dW has shape {dW.shape}, the mapping needs {(self.n, self.n)}")
        g_plus, g_minus = self.split(G)
        up = dW > 0
        room_plus = np.where(up, self.g_max_s - g_plus, g_plus - self.g_min_s)
        room_minus = np.where(up, g_minus - self.g_min_s, self.g_max_s - g_minus)
        if stuck is not None:
            s_plus, s_minus = self.split(np.asarray(stuck, dtype=np.float64))
            room_plus = np.where(s_plus > 0, -np.inf, room_plus)
            room_minus = np.where(s_minus > 0, -np.inf, room_minus)
        use_plus = room_plus >= room_minus
        dg = dW * self.g_scale
        if stuck is not None:
            dg = np.where(np.isfinite(np.maximum(room_plus, room_minus)), dg, 0.0)
        d_plus = np.where(use_plus, dg, 0.0)
        d_minus = np.where(use_plus, 0.0, -dg)
        return self.join(d_plus, d_minus)

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "n": self.n,
            "g_min_s": self.g_min_s,
            "g_max_s": self.g_max_s,
            "g_scale": self.g_scale,
            "w_max": self.w_max,
            "layout": self.layout,
        }


@dataclass(frozen=True)
class SymmetricMapping:
    """Each symmetric weight stored once: one differential pair per unordered pair i < j.

    The paper's network is symmetric (W_ij = W_ji), so a pair per ordered (i, j), as
    `DifferentialMapping` stores it, spends half the devices on copies. Here the pair of
    W_ij (i < j) sits at G+ = (i, j - 1) and G- = (j, i) on an N x (N - 1) array: row r
    holds the G- of its pairs with smaller units in columns 0..r-1 and the G+ of its pairs
    with larger units in columns r..N-2, so every device is used and N = 32 units fit in
    32 x 31 = 992 devices. The diagonal is stored only when the run learns it
    (`diagonal=True`: pairs i <= j, G+ = (i, j + 1), G- = (j, i), an N x (N + 1) array);
    otherwise W_ii = 0 and the rule's diagonal requests are not delivered.
    """

    n: int
    g_min_s: float
    g_max_s: float
    g_scale: float
    diagonal: bool = False
    pair_i: NDArray[np.intp] = field(init=False, repr=False, compare=False)
    pair_j: NDArray[np.intp] = field(init=False, repr=False, compare=False)
    plus_flat: NDArray[np.intp] = field(init=False, repr=False, compare=False)
    minus_flat: NDArray[np.intp] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n < (1 if self.diagonal else 2):
            raise ValueError(
                f"a symmetric mapping without the diagonal needs at least two units, got n={self.n}"
            )
        if not (0.0 < self.g_min_s < self.g_max_s):
            raise ValueError(
                f"device range must satisfy 0 < g_min < g_max, got [{self.g_min_s}, "
                f"{self.g_max_s}] S"
            )
        if not (np.isfinite(self.g_scale) and self.g_scale > 0.0):
            raise ValueError(f"g_scale must be positive and finite, got {self.g_scale}")
        i, j = np.triu_indices(self.n, 0 if self.diagonal else 1)
        cols = self.shape[1]
        plus_col = j + 1 if self.diagonal else j - 1
        object.__setattr__(self, "pair_i", i.astype(np.intp))
        object.__setattr__(self, "pair_j", j.astype(np.intp))
        object.__setattr__(self, "plus_flat", (i * cols + plus_col).astype(np.intp))
        object.__setattr__(self, "minus_flat", (j * cols + i).astype(np.intp))

    @classmethod
    def from_range(
        cls, n: int, g_min_s: float, g_max_s: float, *, w_max: float, diagonal: bool = False
    ) -> SymmetricMapping:
        """Scale so that |W| = w_max uses the whole range of one device of the pair."""
        if not (np.isfinite(w_max) and w_max > 0.0):
            raise ValueError(f"w_max must be positive and finite, got {w_max}")
        return cls(n, g_min_s, g_max_s, (g_max_s - g_min_s) / w_max, diagonal)

    @staticmethod
    def shape_for(n: int, diagonal: bool) -> tuple[int, int]:
        """Physical array (rows, cols) of n units: (n, n - 1), or (n, n + 1) with the diagonal."""
        return (n, n + 1 if diagonal else n - 1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.shape_for(self.n, self.diagonal)

    @property
    def pairs(self) -> int:
        return int(self.pair_i.size)

    @property
    def w_max(self) -> float:
        return (self.g_max_s - self.g_min_s) / self.g_scale

    @property
    def g_mid_s(self) -> float:
        return 0.5 * (self.g_min_s + self.g_max_s)

    # -- layout --------------------------------------------------------------------------
    def _flat(self, G: Array) -> Array:
        G = np.asarray(G, dtype=np.float64)
        if G.shape != self.shape:
            raise ValueError(f"conductances have shape {G.shape}, the mapping needs {self.shape}")
        return G.reshape(-1)

    def _square(self, values: Array, fill: float) -> Array:
        out = np.full((self.n, self.n), fill, dtype=np.float64)
        out[self.pair_i, self.pair_j] = values
        out[self.pair_j, self.pair_i] = values
        return out

    def split(self, G: Array) -> tuple[Array, Array]:
        """(G+, G-) as symmetric N x N matrices; an unstored diagonal reads G_mid for both."""
        flat = self._flat(G)
        mid = self.g_mid_s
        return self._square(flat[self.plus_flat], mid), self._square(flat[self.minus_flat], mid)

    def join(self, g_plus: Array, g_minus: Array) -> Array:
        """The physical array from the upper triangles of two N x N matrices."""
        out = np.empty(self.shape[0] * self.shape[1], dtype=np.float64)
        out[self.plus_flat] = np.asarray(g_plus, dtype=np.float64)[self.pair_i, self.pair_j]
        out[self.minus_flat] = np.asarray(g_minus, dtype=np.float64)[self.pair_i, self.pair_j]
        return out.reshape(self.shape)

    def weights(self, G: Array) -> Array:
        """W = (G+ - G-) / g_scale, symmetric; W_ii = 0 when the diagonal is not stored."""
        flat = self._flat(G)
        return self._square((flat[self.plus_flat] - flat[self.minus_flat]) / self.g_scale, 0.0)

    def pair_mask(self, device_mask: BoolArray) -> BoolArray:
        """N x N: True where either device of the weight's pair is flagged."""
        flat = np.asarray(device_mask, dtype=bool).reshape(-1)
        hit = flat[self.plus_flat] | flat[self.minus_flat]
        out = np.zeros((self.n, self.n), dtype=bool)
        out[self.pair_i, self.pair_j] = hit
        out[self.pair_j, self.pair_i] = hit
        return out

    def device_roles(self) -> tuple[NDArray[np.bool_], NDArray[np.intp], NDArray[np.intp]]:
        """Per device of the array: is it a G+, and the weight (i, j) its pair stores."""
        size = self.shape[0] * self.shape[1]
        plus = np.zeros(size, dtype=bool)
        wi = np.empty(size, dtype=np.intp)
        wj = np.empty(size, dtype=np.intp)
        plus[self.plus_flat] = True
        for flat in (self.plus_flat, self.minus_flat):
            wi[flat] = self.pair_i
            wj[flat] = self.pair_j
        return plus.reshape(self.shape), wi.reshape(self.shape), wj.reshape(self.shape)

    # -- programming targets and updates -------------------------------------------------
    def _upper(self, W: Array, what: str) -> Array:
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (self.n, self.n):
            raise ValueError(f"{what} has shape {W.shape}, the mapping needs {(self.n, self.n)}")
        return 0.5 * (W[self.pair_i, self.pair_j] + W[self.pair_j, self.pair_i])

    def targets(self, W: Array) -> Array:
        """Conductances realising the symmetric part of W about mid-range (diagonal dropped
        when it is not stored): G+- = G_mid +- W g_scale / 2."""
        w = self._upper(W, "W")
        over = np.abs(w) > self.w_max
        if over.any():
            k = int(np.argmax(over))
            raise ValueError(
                f"weight W[{self.pair_i[k]}, {self.pair_j[k]}] = {w[k]:.4g} is outside +-w_max "
                f"= {self.w_max:.4g}; raise mapping.w_max"
            )
        half = 0.5 * w * self.g_scale
        out = np.empty(self.shape[0] * self.shape[1], dtype=np.float64)
        out[self.plus_flat] = self.g_mid_s + half
        out[self.minus_flat] = self.g_mid_s - half
        return out.reshape(self.shape)

    def request(self, dW: Array, G: Array, stuck: BoolArray | None = None) -> Array:
        """Per-device dG realising the symmetric dW, each pair's change on the device with
        more room (as `DifferentialMapping.request`); unstored diagonal requests are dropped."""
        dw = self._upper(dW, "dW")
        flat = self._flat(G)
        g_plus, g_minus = flat[self.plus_flat], flat[self.minus_flat]
        up = dw > 0
        room_plus = np.where(up, self.g_max_s - g_plus, g_plus - self.g_min_s)
        room_minus = np.where(up, g_minus - self.g_min_s, self.g_max_s - g_minus)
        dg = dw * self.g_scale
        if stuck is not None:
            s = np.asarray(stuck, dtype=bool).reshape(-1)
            room_plus = np.where(s[self.plus_flat], -np.inf, room_plus)
            room_minus = np.where(s[self.minus_flat], -np.inf, room_minus)
            dg = np.where(np.isfinite(np.maximum(room_plus, room_minus)), dg, 0.0)
        use_plus = room_plus >= room_minus
        out = np.zeros(self.shape[0] * self.shape[1], dtype=np.float64)
        out[self.plus_flat] = np.where(use_plus, dg, 0.0)
        out[self.minus_flat] = np.where(use_plus, 0.0, -dg)
        return out.reshape(self.shape)

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "n": self.n,
            "g_min_s": self.g_min_s,
            "g_max_s": self.g_max_s,
            "g_scale": self.g_scale,
            "w_max": self.w_max,
            "layout": "symmetric",
            "diagonal": int(self.diagonal),
            "pairs": self.pairs,
            "devices": self.shape[0] * self.shape[1],
        }


#: Either mapping; the trainer uses only what both provide.
WeightMapping = DifferentialMapping | SymmetricMapping
MappingLayout = Literal["blocks", "interleaved", "symmetric"]


def make_mapping(
    n: int,
    g_min_s: float,
    g_max_s: float,
    *,
    w_max: float,
    layout: MappingLayout = "blocks",
    diagonal: bool = True,
) -> WeightMapping:
    """The mapping a run config names (`mapping.layout`, `mapping.diagonal`)."""
    if layout == "symmetric":
        return SymmetricMapping.from_range(n, g_min_s, g_max_s, w_max=w_max, diagonal=diagonal)
    return DifferentialMapping.from_range(n, g_min_s, g_max_s, w_max=w_max, layout=layout)


def mapping_shape(n: int, layout: MappingLayout, diagonal: bool) -> tuple[int, int]:
    """Physical array an n-unit network needs under a layout."""
    if layout == "symmetric":
        return SymmetricMapping.shape_for(n, diagonal)
    return (n, 2 * n)


def largest_network(rows: int, cols: int, layout: MappingLayout, diagonal: bool) -> int:
    """The most units a rows x cols array holds under a layout (0 if none)."""
    if layout == "symmetric":
        return min(rows, cols - 1 if diagonal else cols + 1) if cols > 0 else 0
    return min(rows, cols // 2)


def what_fits(rows: int, cols: int) -> str:
    """One sentence naming the networks a rows x cols array holds, for error messages."""
    sym = largest_network(rows, cols, "symmetric", False)
    sym_diag = largest_network(rows, cols, "symmetric", True)
    diff = largest_network(rows, cols, "blocks", True)
    return (
        f"a {rows} x {cols} array holds N <= {sym} units with mapping.layout: symmetric "
        f"(N <= {sym_diag} with mapping.diagonal: true; `--task glyphs32` is N = 32), or "
        f"N <= {diff} with a differential pair per ordered pair (blocks, interleaved)"
    )


@dataclass
class StuckDetector:
    """Flags devices that do not move when the response model says they should.

    Between reads the controller adds the expected change of every plan (from the response
    model, which knows a device at a bound cannot move further), split into upward and
    downward movement. At a read, a direction in which at least `min_expected` (a fraction of
    the range) was expected but less than `ratio` of it happened earns that direction a
    strike; a proper move clears it; `strikes` in a row count. A device is stuck when it
    failed in both directions, or failed upward while sitting at the bottom of the range
    (stuck at G_min), or downward at the top (stuck at G_max). A device that only fails
    toward one bound is saturated at its own (device-to-device) bound, not stuck: it keeps
    learning in the other direction.
    """

    shape: tuple[int, int]
    g_min_s: float
    g_max_s: float
    min_expected: float = 0.05
    ratio: float = 0.1
    strikes: int = 2
    expected_up: Array = field(init=False)
    expected_down: Array = field(init=False)
    count_up: NDArray[np.int64] = field(init=False)
    count_down: NDArray[np.int64] = field(init=False)
    stuck: BoolArray = field(init=False)
    last_read: Array | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.expected_up = np.zeros(self.shape)
        self.expected_down = np.zeros(self.shape)
        self.count_up = np.zeros(self.shape, dtype=np.int64)
        self.count_down = np.zeros(self.shape, dtype=np.int64)
        self.stuck = np.zeros(self.shape, dtype=bool)

    def add_expected(self, g_before: Array, g_after_expected: Array) -> None:
        d = g_after_expected - g_before
        self.expected_up += np.maximum(d, 0.0)
        self.expected_down += np.maximum(-d, 0.0)

    @staticmethod
    def _strike(count: NDArray[np.int64], judged: BoolArray, failed: BoolArray) -> Any:
        return np.where(judged, np.where(failed, count + 1, 0), count)

    def observe(self, g_read: Array) -> BoolArray:
        """Compare a fresh read with the previous one; return the newly stuck devices."""
        g_read = np.asarray(g_read, dtype=np.float64)
        newly = np.zeros(self.shape, dtype=bool)
        if self.last_read is not None:
            span = self.g_max_s - self.g_min_s
            moved = g_read - self.last_read
            thr = self.min_expected * span
            up = self.expected_up >= thr
            down = self.expected_down >= thr
            self.count_up = self._strike(self.count_up, up, moved < self.ratio * self.expected_up)
            self.count_down = self._strike(
                self.count_down, down, -moved < self.ratio * self.expected_down
            )
            fail_up = self.count_up >= self.strikes
            fail_down = self.count_down >= self.strikes
            edge = 0.02 * span
            at_bottom = g_read <= self.g_min_s + edge
            at_top = g_read >= self.g_max_s - edge
            verdict = (fail_up & fail_down) | (fail_up & at_bottom) | (fail_down & at_top)
            newly = verdict & ~self.stuck
            self.stuck |= newly
        self.last_read = g_read.copy()
        self.expected_up[:] = 0.0
        self.expected_down[:] = 0.0
        return newly

    def state(self) -> dict[str, Array]:
        out: dict[str, Array] = {
            "stuck_expected_up": self.expected_up.copy(),
            "stuck_expected_down": self.expected_down.copy(),
            "stuck_count_up": self.count_up.astype(np.float64),
            "stuck_count_down": self.count_down.astype(np.float64),
            "stuck_mask": self.stuck.astype(np.float64),
        }
        if self.last_read is not None:
            out["stuck_last_read"] = self.last_read.copy()
        return out

    def load(self, state: dict[str, Array]) -> None:
        self.expected_up = np.asarray(state["stuck_expected_up"], dtype=np.float64).copy()
        self.expected_down = np.asarray(state["stuck_expected_down"], dtype=np.float64).copy()
        self.count_up = np.asarray(state["stuck_count_up"]).astype(np.int64)
        self.count_down = np.asarray(state["stuck_count_down"]).astype(np.int64)
        self.stuck = np.asarray(state["stuck_mask"]) > 0
        last = state.get("stuck_last_read")
        self.last_read = None if last is None else np.asarray(last, dtype=np.float64).copy()


def stuck_after_programming(
    g_start: Array, g_end: Array, g_target: Array, g_min_s: float, g_max_s: float, tol: float
) -> BoolArray:
    """Devices that write-verify could not bring near target and that did not move at all.

    `tol` is a fraction of the range: a device is stuck when it ends farther than tol from its
    target and moved less than tol/10 of the range during programming.
    """
    span = g_max_s - g_min_s
    missed = np.abs(g_end - g_target) > tol * span
    frozen = np.abs(g_end - g_start) < 0.1 * tol * span
    return missed & frozen


def stuck_report(mapping: WeightMapping, stuck: BoolArray, G: Array) -> dict[str, object]:
    """Which devices are stuck, their weight pair and conductance, and which weights are frozen."""
    rows, cols = np.nonzero(stuck)
    is_plus, wi, wj = mapping.device_roles()
    flags = np.asarray(stuck, dtype=bool)
    plus_stuck = np.zeros((mapping.n, mapping.n), dtype=bool)
    minus_stuck = np.zeros((mapping.n, mapping.n), dtype=bool)
    plus_stuck[wi[flags & is_plus], wj[flags & is_plus]] = True
    minus_stuck[wi[flags & ~is_plus], wj[flags & ~is_plus]] = True
    frozen = plus_stuck & minus_stuck
    devices = [
        {
            "row": int(r),
            "col": int(c),
            "role": "G+" if is_plus[r, c] else "G-",
            "weight": [int(wi[r, c]), int(wj[r, c])],
            "g_s": float(G[r, c]),
            "at": "g_min"
            if G[r, c] <= mapping.g_min_s + 0.02 * (mapping.g_max_s - mapping.g_min_s)
            else "g_max"
            if G[r, c] >= mapping.g_max_s - 0.02 * (mapping.g_max_s - mapping.g_min_s)
            else "mid",
        }
        for r, c in zip(rows, cols, strict=True)
    ]
    return {
        "stuck_devices": len(devices),
        "stuck_fraction": float(stuck.mean()) if stuck.size else 0.0,
        "frozen_weights": int(frozen.sum()),
        "one_sided_weights": int((plus_stuck ^ minus_stuck).sum()),
        "devices": devices,
    }
