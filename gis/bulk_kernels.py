"""The compiled row encoder of `gis.bulk.BinaryColumns` (numba, no GIL)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def encode_rows(signature: np.ndarray, data: np.ndarray, starts: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """Rows of binary COPY: per row the field count, then per field its length (-1 = NULL) and the
    bytes data[starts[e]:starts[e + 1]] of its entry e; all integers big-endian."""
    n, k = entries.shape
    size = len(signature) + 2
    for i in range(n):
        size += 2 + 4 * k
        for j in range(k):
            e = entries[i, j]
            if e >= 0:
                size += starts[e + 1] - starts[e]
    out = np.empty(size, dtype=np.uint8)
    out[:len(signature)] = signature
    p = len(signature)
    for i in range(n):
        out[p] = (k >> 8) & 255
        out[p + 1] = k & 255
        p += 2
        for j in range(k):
            e = entries[i, j]
            if e < 0:
                out[p:p + 4] = 255
                p += 4
                continue
            a = starts[e]
            length = starts[e + 1] - a
            out[p] = (length >> 24) & 255
            out[p + 1] = (length >> 16) & 255
            out[p + 2] = (length >> 8) & 255
            out[p + 3] = length & 255
            p += 4
            for b in range(length):
                out[p + b] = data[a + b]
            p += length
    out[p] = 255
    out[p + 1] = 255
    return out
