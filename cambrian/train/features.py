"""Optional cache of frozen vision-tower outputs.

With frozen towers an image always yields the same features, so they can be computed once and stored. Files:
``<root>/<encoders-hash>/<aa>/<image-hash>.safetensors`` holding ``enc{k}`` = ``[s_k, s_k, C_k]`` per encoder
(fp16 on disk to halve the size; fp32 when loaded). The encoders hash covers every ``EncoderConfig`` field, the
image hash the absolute path, size and mtime, so a changed file or tower config never hits a stale entry.
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


def encoders_hash(encoders) -> str:
    cfgs = []
    for enc in encoders:
        c = enc.config
        cfgs.append(dataclasses.asdict(c) if dataclasses.is_dataclass(c) else repr(c))
    return hashlib.sha1(json.dumps(cfgs, sort_keys=True, default=str).encode()).hexdigest()[:12]


class FeatureCache:
    def __init__(self, root: str | os.PathLike, encoders: Sequence, dtype: torch.dtype = torch.float16):
        self.encoders = list(encoders)
        self.root = Path(root) / encoders_hash(self.encoders)
        self.dtype = dtype

    def key(self, image_path: str | os.PathLike) -> Path:
        p = Path(image_path).resolve()
        st = p.stat()
        h = hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        return self.root / h[:2] / f"{h}.safetensors"

    def has(self, image_path) -> bool:
        return self.key(image_path).exists()

    def load(self, image_path, pil=None) -> list[torch.Tensor]:
        from safetensors.torch import load_file

        f = self.key(image_path)
        if not f.exists():
            raise FileNotFoundError(f"no cached features for {image_path} (run the feature pre-computation first)")
        d = load_file(str(f))
        return [d[f"enc{k}"].float() for k in range(len(d))]

    def store(self, image_path, feats: Sequence[torch.Tensor]) -> None:
        from safetensors.torch import save_file

        f = self.key(image_path)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        save_file({f"enc{k}": t.detach().to("cpu", self.dtype).contiguous() for k, t in enumerate(feats)}, str(tmp))
        os.replace(tmp, f)

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
        """Compute and store the features of every image not cached yet (this rank's share); returns how many
        were computed. Unreadable images are skipped (the dataset reports them as bad samples)."""
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
            outs = []
            for enc in self.encoders:
                px = enc.preprocess(ims).to(device)
                outs.append(enc(px).float().cpu())
            for j, p in enumerate(chunk):
                self.store(p, [o[j] for o in outs])
                done += 1
        bar.close()
        return done
