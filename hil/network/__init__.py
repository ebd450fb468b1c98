"""The paper's mathematics, with no notion of a crossbar.

Relaxation of the forward and side networks (eqs. 18-19), the Pineda-Almeida update (eq. 20),
the Hebbian and Storkey baselines, pattern sets, scoring, floating-point training and the
reproduction of Table I and Fig. 3. May import `protocols` (for `InputError`); never
`hil.insitu`, `hil.characterize`, `hil.commands`, `sim_backend` or `drivers`.
"""
