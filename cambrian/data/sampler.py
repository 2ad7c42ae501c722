"""Step-level batch planning: which samples every (rank, accumulation step) sees in every optimizer step.

One optimizer step consumes a *global batch* of ``G = micro_batch * grad_accum * world_size`` samples. The plan
is a pure function of (lengths, seed, epoch), so every rank computes the same plan without communication and a
resumed run continues at ``(epoch, step)`` exactly.

Grouping modes:

* ``modality_length`` (official ``group_by_modality_length``, docs/official-code.md#sampler): image and text-only samples are
  permuted separately, cut into megabatches of ``G``, each megabatch is sorted by length (longest first); the
  full megabatches of both modalities are shuffled together and the leftovers are merged at the end.
  A megabatch therefore never mixes modalities, and samples of similar length share a micro-batch.
* ``length``: the same without the modality split.
* ``random``: a plain permutation cut into global batches.

Inside a global batch, micro-batch ``k`` (consecutive in the sorted order) goes to rank ``k % world`` at
accumulation step ``k // world``, so the ranks of one accumulation step get similar lengths. With ``drop_last``
(default) an incomplete final global batch is dropped, which keeps every rank in lock-step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..typed import ConfigError

MODES = ("modality_length", "length", "random")


class StepPlanner:
    def __init__(
        self,
        lengths: Sequence[int],
        micro_batch: int,
        grad_accum: int = 1,
        world_size: int = 1,
        seed: int = 0,
        mode: str = "modality_length",
        drop_last: bool = True,
    ):
        if mode not in MODES:
            raise ConfigError(f"unknown sampler mode {mode!r}; valid: {', '.join(MODES)}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.micro_batch, self.grad_accum, self.world_size = micro_batch, grad_accum, world_size
        self.global_batch = micro_batch * grad_accum * world_size
        self.seed, self.mode, self.drop_last = seed, mode, drop_last
        self._cache: tuple[int, list] | None = None

    def _perm(self, n: int, g: torch.Generator) -> np.ndarray:
        return torch.randperm(n, generator=g).numpy()

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's global batches (each already ordered longest-first when grouping by length)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        G = self.global_batch
        n = len(self.lengths)
        absl = np.abs(self.lengths)

        def cut(idx: np.ndarray, sort: bool) -> tuple[list[np.ndarray], np.ndarray]:
            full = len(idx) // G * G
            mbs = [idx[i : i + G] for i in range(0, full, G)]
            if sort:
                mbs = [m[np.argsort(-absl[m], kind="stable")] for m in mbs]
            return mbs, idx[full:]

        if self.mode == "random":
            mbs, rest = cut(self._perm(n, g), sort=False)
        else:
            if self.mode == "modality_length":
                groups = [np.flatnonzero(self.lengths > 0), np.flatnonzero(self.lengths <= 0)]
            else:
                groups = [np.arange(n)]
            mbs, rests = [], []
            for grp in groups:
                if len(grp) == 0:
                    continue
                m, r = cut(grp[self._perm(len(grp), g)], sort=True)
                mbs += m
                rests.append(r)
            order = self._perm(len(mbs), g)
            mbs = [mbs[i] for i in order]
            rest = np.concatenate(rests) if rests else np.zeros(0, dtype=np.int64)
            if len(rest) >= G:  # two partial megabatches may add up to a full one
                extra = rest[:G]
                mbs.append(extra[np.argsort(-absl[extra], kind="stable")])
                rest = rest[G:]
            rest = rest[np.argsort(-absl[rest], kind="stable")] if len(rest) else rest
        if len(rest) and not self.drop_last:
            mbs.append(rest)
        self._cache = (epoch, mbs)
        return mbs

    def steps_per_epoch(self) -> int:
        return len(self.global_batches(0))

    def micro_batches(self, epoch: int, step: int, rank: int) -> list[list[int]]:
        """The ``grad_accum`` micro-batches (sample indices) of ``rank`` for optimizer step ``step`` of ``epoch``."""
        gb = self.global_batches(epoch)[step]
        W, A, B = self.world_size, self.grad_accum, self.micro_batch
        if len(gb) < self.global_batch:  # ragged final batch (drop_last=False): deal round-robin
            chunks = np.array_split(gb, W * A)
        else:
            chunks = [gb[k * B : (k + 1) * B] for k in range(W * A)]
        return [chunks[a * W + rank].tolist() for a in range(A)]
