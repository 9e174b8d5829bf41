"""Attacks on smoothed classifiers, and the gap between certified and empirical.

A certificate is a lower bound on the robust accuracy of the smoothed
classifier; an attack gives an upper bound.  This package provides the
attack side and puts both numbers side by side, in two modules:

* the attacks (``_pgd``): :class:`SmoothAdvPGD`, l2 projected gradient
  ascent on the loss of the *soft* smoothed classifier, the expectation over
  the noise estimated with ``n_noise`` draws per step (SmoothAdv, Salman et
  al. 2019); :class:`PGD`, plain l2 PGD on the base model (Madry et al.
  2018), for comparison;
* the gap evaluation (``_gap``), which only calls an attack's ``generate``:
  :func:`empirical_robust_accuracy` and
  :func:`empirical_robust_accuracy_curve`, the fraction of inputs whose
  smoothed prediction (Cohen's PREDICT, fresh noise) survives the attack, in
  the same form as :func:`smoothlearn.metrics.certified_accuracy` and
  :func:`smoothlearn.metrics.certified_accuracy_curve`; :func:`gap_report`,
  per radius, certified accuracy with Cohen's procedure, with the paper's
  (CPM and the multi radius; Lipschitz-aware radii when the classifier has
  them), the empirical robust accuracy, and the share of the gap the paper's
  certificates close.

Attacks need gradients of the base model: they work for torch modules and
skorch nets, and refuse scikit-learn base models with a ValueError.
"""

from ._gap import (
    GapReport,
    empirical_robust_accuracy,
    empirical_robust_accuracy_curve,
    gap_report,
)
from ._pgd import PGD, SmoothAdvPGD

__all__ = [
    "PGD",
    "GapReport",
    "SmoothAdvPGD",
    "empirical_robust_accuracy",
    "empirical_robust_accuracy_curve",
    "gap_report",
]
