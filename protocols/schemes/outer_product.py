"""Row/column-parallel outer-product updates for arrays that can pulse lines at once.

The requested change is turned into signed pulse counts R = dG / step(G), approximated by its
leading `rank` singular terms s u v^T. Each term becomes integer line levels, a_i on the rows
and b_j on the columns (stochastically rounded, so E[a_i b_j] is the requested count), and
the product a_i b_j is realised bit-plane by bit-plane: in the phase for bits (p, q), rows
whose level has bit p set and columns whose level has bit q set are driven together, repeated
2^(p+q) times. One phase pulses all its selected devices at once under V/2 or V/3 biasing;
the number of groups per term is 4 sign quadrants x bits^2, and the number of phases is set
by the level precision, not by rows x cols. Each group is one row set x one column set, so
a backend can drive it as a single parallel phase.
"""

from __future__ import annotations

import math

import numpy as np

from protocols.plan import PulseGroup
from protocols.schemes.common import (
    PlannedUpdate,
    UpdateRequest,
    make_plan,
    per_update_cap,
    stochastic_round,
)
from protocols.spec import OuterProductScheme, PulsePair


def _term_groups(
    a: np.ndarray,
    b: np.ndarray,
    u_sign: np.ndarray,
    v_sign: np.ndarray,
    bits: int,
    pulses: PulsePair,
) -> tuple[list[PulseGroup], list[PulseGroup]]:
    """SET and RESET phase groups realising counts a_i * b_j in the four sign quadrants."""
    set_groups: list[PulseGroup] = []
    reset_groups: list[PulseGroup] = []
    for sr in (1, -1):
        aa = np.where(u_sign == sr, a, 0)
        if not aa.any():
            continue
        for sc in (1, -1):
            bb = np.where(v_sign == sc, b, 0)
            if not bb.any():
                continue
            polarity = sr * sc
            for p in range(bits):
                rmask = (aa >> p) & 1
                if not rmask.any():
                    continue
                for q in range(bits):
                    cmask = (bb >> q) & 1
                    if not cmask.any():
                        continue
                    counts = (1 << (p + q)) * np.outer(rmask, cmask)
                    group = PulseGroup(pulses.shape(polarity), counts, parallel=True)
                    (set_groups if polarity > 0 else reset_groups).append(group)
    return set_groups, reset_groups


def plan_outer_product(scheme: OuterProductScheme, req: UpdateRequest) -> PlannedUpdate:
    rng, pulses = req.rng, req.pulses
    if rng is None:
        raise ValueError("the outer-product scheme rounds stochastically: pass rng=...")
    requested = req.counts_per_step()
    u_mat, s, vt = np.linalg.svd(requested, full_matrices=False)
    rank = min(scheme.rank, s.size)
    approx = (u_mat[:, :rank] * s[:rank]) @ vt[:rank]
    norm = float(np.linalg.norm(requested))
    error = float(np.linalg.norm(requested - approx)) / norm if norm > 0 else 0.0
    cap_term = max(1, per_update_cap(scheme.max_pulses, req.limits) // scheme.rank)
    level_cap = math.isqrt(cap_term)
    bits = max(1, level_cap.bit_length())
    set_groups: list[PulseGroup] = []
    reset_groups: list[PulseGroup] = []
    clipped = np.zeros(req.shape, dtype=bool)
    for k in range(rank):
        u, v, sk = u_mat[:, k], vt[k], float(s[k])
        umax, vmax = float(np.abs(u).max()), float(np.abs(v).max())
        alpha = sk * umax * vmax  # the largest count this term asks of one device
        if alpha <= 1e-12:
            continue
        scale = min(1.0, level_cap**2 / alpha)
        if scale < 1.0:
            clipped |= np.abs(np.outer(u, v)) * sk > level_cap**2
        top = math.sqrt(alpha * scale)
        a = stochastic_round(np.abs(u) / umax * top, rng)
        b = stochastic_round(np.abs(v) / vmax * top, rng)
        up, down = _term_groups(a, b, np.sign(u), np.sign(v), bits, pulses)
        set_groups += up
        reset_groups += down
    plan = make_plan(req.shape, set_groups + reset_groups, scheme.bias)
    after = req.finish(plan)
    return PlannedUpdate(plan, after - req.g, requested, clipped, approximation_error=error)
