"""
Lipschitz-aware radii
=====================

If every class score of the base model is an :math:`L`-Lipschitz map to
[0, 1] (a softmax output of a Lipschitz network, say), the smoothed scores move
more slowly than Cohen's worst case allows, and the certified radius grows
(Delattre et al., AISTATS 2025).  The gain depends on :math:`L\\sigma`.
"""

# %%
# The ramp offset :math:`s_0`
# ---------------------------
# The worst L-Lipschitz score is a ramp of slope L; its offset solves
# :math:`p = 1 - L\int_{s_0}^{s_0+1/L}\Phi(s/\sigma)\,ds`, which
# :func:`~smoothlearn.radius.solve_s0` solves without quadrature, vectorised.
import numpy as np

from smoothlearn.plotting import plot_lipschitz_gain
from smoothlearn.radius import gaussian_radius, lipschitz_radius, solve_s0

sigma = 0.5
print("s0(p=0.9, sigma=0.5, L=2) =", float(solve_s0(0.9, sigma, 2.0)))

# %%
# Cohen, the paper's radius, and the envelope radius
# --------------------------------------------------
# For a lower bound :math:`\underline{p_A}` on the top-class score (mono
# radius), at several Lipschitz constants:
p = np.array([0.6, 0.8, 0.9, 0.99, 0.999])
print("p        ", "  ".join(f"{v:7g}" for v in p))
cohen = gaussian_radius(p, sigma=sigma, kind="mono")
print("Cohen    ", "  ".join(f"{v:7.3f}" for v in cohen))
for L in (0.25, 1.0, 4.0):
    paper = lipschitz_radius(p, sigma=sigma, L=L, kind="mono", method="paper")
    env = lipschitz_radius(p, sigma=sigma, L=L, kind="mono", method="envelope")
    print(f"L={L:<5g} paper", "  ".join(f"{v:7.3f}" for v in paper))
    print(f"L={L:<5g} env. ", "  ".join(f"{v:7.3f}" for v in env))

# %%
# When does it help?
# ------------------
# The ratio of the Lipschitz-aware radius to Cohen's, against
# :math:`L\sigma`.  It is large only when :math:`L\sigma \lesssim 2` and
# vanishes (ratio 1) as :math:`L\sigma` grows: a hard classifier is the limit
# :math:`L = \infty`, where the two coincide exactly.
ax = plot_lipschitz_gain(sigma, pA_lower=[0.6, 0.8, 0.9, 0.99])
ax.set_title(r"$\sigma$ = 0.5, mono radius, paper's form")

# %%
# The envelope form is larger still, for the multi radius too:
ax = plot_lipschitz_gain(
    sigma, pA_lower=[0.7, 0.9], pB_upper=[0.2, 0.05], method="envelope"
)
ax.set_title(r"$\sigma$ = 0.5, multi radius, envelope form")
