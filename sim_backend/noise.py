"""Gaussian deviates for cycle-to-cycle noise, fresh (exact) or from a reused buffer.

NumPy's `standard_normal` costs about 8 ns per float32 deviate, more than the whole pulse
update. The exact source draws fresh deviates by the Box-Muller transform on float32 uniforms
(about 3 ns each: one uniform, and per pair one log, one sqrt, one sin and one cos), so every
request is independent of every other.

The buffered source (opt-in) draws a pool of twice the array size once, then serves each
request as a contiguous slice at a random offset with a random sign, and redraws the pool
after `reuse` requests. Within one request the deviates are distinct independent draws, but
two requests of one pool share most of their values, shifted to other devices: the noise field
of one plan reappears, displaced, in the next. The pool is a pure function of (seed, epoch),
so a snapshot stores two integers, not the pool.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

_MIN_POOL = 1 << 16


class GaussianSource:
    """Standard normal float32 deviates, reproducible from a seed and exactly resumable."""

    def __init__(self, seed: int, size: int, *, buffered: bool, reuse: int) -> None:
        self._seed = int(seed)
        self._size = int(size)
        self._buffered = buffered
        self._reuse = int(reuse)
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self._seed, 1])))
        self._epoch = 0
        self._uses = 0
        self._pool: NDArray[np.float32] | None = None
        self._pool_epoch = -1
        self._pool_len = max(_MIN_POOL, 2 * self._size)
        self._uniform: NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._normal: NDArray[np.float32] = np.empty(0, dtype=np.float32)

    def _ensure_pool(self) -> NDArray[np.float32]:
        if self._pool is None or self._pool_epoch != self._epoch:
            seq = np.random.SeedSequence([self._seed, 2, self._epoch])
            gen = np.random.Generator(np.random.PCG64(seq))
            pool = gen.standard_normal(self._pool_len, dtype=np.float32)
            pool.setflags(write=False)
            self._pool = pool
            self._pool_epoch = self._epoch
        return self._pool

    def draw(self, n: int) -> tuple[NDArray[np.float32], float]:
        """`n` deviates (possibly a read-only view) and a sign (+1.0 or -1.0) to apply to them."""
        if not self._buffered or n > self._pool_len // 2:
            return self._box_muller(n), 1.0
        if self._uses >= self._reuse:
            self._epoch += 1
            self._uses = 0
        pool = self._ensure_pool()
        self._uses += 1
        offset = int(self._rng.integers(0, self._pool_len - n + 1))
        sign = 1.0 if self._rng.random() < 0.5 else -1.0
        view = pool[offset : offset + n]
        return view, sign

    def _box_muller(self, n: int) -> NDArray[np.float32]:
        """`n` fresh deviates in a reused work buffer: z = sqrt(-2 ln u1) (cos, sin)(2 pi u2)."""
        m = n + (n & 1)
        half = m // 2
        if self._uniform.size != m:
            self._uniform = np.empty(m, dtype=np.float32)
            self._normal = np.empty(m, dtype=np.float32)
        u, z = self._uniform, self._normal
        self._rng.random(m, dtype=np.float32, out=u)
        radius, angle = u[:half], u[half:]
        np.subtract(np.float32(1.0), radius, out=radius)  # (0, 1]: the log stays finite
        np.log(radius, out=radius)
        radius *= np.float32(-2.0)
        np.sqrt(radius, out=radius)
        angle *= np.float32(2.0 * np.pi)
        np.cos(angle, out=z[:half])
        np.sin(angle, out=z[half:])
        z[:half] *= radius
        z[half:] *= radius
        return z[:n]

    def state(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "epoch": self._epoch,
            "uses": self._uses,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._epoch = int(state["epoch"])
        self._uses = int(state["uses"])
