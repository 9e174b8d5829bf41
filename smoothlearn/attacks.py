"""Attacks on smoothed classifiers, and the gap between certified and empirical.

A certificate is a lower bound on the robust accuracy of the smoothed
classifier; an attack gives an upper bound.  This module provides the
attack side and puts both numbers side by side:

* :class:`SmoothAdvPGD`: l2 projected gradient ascent on the loss of the
  *soft* smoothed classifier, the expectation over the noise estimated with
  ``n_noise`` draws per step (SmoothAdv, Salman et al. 2019);
* :class:`PGD`: plain l2 PGD on the base model (Madry et al. 2018), for
  comparison;
* :func:`empirical_robust_accuracy` and
  :func:`empirical_robust_accuracy_curve`: the fraction of inputs whose
  smoothed prediction (Cohen's PREDICT, fresh noise) survives the attack, in
  the same form as :func:`smoothlearn.metrics.certified_accuracy` and
  :func:`smoothlearn.metrics.certified_accuracy_curve`;
* :func:`gap_report`: per radius, certified accuracy with Cohen's procedure,
  with the paper's (CPM and the multi radius; Lipschitz-aware radii when the
  classifier has them), the empirical robust accuracy, and the share of the
  gap the paper's certificates close.

Attacks need gradients of the base model: they work for torch modules and
skorch nets, and refuse scikit-learn base models with a ValueError.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .metrics import certified_accuracy
from .models import _eval_mode, _first_output, _SklearnAdapter, _SkorchAdapter
from .result import CertificationResult
from .sampling import STAGE_SELECTION, _block_seed, _root_seed

__all__ = [
    "PGD",
    "GapReport",
    "SmoothAdvPGD",
    "empirical_robust_accuracy",
    "empirical_robust_accuracy_curve",
    "gap_report",
]

#: Block id of the attack's noise streams (the bytes of "attack"): keeps them
#: apart from the streams of SmoothedClassifier even for the same random_state.
_ATTACK_BLOCK = 0x61747461636B

#: Below this gradient norm an input is left where it is (a flat loss).
_TINY = 1e-30


# --------------------------------------------------------------------------
# The differentiable view of the base model
# --------------------------------------------------------------------------
def _log_probability_fn(adapter):
    """A map ``batch -> (B, K)`` float64 log-probabilities of the base model.

    * bare torch module: its outputs are logits (one logit ``l`` for a
      binary module is read as the logits ``(-l, l)``, as the sampler does);
    * skorch net whose ``predict_nonlinearity`` is ``"auto"`` with a
      cross-entropy (or BCE-with-logits) criterion: the module's logits;
    * other skorch nets: ``log`` of what ``predict_proba`` would return.

    Log-softmax is taken in float64, so that gradients do not vanish before
    a float32 softmax saturates.
    """
    if isinstance(adapter, _SkorchAdapter):
        net = adapter.net
        criterion = getattr(net, "criterion_", None)
        criterion = getattr(criterion, "_orig_mod", criterion)
        auto = isinstance(net.predict_nonlinearity, str) and (
            net.predict_nonlinearity == "auto"
        )
        if auto and isinstance(criterion, torch.nn.BCEWithLogitsLoss):

            def binary(batch):
                logit = _first_output(net.infer(batch)).reshape(-1).double()
                return torch.stack(
                    (
                        torch.nn.functional.logsigmoid(-logit),
                        torch.nn.functional.logsigmoid(logit),
                    ),
                    dim=1,
                )

            return binary
        if auto and isinstance(criterion, torch.nn.CrossEntropyLoss):

            def logits(batch):
                out = _first_output(net.infer(batch))
                return torch.log_softmax(out.reshape(out.shape[0], -1).double(), 1)

            return logits

        def proba(batch):
            p = adapter.predict_scores(batch).double()
            return torch.log(p.reshape(p.shape[0], -1).clamp_min(1e-300))

        return proba

    def module_logits(batch):
        return torch.log_softmax(adapter.predict_scores(batch).double(), dim=1)

    return module_logits


class _gradient_context:
    """Eval mode, parameters frozen, gradients on; all restored on exit."""

    def __init__(self, adapter):
        self.module = adapter.module

    def __enter__(self):
        self._eval = _eval_mode(self.module)
        self._eval.__enter__()
        self._grad = torch.enable_grad()
        self._grad.__enter__()
        self._requires = [(p, p.requires_grad) for p in self.module.parameters()]
        for p, _ in self._requires:
            p.requires_grad_(False)
        return self

    def __exit__(self, *exc):
        for p, flag in self._requires:
            p.requires_grad_(flag)
        self._grad.__exit__(*exc)
        return self._eval.__exit__(*exc)


def _check_smoothed(clf, who: str):
    """The adapter of a fitted SmoothedClassifier whose base model has gradients."""
    if not (hasattr(clf, "certify") and hasattr(clf, "_adapter")):
        raise ValueError(
            f"The 'clf' parameter of {who} must be a SmoothedClassifier. "
            f"Got {type(clf).__name__} instead."
        )
    check_is_fitted(clf)
    adapter = clf._adapter()
    if isinstance(adapter, _SklearnAdapter):
        raise ValueError(
            f"{who} needs gradients of the base model: the 'clf' parameter must "
            "wrap a torch.nn.Module or a skorch net. Got a scikit-learn base "
            f"estimator ({type(clf.estimator_).__name__}) instead; gradient-free "
            "attacks are not provided."
        )
    return adapter


def _check_radius(radius, name: str = "radius") -> float:
    if isinstance(radius, bool) or not isinstance(radius, Real | np.floating):
        raise ValueError(
            f"The {name!r} parameter must be a float in the range [0, inf). "
            f"Got {radius!r} instead."
        )
    r = float(radius)
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(
            f"The {name!r} parameter must be a float in the range [0, inf). "
            f"Got {radius!r} instead."
        )
    return r


def _class_index(clf, y, n_inputs: int) -> NDArray[np.int64]:
    """Column of each label of ``y`` in ``clf.classes_`` (ValueError if absent)."""
    y = np.asarray(y)
    if y.shape != (n_inputs,):
        raise ValueError(
            f"The 'y' parameter must have shape ({n_inputs},), one label per input. "
            f"Got {y.shape} instead."
        )
    classes = np.asarray(clf.classes_)
    sorter = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes, y, sorter=sorter)
    index = sorter[np.minimum(pos, len(classes) - 1)]
    if not np.all(classes[index] == y):
        raise ValueError(
            "The 'y' parameter holds labels that are not among the classifier's "
            "classes_."
        )
    return index.astype(np.int64)


def _pgd(
    loss_fn,
    x: torch.Tensor,
    radius: float,
    n_steps: int,
    step_size: float,
) -> torch.Tensor:
    """l2 PGD ascent from ``x`` (shape ``(B, *input_shape)``) on ``loss_fn``.

    ``loss_fn(x_adv, step)`` returns the per-input losses ``(B,)``; each step
    moves every input by ``step_size`` along its normalised gradient, then
    projects the perturbation onto the l2 ball of radius ``radius``.
    """
    delta = torch.zeros_like(x)
    dims = tuple(range(1, x.ndim))
    view = (-1,) + (1,) * (x.ndim - 1)
    for step in range(n_steps):
        delta.requires_grad_(True)
        loss = loss_fn(x + delta, step)
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            grad = grad.double()
            norm = torch.linalg.vector_norm(grad, dim=dims)
            scale = torch.where(
                norm > _TINY, step_size / norm.clamp_min(_TINY), torch.zeros_like(norm)
            )
            new = delta.detach().double() + grad * scale.reshape(view)
            size = torch.linalg.vector_norm(new, dim=dims)
            shrink = torch.clamp(radius / size.clamp_min(_TINY), max=1.0)
            delta = (new * shrink.reshape(view)).to(x.dtype)
    return (x + delta).detach()


class _BaseAttack(BaseEstimator):
    """Shared driver: validation, chunks of inputs on the model's device."""

    _name = "attack"

    def _default_step(self, radius: float) -> float:
        # Madry et al.'s rule of thumb: 2.5 * radius / steps lets the iterate
        # reach the sphere and still move along it.
        return 2.5 * radius / self.n_steps if self.step_size is None else self.step_size

    def _chunk(self, clf) -> int:
        batch = clf.batch_size if self.batch_size is None else self.batch_size
        return max(1, int(batch) // self._forward_copies())

    def _forward_copies(self) -> int:
        return 1

    def generate(self, clf, X: ArrayLike, y: ArrayLike, radius: float) -> NDArray:
        """Adversarial copies of ``X`` within l2 distance ``radius``.

        Parameters
        ----------
        clf : SmoothedClassifier
            A fitted smoothed classifier whose base model is a torch module or
            a skorch net.
        X : array-like of shape (n_inputs, \\*input_shape)
            Inputs to attack.
        y : array-like of shape (n_inputs,)
            Their true labels (in ``clf.classes_``).
        radius : float
            The l2 budget ``epsilon``, >= 0.

        Returns
        -------
        X_adv : ndarray of shape (n_inputs, \\*input_shape)
            Same dtype as the validated ``X``; ``||X_adv[i] - X[i]||_2 <=
            radius`` (up to rounding to that dtype).
        """
        self._validate_params()
        adapter = _check_smoothed(clf, type(self).__name__)
        X = clf._validate_X(X)
        radius = _check_radius(radius)
        target = _class_index(clf, y, X.shape[0])
        if radius == 0.0 or X.shape[0] == 0:
            return X.copy()
        step_size = self._default_step(radius)
        root = self._root()
        device, dtype = adapter.device, adapter.dtype
        log_proba = _log_probability_fn(adapter)
        chunk = self._chunk(clf)
        out = np.empty_like(X)
        with _gradient_context(adapter):
            for start in range(0, X.shape[0], chunk):
                stop = min(start + chunk, X.shape[0])
                x = torch.from_numpy(np.ascontiguousarray(X[start:stop]))
                x = x.to(device, dtype)
                t = torch.from_numpy(target[start:stop]).to(device)
                loss_fn = self._loss(clf, log_proba, t, root, start)
                x_adv = _pgd(loss_fn, x, radius, self.n_steps, step_size)
                out[start:stop] = x_adv.cpu().numpy().astype(X.dtype, copy=False)
        return out

    def _root(self):
        return None

    def _loss(self, clf, log_proba, target, root, start):  # pragma: no cover
        raise NotImplementedError


class SmoothAdvPGD(_BaseAttack):
    r"""l2 PGD on the smoothed classifier (SmoothAdv, Salman et al. 2019).

    Maximises the cross-entropy of the *soft* smoothed classifier
    ``G(x) = E_d[softmax(f(x + d))]``, ``d ~ N(0, sigma^2 I)``, estimated at
    every step with ``n_noise`` fresh noise draws, by projected normalised
    gradient ascent in the l2 ball of radius ``radius``.

    Parameters
    ----------
    n_steps : int, default=20
        Number of gradient steps, >= 1.
    step_size : float, default=None
        l2 length of each step; None means ``2.5 * radius / n_steps``.
    n_noise : int, default=16
        Noise draws ``m`` per input and step estimating the expectation.
    batch_size : int, default=None
        Noisy samples per forward pass (``batch_size // n_noise`` inputs per
        chunk); None uses the classifier's ``batch_size``.
    random_state : int, RandomState instance or None, default=None
        Source of the attack's noise (torch generators on the model's device;
        the global generators are never touched).  The streams differ from
        the classifier's own even for the same seed.

    See Also
    --------
    PGD : the plain attack on the base model.
    empirical_robust_accuracy : judges an attack by the smoothed PREDICT.

    Notes
    -----
    With draws :math:`d_1, \dots, d_m` the loss of input ``x'`` with label
    ``y`` is

    .. math::

        \ell(x') = -\log\Bigl(\frac{1}{m}\sum_{j=1}^m
                   \mathrm{softmax}\bigl(f(x' + d_j)\bigr)_y\Bigr),

    and a step is :math:`\delta \leftarrow \Pi_{\|\delta\|_2 \le \epsilon}
    (\delta + \eta\,\nabla\ell / \|\nabla\ell\|_2)`, starting at
    :math:`\delta = 0`, with fresh draws at each step (expectation over
    transformation).  The base model is put in eval mode and its parameters
    stop requiring gradients during the attack; both are restored after.

    The noise of a chunk of inputs is seeded from ``random_state`` and the
    chunk's first input, so results are reproducible for a fixed
    ``random_state`` and ``batch_size``.  The attack does not clip to a data
    range: certificates hold in the whole l2 ball, so the attack may use it.

    References
    ----------
    .. [1] Salman, Li, Razenshteyn, Zhang, Zhang, Bubeck & Yang, "Provably
       Robust Deep Learning via Adversarially Trained Smoothed Classifiers",
       NeurIPS 2019.
    .. [2] Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning
       Models Resistant to Adversarial Attacks", ICLR 2018.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.attacks import SmoothAdvPGD
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[1.0, 0.0], [-2.0, 1.0]], dtype=np.float32)
    >>> clf = SmoothedClassifier(model, sigma=0.25, n=1000).fit(X, [1, 0])
    >>> X_adv = SmoothAdvPGD(n_steps=10, random_state=0).generate(
    ...     clf, X, [1, 0], radius=0.5)
    >>> X_adv.round(3)  # half a unit towards the boundary x0 = 0
    array([[ 0.5,  0. ],
           [-1.5,  1. ]], dtype=float32)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "step_size": [None, Interval(Real, 0, None, closed="neither")],
        "n_noise": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_steps=20,
        step_size=None,
        n_noise=16,
        batch_size=None,
        random_state=None,
    ):
        self.n_steps = n_steps
        self.step_size = step_size
        self.n_noise = n_noise
        self.batch_size = batch_size
        self.random_state = random_state

    def _forward_copies(self) -> int:
        return int(self.n_noise)

    def _root(self):
        return _root_seed(self.random_state)

    def _loss(self, clf, log_proba, target, root, start):
        m = int(self.n_noise)
        sigma = float(clf.sigma)
        generator = None

        def loss(x_adv, step):
            nonlocal generator
            if generator is None:
                generator = torch.Generator(device=x_adv.device)
                generator.manual_seed(
                    _block_seed(root, start, STAGE_SELECTION, _ATTACK_BLOCK)
                )
            b, shape = x_adv.shape[0], x_adv.shape[1:]
            noise = torch.randn(
                (b, m, *shape),
                generator=generator,
                device=x_adv.device,
                dtype=x_adv.dtype,
            )
            noisy = (x_adv.unsqueeze(1) + sigma * noise).reshape(b * m, *shape)
            logp = log_proba(noisy).reshape(b, m, -1)
            logp_y = logp.gather(2, target.reshape(b, 1, 1).expand(b, m, 1))
            # log of the mean probability, computed stably
            return -(torch.logsumexp(logp_y[..., 0], dim=1) - math.log(m))

        return loss


class PGD(_BaseAttack):
    r"""Plain l2 PGD on the base model (Madry et al. 2018), no noise.

    Maximises the cross-entropy ``-log softmax(f(x'))_y`` of the base
    classifier ``f`` of a :class:`~smoothlearn.SmoothedClassifier` in the l2
    ball of radius ``radius``.  The adversarial inputs it returns are judged
    like any other by :func:`empirical_robust_accuracy`, i.e. by the
    *smoothed* classifier: it is the naive (transfer) attack that
    :class:`SmoothAdvPGD` improves upon.

    Parameters
    ----------
    n_steps : int, default=20
        Number of gradient steps, >= 1.
    step_size : float, default=None
        l2 length of each step; None means ``2.5 * radius / n_steps``.
    batch_size : int, default=None
        Inputs per forward pass; None uses the classifier's ``batch_size``.

    See Also
    --------
    SmoothAdvPGD : the attack on the smoothed classifier itself.

    Notes
    -----
    A step is :math:`\delta \leftarrow \Pi_{\|\delta\|_2 \le \epsilon}
    (\delta + \eta\,\nabla\ell / \|\nabla\ell\|_2)` from :math:`\delta = 0`,
    with :math:`\ell(x') = -\log \mathrm{softmax}(f(x'))_y`.  Deterministic.

    References
    ----------
    .. [1] Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning
       Models Resistant to Adversarial Attacks", ICLR 2018.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.attacks import PGD
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[1.0, 0.0]], dtype=np.float32)
    >>> clf = SmoothedClassifier(model, sigma=0.25, n=1000).fit(X, [1])
    >>> PGD(n_steps=10).generate(clf, X, [1], radius=0.25).round(3)
    array([[0.75, 0.  ]], dtype=float32)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "step_size": [None, Interval(Real, 0, None, closed="neither")],
        "batch_size": [None, Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_steps=20, step_size=None, batch_size=None):
        self.n_steps = n_steps
        self.step_size = step_size
        self.batch_size = batch_size

    def _loss(self, clf, log_proba, target, root, start):
        def loss(x_adv, step):
            logp = log_proba(x_adv)
            return -logp.gather(1, target.reshape(-1, 1))[:, 0]

        return loss


# --------------------------------------------------------------------------
# Empirical robust accuracy
# --------------------------------------------------------------------------
def _check_attack(attack):
    if attack is None:
        return SmoothAdvPGD()
    if not callable(getattr(attack, "generate", None)):
        raise ValueError(
            "The 'attack' parameter must be None or an attack with a 'generate' "
            f"method (SmoothAdvPGD, PGD). Got {attack!r} instead."
        )
    return attack


def _check_radii_array(radii, name: str = "radii") -> NDArray[np.float64]:
    try:
        r = np.asarray(radii, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The {name!r} parameter must hold non-negative finite floats. "
            f"Got {radii!r} instead."
        ) from exc
    if r.ndim > 1 or r.size == 0 or not np.all(np.isfinite(r) & (r >= 0)):
        raise ValueError(
            f"The {name!r} parameter must be a non-negative finite float or a "
            f"non-empty 1-D array of them. Got {radii!r} instead."
        )
    return r


def _judge(clf, n_predict):
    """The classifier whose PREDICT judges the attacks (``n_predict`` draws)."""
    if n_predict is None:
        return clf
    if isinstance(n_predict, bool) or not isinstance(n_predict, Integral | np.integer):
        raise ValueError(
            "The 'n_predict' parameter must be an int in the range [1, inf) or "
            f"None. Got {n_predict!r} instead."
        )
    if n_predict < 1:
        raise ValueError(
            "The 'n_predict' parameter must be an int in the range [1, inf) or "
            f"None. Got {n_predict!r} instead."
        )
    # a shallow copy shares the fitted model; only its number of draws differs
    return copy.copy(clf).set_params(n=int(n_predict))


def _robust_mask(clf, X, y, radii, attack, n_predict=None) -> NDArray[np.bool_]:
    """``(n_inputs, n_radii)``: PREDICT is right on x and on every attack up to r.

    ``radii`` are sorted; column ``k`` is True when PREDICT returns the true
    label on the clean input and on the attacked copies at every radius
    ``radii[j] <= radii[k]`` (any of them lies in the ball of radius
    ``radii[k]``).
    """
    attack = _check_attack(attack)
    _check_smoothed(clf, "empirical_robust_accuracy")
    judge = _judge(clf, n_predict)
    X = clf._validate_X(X)
    y = np.asarray(y)
    _class_index(clf, y, X.shape[0])
    ok = np.asarray(judge.predict(X) == y, dtype=bool)
    columns = []
    for r in radii:
        if r > 0.0:
            X_adv = attack.generate(clf, X, y, radius=float(r))
            ok = ok & np.asarray(judge.predict(X_adv) == y, dtype=bool)
        columns.append(ok)
    return np.stack(columns, axis=1)


def empirical_robust_accuracy(
    clf,
    X: ArrayLike,
    y: ArrayLike,
    radius: ArrayLike = 0.0,
    *,
    attack=None,
    n_predict: int | None = None,
) -> float | NDArray[np.float64]:
    r"""Fraction of inputs whose smoothed prediction survives an l2 attack.

    The attack's success is judged by the classifier's own
    :meth:`~smoothlearn.SmoothedClassifier.predict` (Cohen's PREDICT, its own
    noise, independent of the attack's), never by the attack's estimate.

    Parameters
    ----------
    clf : SmoothedClassifier
        Fitted; its base model must be a torch module or a skorch net.
    X : array-like of shape (n_inputs, \*input_shape)
        Inputs.
    y : array-like of shape (n_inputs,)
        True labels.
    radius : float or array-like of shape (n_radii,), default=0.0
        Attack budget(s) in l2 norm, >= 0.
    attack : SmoothAdvPGD or PGD, default=None
        The attack; None means ``SmoothAdvPGD()``.
    n_predict : int, default=None
        Draws of the PREDICT that judges the attacks; None uses ``clf.n``.

    Returns
    -------
    accuracy : float or ndarray of shape (n_radii,)
        :math:`\frac{1}{m}\sum_i 1[\mathrm{PREDICT}(x_i) = y_i \text{ and }
        \mathrm{PREDICT}(x^{adv}_{i,r'}) = y_i \ \forall r' \le r]`, ``r'``
        ranging over the given radii; an abstention counts as wrong, as in
        :func:`~smoothlearn.metrics.certified_accuracy`.

    See Also
    --------
    empirical_robust_accuracy_curve : the same over a grid of radii.
    smoothlearn.metrics.certified_accuracy : the certified lower bound.

    Notes
    -----
    An attack finds *some* adversarial inputs, so this is an upper bound on
    the true robust accuracy of PREDICT (up to PREDICT's own error rate
    ``alpha``), while certified accuracy is a lower bound.  A certificate at
    radius ``r`` says that the exact smoothed classifier keeps its class in
    the ball, not that a Monte-Carlo PREDICT answers there: PREDICT abstains
    where the two top classes are within about
    :math:`z_{1-\alpha/2} / (2\sqrt{n})` of each other, which with the same
    ``n`` and ``alpha`` is about as wide as CERTIFY's own slack.  To compare
    certified and empirical accuracy, judge with ``n_predict`` well above
    the ``n`` of the certificates (then certified <= empirical at every
    radius unless a certificate fails).  Each radius costs one attack and
    one PREDICT of ``n_predict`` draws per input.

    References
    ----------
    .. [1] Salman et al., "Provably Robust Deep Learning via Adversarially
       Trained Smoothed Classifiers", NeurIPS 2019.
    .. [2] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.attacks import SmoothAdvPGD, empirical_robust_accuracy
    >>> model = torch.nn.Linear(1, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[0.5], [1.0], [2.0]], dtype=np.float32)  # margins
    >>> y = np.array([1, 1, 1])
    >>> clf = SmoothedClassifier(model, sigma=0.25, n=1000, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> empirical_robust_accuracy(clf, X, y, radius=0.75,
    ...     attack=SmoothAdvPGD(n_steps=5, n_noise=4, random_state=0))
    0.6666666666666666
    """
    r = _check_radii_array(radius, "radius")
    order = np.argsort(r.ravel(), kind="stable")
    sorted_r = r.ravel()[order]
    mask = _robust_mask(clf, X, y, sorted_r, attack, n_predict)
    acc = np.empty(sorted_r.shape, dtype=np.float64)
    acc[order] = mask.mean(axis=0)
    return float(acc[0]) if r.ndim == 0 else acc


def empirical_robust_accuracy_curve(
    clf,
    X: ArrayLike,
    y: ArrayLike,
    radii: ArrayLike,
    *,
    attack=None,
    n_predict: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Empirical robust accuracy over a grid of radii, as a plottable curve.

    Same form as :func:`smoothlearn.metrics.certified_accuracy_curve`, so
    both go on one axes with
    :func:`smoothlearn.plotting.plot_certified_accuracy`.

    Parameters
    ----------
    clf : SmoothedClassifier
        Fitted; its base model must be a torch module or a skorch net.
    X : array-like of shape (n_inputs, \\*input_shape)
        Inputs.
    y : array-like of shape (n_inputs,)
        True labels.
    radii : array-like of shape (n_radii,)
        Attack budgets, >= 0 (sorted on return).
    attack : SmoothAdvPGD or PGD, default=None
        The attack; None means ``SmoothAdvPGD()``.
    n_predict : int, default=None
        Draws of the PREDICT that judges the attacks; None uses ``clf.n``.

    Returns
    -------
    radii : ndarray of shape (n_radii,)
        Sorted radii.
    accuracy : ndarray of shape (n_radii,)
        Empirical robust accuracy at each radius (non-increasing: an input
        broken at a radius counts as broken at every larger one).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.attacks import PGD, empirical_robust_accuracy_curve
    >>> model = torch.nn.Linear(1, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[0.5], [1.0], [2.0]], dtype=np.float32)
    >>> y = np.array([1, 1, 1])
    >>> clf = SmoothedClassifier(model, sigma=0.25, n=1000, random_state=0)
    >>> empirical_robust_accuracy_curve(clf.fit(X, y), X, y, [0.0, 0.75, 1.5],
    ...                                 attack=PGD(n_steps=5))
    (array([0.  , 0.75, 1.5 ]), array([1.        , 0.66666667, 0.33333333]))
    """
    r = _check_radii_array(radii)
    r = np.sort(r.ravel())
    mask = _robust_mask(clf, X, y, r, attack, n_predict)
    return r, mask.mean(axis=0).astype(np.float64)


# --------------------------------------------------------------------------
# The gap report
# --------------------------------------------------------------------------
#: Column keys of the certificates, and their Markdown headers.
_CERT_HEADERS = {
    "certified_cohen": "certified (Cohen: top class, mono)",
    "certified_cpm": "certified (CPM, multi)",
    "certified_lipschitz": "certified (Lipschitz)",
}


@dataclass(frozen=True, eq=False)
class GapReport:
    r"""Certified and empirical robust accuracy side by side, per radius.

    Returned by :func:`gap_report`.

    Attributes
    ----------
    radii : ndarray of shape (n_radii,)
        Sorted l2 radii.
    certified : dict of str to ndarray of shape (n_radii,)
        Certified accuracy per method: ``"certified_cohen"`` (Cohen's
        procedure: top class with Clopper-Pearson, mono radius),
        ``"certified_cpm"`` (class partitioning, multi radius), and
        ``"certified_lipschitz"`` when the classifier has Lipschitz-aware
        radii.
    empirical : ndarray of shape (n_radii,)
        Empirical robust accuracy under ``attack``.
    results : dict of str to CertificationResult
        The certificates behind each ``certified`` column (same keys), e.g.
        for :func:`smoothlearn.plotting.plot_certified_accuracy`.
    n_inputs : int
        Number of inputs.
    attack : object
        The attack used.

    Notes
    -----
    The gap closed by a method ``M`` at radius ``r`` is

    .. math::

        \frac{\mathrm{cert}_M(r) - \mathrm{cert}_{Cohen}(r)}
             {\mathrm{emp}(r) - \mathrm{cert}_{Cohen}(r)},

    defined (else NaN) where the empirical accuracy exceeds Cohen's
    certified accuracy: 0 means no gain over Cohen, 1 means the certificate
    reaches what the attack leaves.
    """

    radii: NDArray[np.float64]
    certified: dict
    empirical: NDArray[np.float64]
    results: dict = field(repr=False)
    n_inputs: int
    attack: object = None

    @property
    def gap_closed(self) -> dict:
        """Share of the Cohen-to-empirical gap closed, per non-Cohen method.

        Returns
        -------
        dict of str to ndarray of shape (n_radii,)
            Keys ``"gap_closed_cpm"`` (and ``"gap_closed_lipschitz"``); NaN
            where the empirical accuracy does not exceed Cohen's.
        """
        cohen = self.certified["certified_cohen"]
        gap = self.empirical - cohen
        out = {}
        for key, acc in self.certified.items():
            if key == "certified_cohen":
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                closed = np.where(gap > 0, (acc - cohen) / gap, np.nan)
            out["gap_closed_" + key.removeprefix("certified_")] = closed
        return out

    def curves(self) -> dict:
        """``{label: (radii, accuracy)}`` of every column, for plotting.

        Returns
        -------
        dict of str to tuple of two ndarrays of shape (n_radii,)
            Ready for :func:`smoothlearn.plotting.plot_certified_accuracy`.
        """
        out = {_CERT_HEADERS[k]: (self.radii, v) for k, v in self.certified.items()}
        out["empirical"] = (self.radii, self.empirical)
        return out

    def rows(self) -> list[dict]:
        """One dict per radius: radius, certified columns, empirical, gap closed.

        Returns
        -------
        list of dict
        """
        columns = {
            "radius": self.radii,
            **self.certified,
            "empirical": self.empirical,
            **self.gap_closed,
        }
        return [
            {k: float(v[i]) for k, v in columns.items()} for i in range(len(self.radii))
        ]

    def to_frame(self):
        """The rows as a :class:`pandas.DataFrame` (needs pandas).

        Returns
        -------
        pandas.DataFrame
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a test extra
            raise ImportError(
                "GapReport.to_frame needs pandas: pip install 'smoothlearn[pandas]'."
            ) from exc
        return pd.DataFrame(self.rows())

    def to_markdown(self, digits: int = 3) -> str:
        """A Markdown table, one line per radius.

        Parameters
        ----------
        digits : int, default=3
            Decimals of the accuracies.

        Returns
        -------
        str
        """
        headers = ["radius", *(_CERT_HEADERS[k] for k in self.certified)]
        headers.append("empirical (attack)")
        gaps = self.gap_closed
        headers += [
            "gap closed (" + k.removeprefix("gap_closed_").replace("cpm", "CPM") + ")"
            for k in gaps
        ]

        def fmt(v):
            return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"

        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---:" for _ in headers) + "|",
        ]
        for i, r in enumerate(self.radii):
            cells = [f"{r:g}"]
            cells += [fmt(acc[i]) for acc in self.certified.values()]
            cells.append(fmt(self.empirical[i]))
            cells += [fmt(g[i]) for g in gaps.values()]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def gap_report(
    clf,
    X: ArrayLike,
    y: ArrayLike,
    radii: ArrayLike = (0.25, 0.5, 0.75, 1.0),
    *,
    attack=None,
    n_predict: int | None = None,
    result: CertificationResult | None = None,
) -> GapReport:
    r"""Certified accuracy (Cohen's and the paper's) next to empirical robustness.

    Per radius: certified accuracy with Cohen's procedure (top class with
    Clopper-Pearson, mono radius), with the class-partitioning method and
    the multi radius of Delattre et al. (on the same statistics, through
    :meth:`CertificationResult.recertify`), with the classifier's
    Lipschitz-aware radii when it has them (``clf.lipschitz`` set), the
    empirical robust accuracy under an attack judged by PREDICT, and the
    share of the gap between Cohen's certificate and the attack that the
    paper's certificates close.

    Parameters
    ----------
    clf : SmoothedClassifier
        Fitted; its base model must be a torch module or a skorch net.
    X : array-like of shape (n_inputs, \*input_shape)
        Test inputs.
    y : array-like of shape (n_inputs,)
        Their true labels.
    radii : array-like of shape (n_radii,), default=(0.25, 0.5, 0.75, 1.0)
        l2 radii, >= 0.
    attack : SmoothAdvPGD or PGD, default=None
        The attack; None means ``SmoothAdvPGD()``.
    n_predict : int, default=None
        Draws of the PREDICT that judges the attacks; None uses ``clf.n``.
    result : CertificationResult, default=None
        Hard-smoothing certificates of ``X`` already computed by
        ``clf.certify(X)`` (any procedure or radius: they are recomputed
        from its statistics); None certifies ``X`` here.

    Returns
    -------
    GapReport
        With ``to_markdown()``, ``rows()``, ``to_frame()`` and ``curves()``.

    Notes
    -----
    Cohen's and the CPM columns need hard (count) statistics: for a
    classifier with soft smoothing or a Lipschitz constant they certify the
    hard-smoothed classifier of the same base model (a shallow copy with
    ``smoothing="hard", lipschitz=None``), while the Lipschitz column is
    ``clf.certify(X)`` itself.  Each certificate holds with probability at
    least ``1 - clf.alpha`` per input.

    References
    ----------
    .. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.
    .. [2] Delattre, Caillon, Barthélemy, Fagnou & Allauzen, "Bridging the
       Theoretical Gap in Randomized Smoothing", AISTATS 2025.
    .. [3] Salman et al., "Provably Robust Deep Learning via Adversarially
       Trained Smoothed Classifiers", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.attacks import SmoothAdvPGD, gap_report
    >>> model = torch.nn.Linear(1, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[0.5], [1.0], [2.0], [-1.0]], dtype=np.float32)
    >>> y = np.array([1, 1, 1, 0])
    >>> clf = SmoothedClassifier(model, sigma=0.5, n=2000, alpha=0.01,
    ...                          random_state=0).fit(X, y)
    >>> report = gap_report(clf, X, y, radii=[0.25, 0.75],
    ...     attack=SmoothAdvPGD(n_steps=5, n_noise=4, random_state=0))
    >>> print(report.to_markdown(2))  # doctest: +NORMALIZE_WHITESPACE
    | radius | certified (Cohen: top class, mono) | certified (CPM, multi) | empirical (attack) | gap closed (CPM) |
    |---:|---:|---:|---:|---:|
    | 0.25 | 1.00 | 1.00 | 1.00 | n/a |
    | 0.75 | 0.75 | 0.75 | 0.75 | n/a |
    """  # noqa: E501
    r = np.sort(_check_radii_array(radii).ravel())
    attack = _check_attack(attack)
    _check_smoothed(clf, "gap_report")
    X = clf._validate_X(X)
    y = np.asarray(y)
    _class_index(clf, y, X.shape[0])
    lipschitz = getattr(clf, "lipschitz", None)
    smoothing = getattr(clf, "smoothing", "hard")
    if result is None:
        hard = clf
        if smoothing != "hard" or lipschitz is not None:
            hard = copy.copy(clf).set_params(smoothing="hard", lipschitz=None)
        result = hard.certify(X)
    elif not isinstance(result, CertificationResult):
        raise ValueError(
            "The 'result' parameter must be a CertificationResult or None. "
            f"Got {type(result).__name__} instead."
        )
    if result.smoothing != "hard" or result.n_inputs != X.shape[0]:
        raise ValueError(
            "The 'result' parameter must hold hard-smoothing certificates of the "
            f"{X.shape[0]} inputs of X. Got {result.n_inputs} inputs with "
            f"smoothing={result.smoothing!r} instead."
        )
    results = {
        "certified_cohen": result.recertify(interval="top_class", radius="mono"),
        "certified_cpm": result.recertify(interval="cpm", radius="multi"),
    }
    if lipschitz is not None:
        results["certified_lipschitz"] = clf.certify(X)
    certified = {
        k: np.asarray(certified_accuracy(y, res, r), dtype=np.float64)
        for k, res in results.items()
    }
    mask = _robust_mask(clf, X, y, r, attack, n_predict)
    return GapReport(
        radii=r,
        certified=certified,
        empirical=mask.mean(axis=0).astype(np.float64),
        results=results,
        n_inputs=int(X.shape[0]),
        attack=attack,
    )
