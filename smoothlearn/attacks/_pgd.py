"""The attacks: l2 PGD on a smoothed classifier and on its base model.

* :class:`SmoothAdvPGD`: l2 projected gradient ascent on the loss of the
  *soft* smoothed classifier, the expectation over the noise estimated with
  ``n_noise`` draws per step (SmoothAdv, Salman et al. 2019);
* :class:`PGD`: plain l2 PGD on the base model (Madry et al. 2018), for
  comparison.

Attacks need gradients of the base model: they read the differentiable
log-probabilities of its adapter (``log_probability``), so they work for
torch modules and skorch nets, and refuse scikit-learn base models with a
ValueError.  Judging the attacks and comparing them with the certificates is
the gap evaluation, in ``_gap.py`` next to this module.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ..models import make_adapter
from ..sampling import STAGE_SELECTION, _block_seed, _root_seed
from ..smoothed import SmoothedClassifier, _check_fitted_input

__all__ = ["PGD", "SmoothAdvPGD"]

#: Block id of the attack's noise streams (the bytes of "attack"): keeps them
#: apart from the streams of SmoothedClassifier even for the same random_state.
_ATTACK_BLOCK = 0x61747461636B

#: Below this gradient norm an input is left where it is (a flat loss).
_TINY = 1e-30


# --------------------------------------------------------------------------
# The differentiable view of the base model
# --------------------------------------------------------------------------
class _gradient_context:
    """Eval mode, parameters frozen, gradients on; all restored on exit."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.module = adapter.module

    def __enter__(self):
        self._eval = self.adapter.evaluating()
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
    if not isinstance(clf, SmoothedClassifier):
        raise ValueError(
            f"The 'clf' parameter of {who} must be a SmoothedClassifier. "
            f"Got {type(clf).__name__} instead."
        )
    check_is_fitted(clf)
    adapter = make_adapter(
        clf.estimator_,
        clf.classes_,
        device=clf.device,
        memory_format=clf.memory_format,
        precision=clf.precision,
    )
    if not adapter.differentiable:
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
        # a data set is loaded whole: the adversarial copies are as large
        X = np.asarray(_check_fitted_input(clf, X))
        radius = _check_radius(radius)
        target = _class_index(clf, y, X.shape[0])
        return self._attack(clf, adapter, X, target, radius)

    def _attack(self, clf, adapter, X, target, radius, offset=0):
        """``generate`` on validated ``X``, whose first input is at position ``offset``.

        The attack's noise of a chunk is keyed by its global position, so
        attacking ``X[a:b]`` with ``offset=a`` (``a`` a multiple of
        :meth:`_chunk`) gives rows ``a:b`` of attacking ``X``.
        """
        if radius == 0.0 or X.shape[0] == 0:
            return X.copy()
        step_size = self._default_step(radius)
        root = self._root()
        device, dtype = adapter.device, adapter.dtype
        log_proba = adapter.log_probability
        chunk = self._chunk(clf)
        out = np.empty_like(X)
        with _gradient_context(adapter):
            for start in range(0, X.shape[0], chunk):
                stop = min(start + chunk, X.shape[0])
                x = torch.from_numpy(np.ascontiguousarray(X[start:stop]))
                x = x.to(device, dtype)
                t = torch.from_numpy(target[start:stop]).to(device)
                loss_fn = self._loss(clf, log_proba, t, root, offset + start)
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
