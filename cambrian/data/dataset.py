"""Supervised multimodal dataset: LLaVA records -> token ids with labels (loss on assistant replies only) and
preprocessed images (or cached tower features).

Bad samples are never replaced by another sample (the official code returns ``self[0]``, docs/official-code.md#data); they come
back as ``{"bad": reason}``, the collator drops them and the trainer counts them by reason and stops when more
than ``max_bad_fraction`` of the samples seen are bad. ``cambrian data validate`` runs the same checks.

Reasons (``BAD_REASONS``): missing_image, corrupt_image, wrong_roles, empty_turn, image_count_mismatch,
over_length (truncation would split an image, or nothing supervised would be left), no_labels, bad_record (a
record without usable conversations, or a line that is JSON but not an object), image_outside_root (an image path
leaving the source's image root, see ``LlavaSource``), bad_json (a line that is not JSON at all). Lines that
never parse (bad_json, or bad_record for non-objects) are found when the file is indexed (``LlavaSource.bad_by_reason``, with line numbers); the
trainer adds them to its bad counts and checks them against ``max_bad_fraction`` before the first step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from .llava import ImageOutsideRoot, LlavaSource
from .samples import BAD_REASONS, ROLE_MAP, BadSample, normalize_conversation  # noqa: F401 (re-exported)


def record_image_paths(source: LlavaSource, record: dict, index: int | None = None) -> list[Path]:
    """``source.image_paths(record)``; a path outside the image root raises BadSample("image_outside_root")
    naming the record."""
    try:
        return source.image_paths(record)
    except ImageOutsideRoot as e:
        rid = record.get("id") if isinstance(record, dict) else None
        where = f"{source.path.name} record {index}" if index is not None else str(source.path.name)
        raise BadSample(
            "image_outside_root",
            f"{where} (id={rid!r}): {e} (set allow_outside_root: true on the data entry if this is intended)",
        ) from None


def open_images(paths: Sequence[Path]):
    """Open and fully decode the images; MissingImage / corrupt images raise BadSample."""
    from PIL import Image

    out = []
    for p in paths:
        try:
            found = Path(p).is_file()
        except (OSError, ValueError):  # name too long, NUL byte, ...: no such image
            found = False
        if not found:
            raise BadSample("missing_image", str(p)[:300])
        try:
            with Image.open(p) as im:
                im.load()
                out.append(im.convert("RGB"))
        except Exception as e:  # noqa: BLE001 - UnidentifiedImageError, truncated file, decompression bomb, ...
            raise BadSample("corrupt_image", f"{p}: {e}") from None
    return out


# ---- tokenisation ----------------------------------------------------------------------------------------
TokenizeFn = Callable[[list], dict]  # messages -> {"input_ids": list[int], "labels": list[int]} (no truncation)


def truncate_sample(ids: list[int], labels: list[int], image_lens: Sequence[int], max_length: int):
    """Cut ``ids``/``labels`` so the LLM sequence (each -200 expanded to its image's token count) fits
    ``max_length``; raises BadSample("over_length") when the cut would fall inside or before an image block or
    when nothing supervised would remain."""
    img_pos = [i for i, t in enumerate(ids) if t == IMAGE_TOKEN_INDEX]
    if len(img_pos) != len(image_lens):
        raise BadSample("image_count_mismatch", f"{len(img_pos)} image ids for {len(image_lens)} images")
    total = len(ids) + sum(n - 1 for n in image_lens)
    if total <= max_length:
        return ids, labels, total
    # keep positions [0, k) such that expanded length <= max_length
    k = 0
    expanded = 0
    for i, t in enumerate(ids):
        step = image_lens[img_pos.index(i)] if t == IMAGE_TOKEN_INDEX else 1
        if expanded + step > max_length:
            break
        expanded += step
        k = i + 1
    if img_pos and k <= img_pos[-1]:
        raise BadSample("over_length", f"{total} > {max_length} tokens and the cut would split an image")
    ids, labels = ids[:k], labels[:k]
    if all(lab == IGNORE_INDEX for lab in labels[1:]):
        raise BadSample("over_length", f"{total} > {max_length} tokens and no answer token would remain")
    return ids, labels, expanded


@dataclass
class ImagePipeline:
    """How a sample's images become model inputs: per-encoder preprocessing callables (PIL list -> [n,3,R,R]), or
    a feature cache (path -> per-encoder [s,s,C] tensors)."""

    processors: list[Callable] = field(default_factory=list)
    feature_cache: object | None = None

    @classmethod
    def from_model(cls, model, feature_cache=None) -> ImagePipeline:
        """The preprocessing of every tower of a ``VLM`` (``model.encoders``), or its feature cache."""
        return cls(processors=[enc.preprocess for enc in model.encoders], feature_cache=feature_cache)

    def inputs(self, paths: Sequence, pil: Sequence) -> dict:
        """``{"features": [per encoder [n, s, s, C]]}`` from the cache, else ``{"pixel_values": [per encoder
        [n, 3, R, R]]}``, for the n images of one sample."""
        if self.feature_cache is not None:
            feats = [self.feature_cache.load(p, im) for p, im in zip(paths, pil)]
            return {"features": [torch.stack([f[k] for f in feats]) for k in range(len(feats[0]))]}
        return {"pixel_values": [proc(list(pil)) for proc in self.processors]}


def selection_of(sources: Sequence[LlavaSource], selection: np.ndarray | None = None) -> np.ndarray:
    """``[M, 2]`` (source, record) pairs: ``selection`` as given, or every record of every source in order."""
    if selection is None:
        selection = (
            np.concatenate([np.stack([np.full(len(s), k), np.arange(len(s))], 1) for k, s in enumerate(sources)])
            if sources
            else np.zeros((0, 2), dtype=np.int64)
        )
    return np.asarray(selection, dtype=np.int64).reshape(-1, 2)


class EncodedDataset(torch.utils.data.Dataset):
    """A dataset whose ``encode(i)`` raises :class:`BadSample`; items come back as ``{"bad": reason}`` instead, for
    the collator to drop and the trainer to count."""

    def encode(self, i: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict:
        try:
            return self.encode(i)
        except BadSample as e:
            return {"bad": e.reason, "index": i, "detail": e.detail}


class SupervisedDataset(EncodedDataset):
    """Samples from one or more ``LlavaSource``s; ``selection`` (``[M, 2]`` array of (source, record) pairs, e.g.
    from ``mixing.build_mixture``) picks and orders them, default = everything in order."""

    def __init__(
        self,
        sources: Sequence[LlavaSource],
        tokenize: TokenizeFn,
        visual_tokens: Callable,
        images: ImagePipeline,
        max_length: int = 2048,
        selection: np.ndarray | None = None,
    ):
        self.sources = list(sources)
        self.tokenize = tokenize
        self.visual_tokens = visual_tokens
        self.images = images
        self.max_length = max_length
        self.selection = selection_of(self.sources, selection)

    def __len__(self) -> int:
        return len(self.selection)

    @property
    def lengths(self) -> np.ndarray:
        """Official sampler lengths (negative = text-only)."""
        return np.asarray([self.sources[s].lengths[r] for s, r in self.selection], dtype=np.int64)

    def record(self, i: int) -> tuple[LlavaSource, dict]:
        s, r = self.selection[i]
        src = self.sources[s]
        return src, src[int(r)]

    def encode(self, i: int, load_pixels: bool = True) -> dict:
        """Sample ``i`` as model inputs; raises BadSample."""
        try:
            src, rec = self.record(i)
        except ValueError as e:
            raise BadSample("bad_record", str(e)) from None
        paths = record_image_paths(src, rec, int(self.selection[i][1]))
        msgs = normalize_conversation(rec, len(paths))
        pil = open_images(paths) if paths else []
        sizes = [im.size for im in pil]
        image_lens = [int(self.visual_tokens(sz)) for sz in sizes]
        try:
            tok = self.tokenize(msgs)
        except ValueError as e:
            raise BadSample("over_length", str(e)) from None
        ids, labels, n = truncate_sample(list(tok["input_ids"]), list(tok["labels"]), image_lens, self.max_length)
        if all(lab == IGNORE_INDEX for lab in labels):
            raise BadSample("no_labels")
        out = {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "image_sizes": sizes,
            "num_tokens": n,
            "index": i,
        }
        if pil and load_pixels:
            out.update(self.images.inputs(paths, pil))
        return out
