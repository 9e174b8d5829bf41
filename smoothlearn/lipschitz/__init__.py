r"""Lipschitz constants of a base model's class scores.

A Lipschitz-aware radius (:func:`smoothlearn.radius.lipschitz_radius`) needs
``L``, the l2 Lipschitz constant of every [0, 1]-valued class score
:math:`f_c(x) = S(t\,z(x))_c`, where :math:`z` are the model's logits,
:math:`t > 0` an inverse temperature and :math:`S` a simplex map.  By the chain
rule for Lipschitz maps,

.. math::

    \mathrm{Lip}(f_c) \le \mathrm{Lip}(S_c)\; t\; \mathrm{Lip}(z),

with :math:`\mathrm{Lip}(S_c) = \sqrt2/4` for softmax, :math:`\sqrt{1 - 1/K}`
for sparsemax and :math:`\infty` for hardmax
(:func:`smoothlearn.soft.simplex_map_constant`).  Every estimator here has

* ``logit_constant(model, X=None)``: the constant of the logits
  :math:`x \mapsto z(x)` (l2 to l2), what ``SmoothedClassifier(lipschitz=...)``
  takes;
* ``estimate(model, X=None, *, simplex_map="softmax", temperature=1.0)``: the
  constant of each class score after the simplex map;
* a class attribute ``guaranteed``: True for upper bounds, False for
  estimates, which must never enter a certificate.

The noise of randomized smoothing is added to the model's *input*, so the
constant must be in the units of that input: an input-normalisation layer
inside the model (e.g. :class:`Normalize`, or Cohen et al.'s
``NormalizeLayer``) contributes ``1 / min(std)``.

The package is split by concern, with imports in one direction
(estimators -> graph walk -> function rules -> layer rules -> operator norms
and layers): ``_estimators`` (the four estimators), ``_graph`` (the torch.fx
graph walk of :class:`SpectralProductLipschitz`), ``_functions`` (the bounds
of the functions and tensor methods a traced forward calls), ``_rules`` (the
bound of each layer type), ``_operators`` (certified matrix, convolution and
pooling norms) and ``_layers`` (:class:`Normalize` and :class:`Residual`,
which users put in their models).  Every public name is imported from
``smoothlearn.lipschitz``.
"""

from ._estimators import (
    ConstantLipschitz,
    LipschitzEstimator,
    LocalGradientLipschitz,
    SpectralProductLipschitz,
)
from ._layers import Normalize, Residual

__all__ = [
    "ConstantLipschitz",
    "LipschitzEstimator",
    "LocalGradientLipschitz",
    "Normalize",
    "Residual",
    "SpectralProductLipschitz",
]
