"""Exact-duplicate detection with memory flat in the number of records.

Every record gets a 64-bit key (a BLAKE2b digest of its conversation and its images' content digests). Keys are
buffered in fixed-size chunks and spilled to ``buckets`` files on disk by their top bits, as ``(key, index)``
pairs (16 bytes a record on disk, none in memory). ``duplicates()`` then reads one bucket at a time: a key seen
before in the same bucket marks a duplicate; the first occurrence (lowest index) is kept. Peak memory is one
chunk plus one bucket (about ``16 * N / buckets`` bytes), so 10M records need ~0.6 MiB per bucket read.

With 64-bit keys the chance that two *different* records collide among N is about N^2 / 2^65 (3e-6 at 10M).
"""

from __future__ import annotations

import os
import tempfile
from array import array
from pathlib import Path

import numpy as np

from ...typed import ConfigError

PAIR = np.dtype([("key", "<u8"), ("index", "<u8")])


class DigestSpool:
    """Collects (key, index) pairs with increasing ``index``; ``duplicates()`` returns the indices to drop."""

    def __init__(self, directory: str | os.PathLike | None = None, buckets: int = 256, chunk: int = 1 << 18):
        if buckets < 1 or buckets & (buckets - 1):
            raise ConfigError(f"buckets must be a power of two, got {buckets}")
        self._tmp = tempfile.TemporaryDirectory(prefix="cambrian-dedup-", dir=directory)
        self.dir = Path(self._tmp.name)
        self.buckets = buckets
        self.shift = 64 - buckets.bit_length() + 1
        self.chunk = chunk
        self.keys = array("Q")
        self.indices = array("Q")
        self.count = 0

    def add(self, key: int, index: int) -> None:
        self.keys.append(key)
        self.indices.append(index)
        if len(self.keys) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self.keys:
            return
        pairs = np.empty(len(self.keys), dtype=PAIR)
        pairs["key"] = np.frombuffer(self.keys, dtype=np.uint64)
        pairs["index"] = np.frombuffer(self.indices, dtype=np.uint64)
        self.count += len(pairs)
        self.keys = array("Q")
        self.indices = array("Q")
        bucket = (
            (pairs["key"] >> np.uint64(self.shift)).astype(np.int64)
            if self.buckets > 1
            else np.zeros(len(pairs), dtype=np.int64)
        )
        order = np.argsort(bucket, kind="stable")  # keeps index order inside a bucket
        pairs, bucket = pairs[order], bucket[order]
        bounds = np.searchsorted(bucket, np.arange(self.buckets + 1))
        for b in range(self.buckets):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                with open(self.dir / f"{b:04x}.bin", "ab") as f:
                    pairs[lo:hi].tofile(f)

    def duplicates(self) -> np.ndarray:
        """Sorted indices of the records whose key appeared at a lower index (uint64 array)."""
        self.flush()
        parts = []
        for b in range(self.buckets):
            p = self.dir / f"{b:04x}.bin"
            if not p.exists():
                continue
            pairs = np.fromfile(p, dtype=PAIR)
            parts.append(duplicate_indices(pairs["key"], pairs["index"]))
        if not parts:
            return np.zeros(0, dtype=np.uint64)
        return np.sort(np.concatenate(parts))

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def duplicate_indices(keys: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Indices (from ``indices``, given in increasing order) whose key occurred earlier in the sequence."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.uint64)
    order = np.argsort(keys, kind="stable")  # equal keys stay in index order: the first is the one kept
    k = keys[order]
    dup = np.zeros(len(k), dtype=bool)
    dup[1:] = k[1:] == k[:-1]
    return np.asarray(indices, dtype=np.uint64)[order][dup]
