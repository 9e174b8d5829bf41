"""smoothlearn: randomized-smoothing certification, the scikit-learn way.

Randomized smoothing (Cohen, Rosenfeld & Kolter 2019) turns any classifier
``f`` into a smoothed classifier ``g(x) = argmax_c P(f(x + d) = c)`` with
``d ~ N(0, sigma^2 I)``, whose prediction provably cannot change within an
l2 radius.  smoothlearn implements it together with the tighter confidence
bounds and Lipschitz-aware radii of Delattre et al. (AISTATS 2025).
"""

__version__ = "0.1.0.dev0"

from .result import ApproximateCertificateWarning, CertificationResult
from .sequential import SequentialCertificationResult, SequentialCertifier
from .smoothed import SmoothedClassifier

__all__ = [
    "ApproximateCertificateWarning",
    "CertificationResult",
    "SequentialCertificationResult",
    "SequentialCertifier",
    "SmoothedClassifier",
    "__version__",
]
