"""Seeds of the noise streams: one stream per (seed, input, stage).

Everything that draws noise (the Monte-Carlo engine, noise-augmented
training) derives its torch generator seeds here, so the seeding scheme is
written once and no module needs the sampler to seed.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "STAGE_ESTIMATION",
    "STAGE_PREDICT",
    "STAGE_SELECTION",
    "STAGE_TRAIN",
]

#: Stage identifiers of the random streams (two low bits of a stream seed).
STAGE_SELECTION, STAGE_ESTIMATION, STAGE_PREDICT, STAGE_TRAIN = 0, 1, 2, 3

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """The splitmix64 mixing function (a bijection of 64-bit integers)."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _stream_seed(root: int, index: int, stage: int) -> int:
    """Seed of the noise stream of input ``index`` in ``stage``.

    A 64-bit hash of ``(root, index)`` whose two lowest bits are replaced by
    ``stage``: the streams of one input in different stages always get
    different seeds, even on CPU where torch keeps only the low 32 bits.
    """
    h = _splitmix64(_splitmix64(root & _MASK64) ^ (index & _MASK64))
    return (h & ~0x3 & _MASK64) | (stage & 0x3)


def _input_keys(X: NDArray) -> NDArray[np.uint64]:
    """A 64-bit key per input: a hash of its values, the noise stream's identity.

    Each row is converted to contiguous float64 (exact for every float32 or
    integer input, so the same values give the same key whatever the dtype
    of ``X``) and hashed with BLAKE2b; ``-0.0`` and ``0.0`` are distinct.
    Costs one pass over ``X`` per call, far below one forward pass.
    """
    X = np.asarray(X)
    keys = np.empty(X.shape[0], dtype=np.uint64)
    for i in range(X.shape[0]):  # one hash per input, not per draw
        row = np.ascontiguousarray(X[i], dtype=np.float64)
        digest = hashlib.blake2b(row.tobytes(), digest_size=8).digest()
        keys[i] = int.from_bytes(digest, "little")
    return keys


def _block_seed(root: int, index: int, stage: int, block: int) -> int:
    """A seed derived from ``(root, index, stage, block)`` (auxiliary streams)."""
    return _splitmix64(_stream_seed(root, index, stage) ^ _splitmix64(block))


def _root_seed(random_state) -> int:
    """Draw the 64-bit root seed of one call from a ``random_state``.

    An int gives the same root at every call; a ``RandomState`` advances;
    None draws from numpy's global ``RandomState`` (not reproducible unless
    the user seeded it).
    """
    from sklearn.utils import check_random_state

    rs = check_random_state(random_state)
    hi, lo = rs.randint(0, 2**32, size=2, dtype=np.uint64)
    return (int(hi) << 32) | int(lo)
