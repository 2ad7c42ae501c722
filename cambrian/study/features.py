"""Frozen-tower features of the evaluation images, kept per tower on disk so every run of a study that uses the
tower reads them instead of running it again (training images go through the trainer's per-tower
``FeatureCache``). A provider for ``with model.features_from(memo):``, keyed by a hash of the tower's preprocessed
pixels, stored in fp32: the answers are the same as with the tower run live."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..train.features import tower_hash


def _pixels_key(px: torch.Tensor) -> str:
    return hashlib.sha1(px.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class TowerFeatureMemo:
    def __init__(self, root: str | os.PathLike, encoders):
        self.encoders = list(encoders)
        self.roots = [Path(root) / tower_hash(e) for e in self.encoders]
        self.stats = {"hits": 0, "misses": 0}

    def _path(self, k: int, key: str) -> Path:
        return self.roots[k] / key[:2] / f"{key}.safetensors"

    @torch.no_grad()
    def __call__(self, pixel_values, compute):
        from safetensors.torch import load_file, save_file

        n = pixel_values[0].shape[0]
        out = []
        for k, (enc, px) in enumerate(zip(self.encoders, pixel_values)):
            keys = [_pixels_key(px[j]) for j in range(n)]
            got: dict[str, torch.Tensor] = {}
            for key in dict.fromkeys(keys):
                f = self._path(k, key)
                if f.exists():
                    got[key] = load_file(str(f))["features"]
            need = [keys.index(key) for key in dict.fromkeys(keys) if key not in got]
            self.stats["hits"] += n - len(need)
            self.stats["misses"] += len(need)
            if need:
                p = next(enc.parameters(), None)
                x = px[torch.tensor(need)]
                if p is not None:
                    x = x.to(device=p.device, dtype=p.dtype)
                y = enc(x).float().cpu()
                for i, j in enumerate(need):
                    got[keys[j]] = y[i].contiguous()
                    f = self._path(k, keys[j])
                    f.parent.mkdir(parents=True, exist_ok=True)
                    tmp = f.with_suffix(f".{os.getpid()}.tmp")
                    save_file({"features": got[keys[j]]}, str(tmp))
                    os.replace(tmp, f)
            out.append(torch.stack([got[key] for key in keys]))
        return out
