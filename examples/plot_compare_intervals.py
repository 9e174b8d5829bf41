"""
Comparing confidence intervals (for statisticians)
==================================================

A certificate is only as sound as the confidence bound under it.
:mod:`smoothlearn.stats` computes the **exact** coverage and expected width of
every interval method, by summing over the binomial law (no simulation), and
estimates the failure rate of the multi-class procedures by simulation.
"""

# %%
# Exact coverage of one-sided lower bounds
# ----------------------------------------
# A certificate uses a one-sided lower bound on the top-class probability.
# Clopper-Pearson, Hoeffding (and empirical Bernstein) are guaranteed: their
# coverage never drops below :math:`1 - \alpha`.  Wilson, Agresti-Coull and
# Jeffreys are approximate and dip below it for some ``p``.
import matplotlib.pyplot as plt
import numpy as np

from smoothlearn.plotting import plot_interval_coverage, plot_interval_width
from smoothlearn.stats import binomial_coverage, procedure_validity

alpha = 0.05
fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for ax, n in zip(axes, (20, 200), strict=True):
    plot_interval_coverage(n=n, alpha=alpha, side="lower", ax=ax)
    ax.set_ylim(0.85, 1.0)
    ax.set_title(f"n = {n}")

# %%
# The smallest coverage over a fine grid of ``p``:
p = np.linspace(0.001, 0.999, 999)
for method in ("clopper_pearson", "wilson", "agresti_coull", "jeffreys", "hoeffding"):
    cov = binomial_coverage(method, p, 200, alpha)
    print(
        f"{method:16s} min coverage {cov.min_coverage:.4f} "
        f"(nominal {1 - alpha}); guaranteed: {cov.valid}"
    )

# %%
# Expected width: the price of a guarantee
# ----------------------------------------
# Distance of the one-sided lower bound from ``k / n``: Hoeffding ignores the
# variance and is far wider than Clopper-Pearson near 0 and 1; Clopper-Pearson
# is only slightly wider than the approximate methods.
ax = plot_interval_width(n=200, alpha=alpha, side="lower")
ax.set_title("n = 200")

# %%
# Multi-class procedures: validity by simulation
# ----------------------------------------------
# A procedure must bound the top class and *every* other class at once, with
# total failure probability ``alpha``.  Bounding only the class that looks
# second is not enough; TopClass, Bonferroni and the Class Partitioning
# Method are valid.  With 4,000 trials at ``alpha = 0.05``, a valid
# procedure's observed failure rate stays near or below 0.05.
probs = [0.5, 0.24, 0.26]
for name in ("top_class", "bonferroni", "cpm"):
    val = procedure_validity(
        name, probs, n0=100, n=1000, alpha=alpha, n_trials=4000, random_state=0
    )
    print(
        f"{name:10s} failure rate {val.failure_rate:.4f} "
        f"(95% upper bound {val.failure_rate_upper:.4f}, alpha = {alpha})"
    )
