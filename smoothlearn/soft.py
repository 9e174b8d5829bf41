r"""Soft smoothing: simplex maps of logits, their Lipschitz constants, selection.

With ``smoothing="soft"`` the smoothed classifier averages a [0, 1]-valued
class score :math:`f_c(x) = S(t\,z(x))_c` instead of counting argmaxes, where
:math:`z` are the base model's logits, :math:`t > 0` an inverse temperature
and :math:`S` a *simplex map* (softmax, sparsemax or hardmax; Delattre et al.
2024).  This module holds the maps (vectorised in torch), the Lipschitz
constant of one class score of each map, and the per-input choice of the
map and temperature on the ``n0`` selection draws.

Alpha accounting
----------------
Everything chosen per input (the class, the simplex map, the temperature and
the class partition of CPM) is a function of the ``n0`` selection draws only.
The ``n`` estimation draws are independent of them, so conditionally on the
choice the multi-class procedure's bounds hold with probability at least
``1 - alpha`` and no correction for the number of candidates is needed.  The
released LVM code instead takes the largest radius over about 409 candidates
computed on the *same* draws, which is not a valid ``1 - alpha`` procedure
(SCIENCE.md section 7); this module never does that.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray

from ._certificates import certify_statistics
from .sampling import Statistic

__all__ = ["SIMPLEX_MAPS", "simplex_map_constant", "simplex_scores", "sparsemax"]

#: Simplex maps, in the order of their integer codes.
SIMPLEX_MAPS = ("softmax", "sparsemax", "hardmax")
_CODE = {name: i for i, name in enumerate(SIMPLEX_MAPS)}


def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Sparsemax: the Euclidean projection of ``z`` onto the probability simplex.

    Parameters
    ----------
    z : torch.Tensor
        Scores (e.g. temperature-scaled logits), any shape.
    dim : int, default=-1
        The class dimension.

    Returns
    -------
    p : torch.Tensor
        Same shape as ``z``; non-negative, summing to 1 along ``dim``.

    Notes
    -----
    :math:`\mathrm{sparsemax}(z) = \arg\min_{p \in \Delta} \|p - z\|^2
    = (z - \tau)_+` with the threshold found by sorting
    :math:`z_{(1)} \ge \dots \ge z_{(K)}`: the support size is
    :math:`k(z) = \max\{k : 1 + k z_{(k)} > \sum_{j \le k} z_{(j)}\}` and
    :math:`\tau = (\sum_{j \le k(z)} z_{(j)} - 1) / k(z)` (Martins & Astudillo
    2016, Algorithm 1).  Its Jacobian is
    :math:`\mathrm{diag}(s) - s s^\top / |S|` with :math:`s` the support
    indicator: an orthogonal projection, so each coordinate is
    :math:`\sqrt{1 - 1/K}`-Lipschitz.

    References
    ----------
    .. [1] Martins & Astudillo, "From Softmax to Sparsemax: A Sparse Model of
       Attention and Multi-Label Classification", ICML 2016.

    Examples
    --------
    >>> import torch
    >>> from smoothlearn.soft import sparsemax
    >>> sparsemax(torch.tensor([[2.0, 1.0, -1.0], [0.1, 0.0, 0.0]]))
    tensor([[1.0000, 0.0000, 0.0000],
            [0.4000, 0.3000, 0.3000]])
    """
    z = z.transpose(dim, -1)
    z_sorted, _ = torch.sort(z, dim=-1, descending=True)
    k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    cumsum = z_sorted.cumsum(dim=-1)
    support = (1.0 + k * z_sorted) > cumsum
    k_z = support.sum(dim=-1, keepdim=True)  # >= 1: the top score is always in
    tau = (cumsum.gather(-1, k_z - 1) - 1.0) / k_z.to(z.dtype)
    out = torch.clamp(z - tau, min=0.0)
    return out.transpose(dim, -1)


def _hardmax(z: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax (first maximum on ties, like ``torch.argmax``)."""
    out = torch.zeros_like(z)
    out.scatter_(-1, z.argmax(dim=-1, keepdim=True), 1.0)
    return out


def simplex_scores(
    logits: torch.Tensor, simplex_map: str = "softmax", temperature: float = 1.0
) -> torch.Tensor:
    r"""Class scores :math:`S(t z)` in [0, 1], computed in float64.

    Parameters
    ----------
    logits : torch.Tensor of shape (B, K)
        The base model's logits.
    simplex_map : {"softmax", "sparsemax", "hardmax"}, default="softmax"
        The map :math:`S`.
    temperature : float, default=1.0
        Inverse temperature :math:`t > 0` multiplying the logits (ignored by
        hardmax).

    Returns
    -------
    scores : torch.Tensor of shape (B, K), float64
        Rows on the probability simplex, clipped to [0, 1].

    Examples
    --------
    >>> import torch
    >>> from smoothlearn.soft import simplex_scores
    >>> z = torch.tensor([[0.0, 1.0]])
    >>> simplex_scores(z, "softmax", 2.0).numpy().round(4)
    array([[0.1192, 0.8808]])
    >>> simplex_scores(z, "sparsemax", 0.5).numpy().round(4)
    array([[0.25, 0.75]])
    """
    z = logits.to(torch.float64)
    if simplex_map == "hardmax":
        return _hardmax(z)
    if simplex_map == "softmax":
        return torch.softmax(temperature * z, dim=-1).clamp(0.0, 1.0)
    if simplex_map == "sparsemax":
        return sparsemax(temperature * z).clamp(0.0, 1.0)
    raise ValueError(
        "The 'simplex_map' parameter must be a str among "
        f"{set(SIMPLEX_MAPS)}. Got {simplex_map!r} instead."
    )


def simplex_map_constant(simplex_map: str, n_classes: int) -> float:
    r"""l2 Lipschitz constant of one class score :math:`z \mapsto S(z)_c`.

    Parameters
    ----------
    simplex_map : {"softmax", "sparsemax", "hardmax"}
        The map :math:`S` (at temperature 1).
    n_classes : int
        Number of classes ``K``.

    Returns
    -------
    constant : float
        ``sqrt(2)/4`` for softmax, ``sqrt(1 - 1/K)`` for sparsemax, ``inf``
        for hardmax.

    Notes
    -----
    Softmax: :math:`\nabla_z s_c = s_c (e_c - s)`, whose norm is
    :math:`s_c \sqrt{(1 - s_c)^2 + \sum_{j \ne c} s_j^2}
    \le \sqrt2\, s_c (1 - s_c) \le \sqrt2 / 4` (using
    :math:`\sum_{j\ne c} s_j^2 \le (1 - s_c)^2`); the operator norm of the
    whole Jacobian, 1/2, is also valid for one coordinate but looser.
    Sparsemax: the Jacobian is an orthogonal projection
    :math:`P = \mathrm{diag}(s) - s s^\top/|S|`, so row ``c`` has norm
    :math:`\sqrt{P_{cc}} \le \sqrt{1 - 1/K}`; the map is piecewise linear and
    continuous, hence Lipschitz with that constant.  Hardmax is
    discontinuous.  With temperature ``t`` and logits that are
    ``L_logits``-Lipschitz, the class score :math:`S(t z(x))_c` is
    ``constant * t * L_logits``-Lipschitz.

    Examples
    --------
    >>> from smoothlearn.soft import simplex_map_constant
    >>> round(simplex_map_constant("softmax", 10), 6)
    0.353553
    """
    if simplex_map == "softmax":
        return math.sqrt(2.0) / 4.0
    if simplex_map == "sparsemax":
        return math.sqrt(1.0 - 1.0 / n_classes)
    if simplex_map == "hardmax":
        return math.inf
    raise ValueError(
        "The 'simplex_map' parameter must be a str among "
        f"{set(SIMPLEX_MAPS)}. Got {simplex_map!r} instead."
    )


def _default_grid() -> list[tuple[str, float]]:
    """Candidates of ``temperature="auto"``: both smooth maps on a log grid, hardmax."""
    temps = np.geomspace(0.1, 50.0, 12)
    grid = [(m, float(t)) for m in ("softmax", "sparsemax") for t in temps]
    grid.append(("hardmax", 1.0))
    return grid


def _candidate_scores(z: torch.Tensor, codes, temps) -> torch.Tensor:
    """Scores of every candidate: ``(M, B, K)`` float64 (one sort for sparsemax)."""
    z = z.to(torch.float64)
    codes_t = torch.as_tensor(codes, device=z.device)
    t = torch.as_tensor(temps, dtype=torch.float64, device=z.device)[:, None, None]
    tz = t * z[None]
    out = torch.softmax(tz, dim=-1)
    is_sparse = codes_t == _CODE["sparsemax"]
    if bool(is_sparse.any()):
        out[is_sparse] = sparsemax(tz[is_sparse])
    is_hard = codes_t == _CODE["hardmax"]
    if bool(is_hard.any()):
        out[is_hard] = _hardmax(z)[None].expand(int(is_hard.sum()), -1, -1)
    return out.clamp_(0.0, 1.0)


class _LogitAdapter:
    """The base adapter read through its logits (``predict_scores`` = logits).

    For :func:`~smoothlearn.sampling.sample_statistics` with a score map of
    the logits (the soft statistics of this module ask the engine for
    ``"logits"`` directly): torch and skorch models' raw output (a single
    logit ``l`` becomes ``(-l, l)``), scikit-learn models'
    ``log(predict_proba)``, so that softmax at temperature 1 gives back
    ``predict_proba``.
    """

    def __init__(self, adapter):
        self.adapter = adapter
        self.device = adapter.device
        self.dtype = adapter.dtype
        self.n_classes = adapter.n_classes

    def evaluating(self):
        return self.adapter.evaluating()

    def predict_scores(self, batch: torch.Tensor) -> torch.Tensor:
        return self.adapter.predict_logits(batch)


def _hash_parameters(*arrays) -> str:
    """SHA-256 of per-input parameters: the key of a per-input statistic."""
    import hashlib

    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


class _CandidateSums(Statistic):
    """Statistic of the selection pass: every candidate's sums per input.

    Fields ``"sums"`` and ``"sums_sq"`` of shape ``(n_candidates, K)`` per
    input: the sums and sums of squares of each candidate (map, t)'s class
    scores.
    """

    output = "logits"

    def __init__(self, candidates):
        self.codes = [_CODE[m] for m, _ in candidates]
        self.temps = [float(t) for _, t in candidates]
        self.key = {
            "statistic": "soft-candidates",
            "candidates": [[m, float(t)] for m, t in candidates],
        }

    def fields(self, n_classes: int) -> dict:
        shape = (len(self.codes), int(n_classes))
        return {"sums": (shape, np.float64), "sums_sq": (shape, np.float64)}

    def update(self, acc, output, owner, index) -> None:
        s = _candidate_scores(output, self.codes, self.temps).transpose(0, 1)
        acc["sums"].index_add_(0, owner, s)
        acc["sums_sq"].index_add_(0, owner, s * s)


def _per_input_scores(z, codes, temps, index) -> torch.Tensor:
    """Class scores of each row with its input's own (map, t): ``(B, K)`` float64."""
    z = z.to(torch.float64)
    code = torch.as_tensor(codes, device=z.device)[index][:, None]
    t = torch.as_tensor(temps, dtype=torch.float64, device=z.device)[index]
    tz = t[:, None] * z
    out = torch.where(
        code == _CODE["sparsemax"], sparsemax(tz), torch.softmax(tz, dim=-1)
    )
    out = torch.where(code == _CODE["hardmax"], _hardmax(z), out)
    return out.clamp_(0.0, 1.0)


class _ChosenScoreSums(Statistic):
    """Statistic of the estimation pass: sums of each input's own (map, t) scores.

    ``codes`` and ``temps`` (one per input of the engine's ``X``) are the
    selection's choice; the key holds their hash, so a checkpoint refuses to
    continue estimation draws made with other choices.
    """

    output = "logits"

    def __init__(self, codes: NDArray, temps: NDArray):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.temps = np.asarray(temps, dtype=np.float64)
        self.key = {
            "statistic": "soft-chosen",
            "choice_sha256": _hash_parameters(self.codes, self.temps),
        }

    def fields(self, n_classes: int) -> dict:
        shape = (int(n_classes),)
        return {"sums": (shape, np.float64), "sums_sq": (shape, np.float64)}

    def update(self, acc, output, owner, index) -> None:
        s = _per_input_scores(output, self.codes, self.temps, index)
        acc["sums"].index_add_(0, owner, s)
        acc["sums_sq"].index_add_(0, owner, s * s)


class _BettingScoreSums(_ChosenScoreSums):
    """Estimation statistic of soft smoothing with a betting interval.

    The sums and sums of squares of :class:`_ChosenScoreSums`, plus, per
    input, the :class:`~smoothlearn.intervals.BettingState` of every
    quantity the procedure's ``plan`` bounds, fed with that input's draws in
    draw order (the engine's contract), so the bounds can come from
    ``bound_from_states``.  The state lives in the engine's per-input fields
    (``betting_<key>``, the arrays of
    :func:`~smoothlearn._betting_accumulator.pack` less the plan, which is a
    function of the selection), so chunks, workers and checkpoints carry it
    like any sum; ``betting_draws`` counts each input's draws so far (0: the
    state is not initialised yet, the engine's zeros are replaced by a fresh
    state at the input's first batch).  Memory is independent of ``n``.
    """

    def __init__(self, codes, temps, interval, plan, n: int, alpha: float):
        from ._betting_accumulator import BettingAccumulator

        super().__init__(codes, temps)
        self.interval, self.plan = interval, plan
        self.n, self.alpha = int(n), float(alpha)
        fresh = BettingAccumulator(interval, self._rows(np.arange(1)), n, alpha)
        self._shapes = {
            k: (v.shape[1:], v.dtype)
            for k, v in fresh.result().items()
            if not k.startswith("plan_")
        }
        self.key = {
            "statistic": "soft-betting",
            "choice_sha256": self.key["choice_sha256"],
            "plan_sha256": _hash_parameters(
                plan.prediction, plan.members, plan.valid, plan.n_bounds
            ),
            "plan_kind": plan.kind,
            "interval": repr(interval),
            "n": self.n,
            "alpha": self.alpha,
        }

    def _rows(self, idx):
        from .intervals import BoundPlan

        p = self.plan
        return BoundPlan(
            p.prediction[idx], p.members[idx], p.valid[idx], p.n_bounds[idx], p.kind
        )

    def fields(self, n_classes: int) -> dict:
        out = super().fields(n_classes)
        for key, (shape, dtype) in self._shapes.items():
            out[f"betting_{key}"] = (shape, dtype)
        out["betting_draws"] = ((), np.int64)
        return out

    def update(self, acc, output, owner, index) -> None:
        from ._betting_accumulator import BettingAccumulator, pack_plan, unpack

        s = _per_input_scores(output, self.codes, self.temps, index)
        acc["sums"].index_add_(0, owner, s)
        acc["sums_sq"].index_add_(0, owner, s * s)
        own = owner.cpu().numpy()
        glob = index.cpu().numpy()
        local, first, local_rows = np.unique(
            own, return_index=True, return_inverse=True
        )
        idx = glob[first]  # global input of each local row
        draws = acc["betting_draws"][torch.as_tensor(local, device=owner.device)]
        draws = draws.cpu().numpy()
        arrays = {
            k: acc[f"betting_{k}"][torch.as_tensor(local, device=owner.device)]
            .cpu()
            .numpy()
            for k in self._shapes
        }
        new = draws == 0
        if new.any():  # an input's first batch: a fresh state replaces the zeros
            fresh = BettingAccumulator(
                self.interval, self._rows(idx[new]), self.n, self.alpha
            ).result()
            for k in self._shapes:
                arrays[k][new] = fresh[k]
        arrays.update(pack_plan(self._rows(idx)))
        plan, state = unpack(arrays)
        accumulator = BettingAccumulator.__new__(BettingAccumulator)
        accumulator.plan, accumulator.offset, accumulator.state = plan, 0, state
        accumulator.n_draws = draws.copy()
        accumulator.update(s.cpu().numpy(), local_rows.ravel())
        result = accumulator.result()
        where = torch.as_tensor(local, device=owner.device)
        for k in self._shapes:
            dst = acc[f"betting_{k}"]
            dst[where] = torch.as_tensor(result[k], device=dst.device, dtype=dst.dtype)
        counts = np.bincount(local_rows.ravel(), minlength=local.size)
        acc["betting_draws"][where] += torch.as_tensor(
            counts, device=owner.device, dtype=torch.int64
        )

    def betting_state(self, fields: dict) -> dict:
        """The packed plan and state of every input, from the gathered fields."""
        from ._betting_accumulator import pack_plan

        out = {k: np.asarray(fields[f"betting_{k}"]) for k in self._shapes}
        out.update(pack_plan(self.plan))
        return out


def _select_candidates(
    sums: NDArray,
    sums_sq: NDArray,
    n0: int,
    n: int,
    alpha: float,
    procedure,
    kind: str,
    sigma: float,
    constants: NDArray | None,
    method: str,
) -> NDArray[np.int64]:
    r"""Per input, the candidate whose plug-in radius is largest (selection only).

    For candidate ``m`` the procedure is applied to the selection statistics
    rescaled to ``n`` draws (``sums * n / n0``): the bounds that ``n``
    estimation draws with the same empirical means and variances would give
    at the procedure's own per-bound level, then the radius in use with the
    candidate's Lipschitz constant.  Ties go to the first candidate.
    """
    scale = n / n0
    radii = np.empty(sums.shape[:2])
    for m in range(sums.shape[0]):  # a loop over a few dozen candidates, not inputs
        est = sums[m] * scale
        rows = est.sum(axis=1, keepdims=True)
        est = np.where(rows > n, est * (n / rows), est)  # rounding guard
        L = None if constants is None else constants[m]
        if L is not None and not np.isfinite(L):
            L = None
        cert = certify_statistics(
            procedure,
            sums[m],
            est,
            n,
            alpha,
            sigma=sigma,
            kind=kind,
            estimation_sq=sums_sq[m] * scale,
            score_lipschitz=L,
            radius_method=method,
        )
        # the raw formula: among candidates that all abstain, the one closest
        # to a certificate is kept
        radii[m] = np.nan_to_num(cert.raw_radius, posinf=1e300)
    return np.argmax(radii, axis=0).astype(np.int64)


class _Selection(NamedTuple):
    """Each input's simplex map and temperature, chosen on the selection draws."""

    sums: NDArray  # (n_candidates, n_inputs, n_classes) selection sums
    sums_sq: NDArray  # their sums of squares
    chosen: NDArray  # (n_inputs,) index of each input's candidate
    maps: NDArray  # (n_inputs,) simplex map names
    temps: NDArray  # (n_inputs,) inverse temperatures
    codes: NDArray  # (n_inputs,) simplex map codes

    @property
    def selection(self) -> NDArray:
        """The chosen candidate's selection sums, ``(n_inputs, n_classes)``."""
        return self.sums[self.chosen, np.arange(self.chosen.shape[0])]

    def statistic(self, indices=None) -> _ChosenScoreSums:
        """Estimation statistic of ``X[indices]`` (all: None), positions in it."""
        codes, temps = self.codes, self.temps
        if indices is not None:
            codes, temps = codes[indices], temps[indices]
        return _ChosenScoreSums(codes, temps)


def _select_simplex_maps(
    draw,
    X: NDArray,
    candidates: list[tuple[str, float]],
    *,
    n0: int,
    n: int,
    alpha: float,
    procedure,
    kind: str,
    sigma: float,
    constants: NDArray | None = None,
    radius_method: str = "paper",
) -> _Selection:
    """The selection pass of soft smoothing, shared by every certifying path.

    Draws the ``n0`` selection draws of every input (stage selection)
    through ``draw(stage, n_draws, statistic) -> fields`` (the engine, with
    the caller's workers and checkpoint), accumulates the scores of every
    candidate (map, t) (:class:`_CandidateSums`) and keeps, per input,
    the candidate of :func:`_select_candidates` for a budget of ``n``
    estimation draws (the only candidate when there is one).  Fixed-n
    certification, soft PREDICT and sequential certification call it, so
    with the same seed they choose the same (map, t) per input.
    """
    from .sampling import STAGE_SELECTION

    n_inputs = X.shape[0]
    stats = draw(STAGE_SELECTION, n0, _CandidateSums(candidates))
    # the engine's fields have the input axis first: (n_inputs, M, K)
    sums = np.ascontiguousarray(stats["sums"].transpose(1, 0, 2))
    sums_sq = np.ascontiguousarray(stats["sums_sq"].transpose(1, 0, 2))
    if len(candidates) == 1:
        chosen = np.zeros(n_inputs, dtype=np.int64)
    else:
        chosen = _select_candidates(
            sums,
            sums_sq,
            n0,
            n,
            alpha,
            procedure,
            kind,
            sigma,
            constants,
            radius_method,
        )
    maps = np.array([m for m, _ in candidates])[chosen]
    temps = np.array([t for _, t in candidates], dtype=np.float64)[chosen]
    codes = np.array([_CODE[m] for m in maps], dtype=np.int64)
    return _Selection(sums, sums_sq, chosen, maps, temps, codes)


class _PredictMargins(_ChosenScoreSums):
    r"""Statistic of soft PREDICT: each input's margins over its class ``A``.

    With each input's own (map, t) and candidate class ``A`` (chosen on the
    selection draws), a draw with class scores ``f`` gives, for every class
    ``c``, :math:`D_c = (1 + f_A - f_c) / 2 \in [0, 1]` (:math:`D_A = 1/2`).
    Fields: ``"sums"`` of the class scores themselves (for
    ``predict_proba``), ``"d_sums"`` and ``"d_sums_sq"`` of ``D``, each
    ``(K,)`` per input.
    """

    def __init__(self, codes: NDArray, temps: NDArray, top: NDArray):
        super().__init__(codes, temps)
        self.top = np.asarray(top, dtype=np.int64)
        self.key = {
            "statistic": "soft-predict-margins",
            "choice_sha256": _hash_parameters(self.codes, self.temps, self.top),
        }

    def fields(self, n_classes: int) -> dict:
        shape = (int(n_classes),)
        return {name: (shape, np.float64) for name in ("sums", "d_sums", "d_sums_sq")}

    def update(self, acc, output, owner, index) -> None:
        s = _per_input_scores(output, self.codes, self.temps, index)
        acc["sums"].index_add_(0, owner, s)
        top = torch.as_tensor(self.top, device=s.device)[index]
        d = ((1.0 + s.gather(1, top[:, None]) - s) * 0.5).clamp_(0.0, 1.0)
        acc["d_sums"].index_add_(0, owner, d)
        acc["d_sums_sq"].index_add_(0, owner, d * d)
