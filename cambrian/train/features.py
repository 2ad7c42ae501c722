"""Optional cache of frozen vision-tower outputs, one store per tower.

With frozen towers an image always yields the same features, so they can be computed once and stored. Each tower
has its own store, so runs that share a tower share its features (an encoder study trains one run per tower set):
``<root>/<tower-hash>/<aa>/<image-hash>.safetensors`` holding ``features`` = ``[s, s, C]`` (fp16 on disk to halve
the size; fp32 when loaded). The tower hash covers every ``EncoderConfig`` field (weights source, resolution,
options such as a random-init seed), the image hash the absolute path, size and mtime, so a changed file or tower
config never hits a stale entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..utils.progress import progress_bar


def tower_hash(encoder) -> str:
    """12 hex digits naming one tower's configuration (every field of its ``EncoderConfig``)."""
    c = getattr(encoder, "config", None)
    desc = dataclasses.asdict(c) if dataclasses.is_dataclass(c) else repr(c)
    return hashlib.sha1(json.dumps([desc], sort_keys=True, default=str).encode()).hexdigest()[:12]


def _store(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


class FeatureCache:
    def __init__(self, root: str | os.PathLike, encoders: Sequence, dtype: torch.dtype = torch.float16):
        self.encoders = list(encoders)
        self.root = Path(root)
        self.roots = [self.root / tower_hash(e) for e in self.encoders]  # one store per tower
        self.dtype = dtype

    def _image_hash(self, image_path: str | os.PathLike) -> str:
        p = Path(image_path).resolve()
        st = p.stat()
        return hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()

    def key(self, image_path: str | os.PathLike, tower: int = 0) -> Path:
        h = self._image_hash(image_path)
        return self.roots[tower] / h[:2] / f"{h}.safetensors"

    def has(self, image_path) -> bool:
        return all(self.key(image_path, k).exists() for k in range(len(self.encoders)))

    def load(self, image_path, pil=None) -> list[torch.Tensor]:
        from safetensors.torch import load_file

        out = []
        for k in range(len(self.encoders)):
            f = self.key(image_path, k)
            if not f.exists():
                raise FileNotFoundError(
                    f"no cached features for {image_path} (tower {k}; run the feature pre-computation first)"
                )
            out.append(load_file(str(f))["features"].float())
        return out

    def store(self, image_path, feats: Sequence[torch.Tensor]) -> None:
        for k, t in enumerate(feats):
            if t is not None:
                _store(self.key(image_path, k), {"features": t.detach().to("cpu", self.dtype).contiguous()})

    @torch.no_grad()
    def build(
        self,
        image_paths: Sequence,
        device: torch.device | str = "cpu",
        batch_size: int = 16,
        rank: int = 0,
        world_size: int = 1,
        progress: bool = False,
    ) -> int:
        """Compute and store every tower's features of every image it has not cached yet (this rank's share; a
        tower already cached for an image is not run again); returns how many images needed any tower.
        Unreadable images are skipped (the dataset reports them as bad samples)."""
        from PIL import Image

        todo = [p for i, p in enumerate(sorted(set(map(str, image_paths)))) if i % world_size == rank]
        todo = [p for p in todo if Path(p).is_file() and not self.has(p)]
        done = 0
        bar = progress_bar(total=len(todo), desc="tower features", unit="img", enabled=progress and bool(todo))
        for s in range(0, len(todo), batch_size):
            bar.update(min(batch_size, len(todo) - s))
            chunk, ims = [], []
            for p in todo[s : s + batch_size]:
                try:
                    with Image.open(p) as im:
                        ims.append(im.convert("RGB"))
                    chunk.append(p)
                except Exception:  # noqa: BLE001 - an unreadable image is not cached; the dataset counts it as bad
                    continue
            if not chunk:
                continue
            for k, enc in enumerate(self.encoders):
                need = [j for j, p in enumerate(chunk) if not self.key(p, k).exists()]
                if not need:
                    continue
                out = enc(enc.preprocess([ims[j] for j in need]).to(device)).float().cpu()
                for i, j in enumerate(need):
                    _store(self.key(chunk[j], k), {"features": out[i].to(self.dtype).contiguous()})
            done += len(chunk)
        bar.close()
        return done
