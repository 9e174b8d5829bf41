r"""Streaming betting bounds of soft certification: one state per planned quantity.

With a :class:`~smoothlearn.intervals.BettingInterval` the multi-class
procedure's bounds use the **order** of the estimation draws, which sums do
not keep.  The procedure decides on the ``n0`` selection draws which
quantities it will bound (:meth:`~smoothlearn.intervals.MultiClassProcedure.plan`);
:class:`BettingAccumulator` then feeds, for every input, the draws of those
quantities in the order they were made to a
:class:`~smoothlearn.intervals.BettingState` (memory independent of ``n``),
and :meth:`~smoothlearn.intervals.MultiClassProcedure.bound_from_states`
turns the states into the certificate's bounds.

Engine protocol
---------------
The accumulator is pure numpy: :meth:`BettingAccumulator.update` takes a
batch of class scores ``(B, K)`` (float64, in [0, 1], on the simplex) and
the input index of each row; an input's rows must arrive in draw order,
within a batch and across batches (other inputs' rows may be interleaved).
:meth:`BettingAccumulator.result` returns a dict of arrays that all have a
leading input axis, so the results of chunks of inputs concatenate along
axis 0; :func:`unpack` rebuilds the plan and the state from such a dict (the
form :class:`~smoothlearn.CertificationResult` stores as ``betting_state``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .intervals import BettingInterval, BettingState, BoundPlan

__all__: list[str] = []

#: Keys of a packed state whose rows are (input, quantity) entries.
_ENTRY_KEYS = (
    "alpha_design",
    "reflect",
    "sum",
    "dev",
    "m",
    "log_k",
    "sum_a",
    "sum_b",
    "t",
)
#: Keys of a packed state that are the same for every input (repeated per input).
_COMMON_KEYS = ("caps", "schedule", "n", "n_fixed")
#: Keys of the plan.
_PLAN_KEYS = (
    "plan_prediction",
    "plan_members",
    "plan_valid",
    "plan_n_bounds",
    "plan_kind",
)
KEYS = _ENTRY_KEYS + _COMMON_KEYS + _PLAN_KEYS


def pack(plan: BoundPlan, state: BettingState) -> dict[str, NDArray]:
    """Plan and state as plain arrays with a leading input axis.

    ``state`` must have the shape ``plan.valid.shape`` and one side per
    quantity (``side=plan.sides()``).  No object arrays: the dict survives
    ``numpy.savez`` / ``numpy.load(allow_pickle=False)``.
    """
    raw = state.to_dict()
    n_inputs, n_q = plan.valid.shape
    out = {}
    for key in _ENTRY_KEYS:
        arr = np.asarray(raw[key])
        out[key] = arr.reshape((n_inputs, n_q, *arr.shape[1:]))
    for key in _COMMON_KEYS:
        arr = np.asarray(raw[key])
        out[key] = np.broadcast_to(arr, (n_inputs, *arr.shape)).copy()
    out.update(pack_plan(plan))
    return out


def pack_plan(plan: BoundPlan) -> dict[str, NDArray]:
    """The plan's arrays of :func:`pack` (``plan_*``), one row per input."""
    return {
        "plan_prediction": np.asarray(plan.prediction, dtype=np.int64),
        "plan_members": np.asarray(plan.members, dtype=bool),
        "plan_valid": np.asarray(plan.valid, dtype=bool),
        "plan_n_bounds": np.asarray(plan.n_bounds, dtype=np.int64),
        "plan_kind": np.full(plan.valid.shape[0], plan.kind, dtype="<U5"),
    }


def unpack(arrays: dict[str, ArrayLike]) -> tuple[BoundPlan, BettingState]:
    """The plan and the state of :func:`pack` (or of concatenated packs).

    Raises
    ------
    ValueError
        Naming ``betting_state`` when the arrays are not a packed state.
    """
    try:
        a = {key: np.asarray(arrays[key]) for key in KEYS}
        n_inputs, n_q = a["plan_valid"].shape
        for key in _COMMON_KEYS:
            first = a[key][:1]
            if a[key].shape[0] != n_inputs or not np.all(a[key] == first):
                raise ValueError(f"{key!r} differs between inputs")
        kinds = np.unique(a["plan_kind"])
        if kinds.size > 1 or (n_inputs and str(kinds[0]) not in ("mono", "multi")):
            raise ValueError("'plan_kind' must be one of 'mono', 'multi'")
        plan = BoundPlan(
            a["plan_prediction"].astype(np.int64),
            a["plan_members"].astype(bool),
            a["plan_valid"].astype(bool),
            a["plan_n_bounds"].astype(np.int64),
            str(kinds[0]) if n_inputs else "multi",
        )
        size = n_inputs * n_q
        raw = {key: a[key].reshape((size, *a[key].shape[2:])) for key in _ENTRY_KEYS}
        for key in _COMMON_KEYS:
            raw[key] = a[key][0] if n_inputs else np.zeros(0)
        reflect = raw["reflect"].astype(bool)
        raw["source"] = np.arange(size)
        raw["shape"] = np.array([n_inputs, n_q], dtype=np.int64)
        raw["side"] = np.where(reflect, "upper", "lower").reshape(n_inputs, n_q)
        if plan.members.shape[:2] != (n_inputs, n_q) or reflect.shape != (size,):
            raise ValueError("inconsistent shapes")
        if np.any(reflect.reshape(n_inputs, n_q) != (plan.sides() == "upper")):
            raise ValueError("the sides do not follow the plan")
        state = BettingState.from_dict(raw)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(
            "The 'betting_state' parameter must hold a betting state packed with "
            f"its plan (keys {list(KEYS)}, one row per input): {exc}."
        ) from None
    return plan, state


class BettingAccumulator:
    """Feeds each input's planned quantities' draws, in order, to a BettingState.

    Parameters
    ----------
    interval : BettingInterval
        Gives the truncations and the grid size of the state.
    plan : BoundPlan
        From the procedure's :meth:`plan` on the selection statistics of the
        inputs this accumulator serves (row ``i`` is input ``offset + i``).
    n : int
        Planned number of estimation draws per input.
    alpha : float
        Total failure probability the bets are tuned for
        (``plan.design_alpha(alpha)`` per bound).
    offset : int, default=0
        Global index of the plan's first input (the ``rows`` of
        :meth:`update` are global).

    Notes
    -----
    Memory: ``O(n_inputs x n_quantities x n_grid)``, independent of ``n``.
    Only valid quantities are fed (CPM plans have fewer buckets than
    classes); the others keep an empty state, which the bounds ignore.
    """

    def __init__(
        self, interval: BettingInterval, plan: BoundPlan, n: int, alpha: float, offset=0
    ):
        self.plan = plan
        self.offset = int(offset)
        self.state = interval.new_state(
            plan.valid.shape, n, plan.design_alpha(alpha), side=plan.sides()
        )
        self.n_draws = np.zeros(plan.valid.shape[0], dtype=np.int64)

    def update(self, scores: ArrayLike, rows: ArrayLike) -> None:
        """Feed a batch: ``scores`` (B, K) and the global input index of each row."""
        s = np.asarray(scores, dtype=np.float64)
        r = np.asarray(rows, dtype=np.int64).ravel() - self.offset
        if s.ndim != 2 or s.shape[0] != r.shape[0]:
            raise ValueError(
                "The 'scores' parameter must have shape (len(rows), n_classes). "
                f"Got {s.shape} for {r.shape[0]} rows instead."
            )
        if r.size == 0:
            return
        n_inputs, n_q = self.plan.valid.shape
        if np.any((r < 0) | (r >= n_inputs)):
            raise ValueError(
                f"The 'rows' parameter must hold input indices in [{self.offset}, "
                f"{self.offset + n_inputs})."
            )
        order = np.argsort(r, kind="stable")  # keeps each input's draw order
        r, s = r[order], s[order]
        inputs, starts, counts = np.unique(r, return_index=True, return_counts=True)
        # inputs with as many draws so far and in this batch are fed together
        keys = np.stack([self.n_draws[inputs], counts], axis=1)
        _, group = np.unique(keys, axis=0, return_inverse=True)
        q = np.arange(n_q)
        p = self.plan
        for g in range(int(group.max()) + 1):
            members = np.flatnonzero(group.ravel() == g)
            idx, b = inputs[members], int(counts[members[0]])
            block = s[starts[members][:, None] + np.arange(b)]  # (g, b, K)
            sub = BoundPlan(
                p.prediction[idx], p.members[idx], p.valid[idx], p.n_bounds[idx], p.kind
            )
            draws = sub.draws(block)  # (g, n_q, b), as BoundPlan.draws documents
            valid = sub.valid
            flat = (idx[:, None] * n_q + q[None, :])[valid]
            self.state.update(draws[valid], rows=flat)
        self.n_draws[inputs] += counts

    def result(self) -> dict[str, NDArray]:
        """The plan and the state as arrays with a leading input axis (:func:`pack`)."""
        return pack(self.plan, self.state)
