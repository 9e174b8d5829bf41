"""
Re-certifying stored results
============================

Sampling is the expensive part of certification; bounding and computing radii
are cheap.  A :class:`~smoothlearn.CertificationResult` keeps the selection and
estimation counts, so it can be saved, loaded and re-certified with another
``alpha``, multi-class procedure or radius, without the model and without a
single new draw.  The result is exactly what ``certify`` would have returned
with the new parameters and the same ``random_state``.
"""

# %%
# Certify once
# ------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn.metrics import average_certified_radius
from smoothlearn.plotting import plot_certified_accuracy, plot_radius_histogram

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, stratify=y, random_state=0
)
clf = SmoothedClassifier(
    # tol=1e-3: the loss on noisy copies plateaus with small fluctuations,
    # and the default tol would keep the optimiser going to max_iter.
    MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, tol=1e-3, random_state=0),
    sigma=0.25,
    n=2_000,
    noise_augment=3,
    random_state=0,
)
clf.fit(X_train, y_train)
result = clf.certify(X_test)

# %%
# Save and load: a plain ``.npz``, read back without pickle
# ---------------------------------------------------------
path = Path(tempfile.mkdtemp()) / "digits_mlp.npz"
result.save(path)
stored = CertificationResult.load(path)
print(stored)

# %%
# Re-certify: procedures, radius and alpha
# ----------------------------------------
variants = {
    "Cohen (TopClass, mono)": stored,
    "Bonferroni, multi": stored.recertify(interval="bonferroni", radius="multi"),
    "CPM, multi": stored.recertify(interval="cpm", radius="multi"),
    "CPM, multi, alpha = 0.05": stored.recertify(
        interval="cpm", radius="multi", alpha=0.05
    ),
}
for name, res in variants.items():
    print(f"{name:26s} ACR {average_certified_radius(y_test, res):.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
plot_certified_accuracy(variants, y_test, ax=axes[0])
plot_radius_histogram(
    {k: variants[k] for k in ("Cohen (TopClass, mono)", "CPM, multi")},
    y_test,
    ax=axes[1],
)
axes[1].set_title("radii of the correct predictions")
