"""Localisers: where in a patch is the target? One small class per source of evidence, all behind one call.

``locate(requests) -> [Evidence]`` takes :class:`PatchRequest`\\ s (the whole image, the patch's box in it, the
target phrase, and the question's key) so that one call scores the patches of many searches at once (the search
driver batches them), and a localiser may look at the image outside the patch if it wants. Each answer is an
:class:`Evidence`: a target heatmap over the patch (values in [0, 1]), a detection confidence and box, and
optionally a context heatmap (where the target would likely be, used when the target cue is flat).

- :class:`EmbeddingLocaliser` (models with a grounded grid, ``grounding_grid`` not None): each cell's visual token
  is compared with the LLM's input embeddings of the target's words and of a contrast vocabulary (background,
  colour, shape and common object words). A cell's score for one word is ``exp(-(d_word^2 - d_nearest^2) / tau)``:
  1 when the word is the cell's nearest candidate, falling off with how much nearer another word is (``tau`` as the
  grounding objective's: a fifth of the candidates' mean squared norm); a target of several words ("blue cube")
  takes the product, so a blue sphere's cell does not pass for a blue cube's. A grounded object cell sits between
  its words ("red" and "cube" at the same distance), so each of them counts as nearest. Confidence = the best cell's score; box =
  the cells of the best cell's connected group above half of it. Context = how far the cell is from the background
  words (objects rather than floor). Meaningful only for grounded connectors: their cells were trained to sit on
  those embeddings (``cambrian.models.grounding``).
- :class:`AskLocaliser` (any model of the VLM contract): asks "Is there a {target} in the image?" about each
  quarter of the patch and reads p(yes) from the answer likelihoods (the model's ``score_options``); the heatmap is the
  2x2 grid of those, the detection the best quarter. Four prompts per patch, batched.
- :class:`DetectorLocaliser`: a detector you plug in, ``detect(crop, target) -> [(box, score), ...]`` (boxes in crop
  pixels, scores in [0, 1]); the heatmap rasterises its boxes.
- :class:`OracleLocaliser`: ground-truth boxes (ablations: how well would the answer do given a perfect search).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from .boxes import Box, area

BACKGROUND_WORDS = ("floor", "background", "ground", "wall", "sky", "table")
CONTRAST_WORDS = (
    *BACKGROUND_WORDS,
    *("red", "blue", "green", "yellow", "purple", "brown", "gray", "cyan", "black", "white", "orange", "pink"),
    *("cube", "sphere", "cylinder", "circle", "square", "rectangle", "triangle", "ball", "box"),
    *("person", "car", "tree", "building", "sign", "window", "bag", "cup", "bottle", "chair", "dog", "cat"),
)
GENERIC_NOUNS = frozenset({"object", "objects", "thing", "things", "item", "items", "one", "shape", "the", "a", "an"})


@dataclass
class PatchRequest:
    image: Any  # the whole PIL image
    patch: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels
    target: str
    key: Any = None  # which question it is for (OracleLocaliser reads its boxes by it)

    def crop(self):
        return self.image.crop(self.patch)


@dataclass
class Evidence:
    heatmap: np.ndarray  # [h, w] target cue over the patch, values in [0, 1]
    confidence: float  # how sure the localiser is that the target is in the patch
    box: Box | None  # the detection, in the patch's pixels (x0, y0, x1, y1); None: nothing found
    context: np.ndarray | None = None  # [h, w] where the target would likely be (flat target cue)


class Localiser(Protocol):
    def locate(self, requests: Sequence[PatchRequest]) -> list[Evidence]: ...


def target_words(target: str) -> list[str]:
    """Content words of a target phrase: lower case, possessives and punctuation dropped, generic nouns ("object")
    removed unless nothing else is left ("red object" -> red; "woman's bag" -> woman, bag)."""
    words = [w for w in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", target.lower().replace("'s", "")) if w]
    content = [w for w in words if w not in GENERIC_NOUNS]
    return content or words


def box_from_cells(score: np.ndarray, valid: tuple[int, int, int, int], size: tuple[int, int]) -> Box | None:
    """The pixel box (in the patch) of the 4-connected group of cells around the best one that score at least half of
    it. ``score``: ``[L, L]`` over the connector's letterboxed grid; ``valid``: its (top, bottom, left, right) content
    region, which spans the patch's ``size`` (W, H)."""
    top, bottom, left, right = valid
    sub = score[top:bottom, left:right]
    if sub.size == 0 or float(sub.max()) <= 0:
        return None
    r0, c0 = np.unravel_index(int(sub.argmax()), sub.shape)
    keep = sub >= 0.5 * float(sub.max())
    seen = np.zeros_like(keep)
    stack, cells = [(r0, c0)], []
    while stack:
        r, c = stack.pop()
        if not (0 <= r < sub.shape[0] and 0 <= c < sub.shape[1]) or seen[r, c] or not keep[r, c]:
            continue
        seen[r, c] = True
        cells.append((r, c))
        stack += [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
    rows, cols = [r for r, _ in cells], [c for _, c in cells]
    cw, ch = size[0] / sub.shape[1], size[1] / sub.shape[0]
    return (min(cols) * cw, min(rows) * ch, (max(cols) + 1) * cw, (max(rows) + 1) * ch)


class EmbeddingLocaliser:
    """Grounded cells against the target words' LLM embeddings (see the module docstring). ``contrast``: the words a
    cell may be nearer to instead (the target's own words are left out of it); ``background``: the words whose
    distance makes the context heatmap."""

    def __init__(
        self,
        model,
        contrast: Sequence[str] = CONTRAST_WORDS,
        background: Sequence[str] = BACKGROUND_WORDS,
        batch_size: int = 16,
        cells: Callable | None = None,
    ):
        if model.grounding_grid is None:
            raise InputError(
                f"the embedding localiser needs a model with a grounded grid; {type(model).__name__} has none "
                "(use localiser=ask, or plug in a detector)"
            )
        from ..data.grounding import WordIds

        self.model = model
        self.words = WordIds(model.tokenizer)
        self.contrast = [w.lower() for w in contrast]
        self.background = [w.lower() for w in background]
        self.batch_size = batch_size
        if cells is None:
            from ..models.grounding import cell_tokens as cells
        self.cells = cells  # (model, PIL images) -> [(tokens [h, w, D], valid region of the L x L grid)]

    def _vector(self, words: Sequence[str]):
        import torch

        emb = self.model.llm.get_input_embeddings().weight
        ids = [t for w in words for t in self.words(w)]
        return emb[torch.tensor(ids, device=emb.device)].detach().float().mean(0)

    def _candidates(self, target: str):
        """Rows: the target's words, then the contrast words not among them; how many target rows; which rows are
        background words."""
        import torch

        mine = target_words(target)
        others = [w for w in self.contrast if w not in mine]
        vecs = torch.stack([self._vector([w]) for w in mine + others])
        bg = torch.tensor([False] * len(mine) + [w in self.background for w in others])
        return vecs, len(mine), bg

    def locate(self, requests: Sequence[PatchRequest]) -> list[Evidence]:
        import torch

        side = int(self.model.grounding_grid)
        out: list[Evidence] = []
        cand_cache: dict[str, tuple] = {}
        for s in range(0, len(requests), self.batch_size):
            chunk = requests[s : s + self.batch_size]
            crops = [r.crop() for r in chunk]
            for req, crop, (cells, region) in zip(chunk, crops, self.cells(self.model, crops)):
                if req.target not in cand_cache:
                    cand_cache[req.target] = self._candidates(req.target)
                vecs, k, bg = cand_cache[req.target]
                tau = float(vecs.pow(2).sum(-1).mean()) / 5.0
                d2 = torch.cdist(cells.reshape(-1, cells.shape[-1]).float(), vecs.to(cells.device)).pow(2).cpu()
                nearest = d2.min(-1).values
                # every word of the target among the cell's nearest: the product of the words' scores
                target = torch.exp(-(d2[:, :k] - nearest[:, None]).sum(-1) / tau)
                away = d2[:, bg].min(-1).values if bool(bg.any()) else nearest
                context = 1.0 - torch.exp(-(away - nearest) / tau)
                h, w = cells.shape[:2]
                top, bottom, left, right = region
                full = np.zeros((side, side))
                full[top:bottom, left:right] = target.view(h, w).numpy()
                box = box_from_cells(full, region, crop.size)
                out.append(
                    Evidence(
                        heatmap=target.view(h, w).numpy().astype(np.float64),
                        confidence=float(target.max()),
                        box=box,
                        context=context.view(h, w).numpy().astype(np.float64),
                    )
                )
        return out


ASK_PROMPT = "Is there a {target} in the image? Answer yes or no."


class AskLocaliser:
    """Any VLM: p(yes) for "Is there a {target} in the image?" on each quarter of the patch (2x2)."""

    def __init__(self, model, prompt: str = ASK_PROMPT, batch_size: int = 16):
        self.model = model
        self.prompt = prompt
        self.batch_size = batch_size

    def locate(self, requests: Sequence[PatchRequest]) -> list[Evidence]:
        from ..constants import IMAGE_TOKEN

        quarters = []  # per request: [(crop of the quarter, its box in the patch)]
        for req in requests:
            x0, y0 = req.patch[:2]
            crop = req.crop()
            boxes = [(a - x0, b - y0, c - x0, d - y0) for a, b, c, d in _quads(req.patch)]
            quarters.append([(crop.crop(q), q) for q in boxes])
        flat = [(req, im) for req, qs in zip(requests, quarters) for im, _ in qs]
        p_yes = []
        for k in range(0, len(flat), max(1, self.batch_size)):
            part = flat[k : k + self.batch_size]
            scores = self.model.score_options(
                [IMAGE_TOKEN + "\n" + self.prompt.format(target=req.target) for req, _ in part],
                [[im] for _, im in part],
                [["yes", "no"]] * len(part),
            )
            p_yes += [1.0 / (1.0 + float(np.exp(no - yes))) for yes, no in scores]
        out, k = [], 0
        for qs in quarters:
            p = p_yes[k : k + len(qs)]
            k += len(qs)
            best = int(np.argmax(p))
            grid = np.array(p).reshape(2, 2) if len(p) == 4 else np.array(p).reshape(1, -1)
            out.append(Evidence(heatmap=grid, confidence=p[best], box=tuple(float(v) for v in qs[best][1])))
        return out


def _quads(patch) -> list[tuple[int, int, int, int]]:
    """2x2 quarters of a patch (any aspect ratio; a patch of one pixel side gives fewer)."""
    x0, y0, x1, y1 = patch
    mx, my = (x0 + x1) // 2, (y0 + y1) // 2
    quads = [(x0, y0, mx, my), (mx, y0, x1, my), (x0, my, mx, y1), (mx, my, x1, y1)]
    return [q for q in quads if q[2] > q[0] and q[3] > q[1]] or [patch]


def rasterize(boxes: Sequence[tuple[Box, float]], size: tuple[int, int], grid: int = 16) -> np.ndarray:
    """``[grid, grid]`` heatmap over a crop of ``size`` (W, H): each cell the highest score of a box covering its
    centre."""
    w, h = size
    ys, xs = (np.arange(grid) + 0.5) * h / grid, (np.arange(grid) + 0.5) * w / grid
    out = np.zeros((grid, grid))
    for (x0, y0, x1, y1), score in boxes:
        inside = ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        out = np.where(inside, np.maximum(out, float(score)), out)
    return out


class DetectorLocaliser:
    """A detector you plug in: ``detect(crop, target) -> [(box, score), ...]`` with boxes ``(x0, y0, x1, y1)`` in the
    crop's pixels and scores in [0, 1]. ``batch``: ``detect`` takes lists instead (``detect(crops, targets) ->
    [[(box, score), ...], ...]``)."""

    def __init__(self, detect: Callable, batch: bool = False, grid: int = 16):
        self.detect = detect
        self.batch = batch
        self.grid = grid

    def locate(self, requests: Sequence[PatchRequest]) -> list[Evidence]:
        crops = [r.crop() for r in requests]
        if self.batch:
            found = self.detect(crops, [r.target for r in requests])
        else:
            found = [self.detect(c, r.target) for c, r in zip(crops, requests)]
        out = []
        for crop, dets in zip(crops, found):
            dets = [(tuple(float(v) for v in b), float(s)) for b, s in dets]
            best = max(dets, key=lambda d: d[1]) if dets else None
            out.append(
                Evidence(
                    heatmap=rasterize(dets, crop.size, self.grid),
                    confidence=best[1] if best else 0.0,
                    box=best[0] if best else None,
                )
            )
        return out


class OracleLocaliser:
    """Ground truth: ``boxes[(key, target)]`` = the target's boxes in image pixels. A patch that holds (part of) a box
    detects it with confidence equal to the fraction of the box inside the patch."""

    def __init__(self, boxes: dict):
        self.boxes = boxes

    def locate(self, requests: Sequence[PatchRequest]) -> list[Evidence]:
        out = []
        for r in requests:
            x0, y0, x1, y1 = r.patch
            dets = []
            for b in self.boxes.get((r.key, r.target), ()):
                inter = (max(b[0], x0), max(b[1], y0), min(b[2], x1), min(b[3], y1))
                if inter[2] > inter[0] and inter[3] > inter[1]:
                    frac = area(inter) / max(1e-9, area(b))
                    dets.append(((b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0), frac))
            best = max(dets, key=lambda d: d[1]) if dets else None
            out.append(
                Evidence(
                    heatmap=rasterize(dets, (x1 - x0, y1 - y0)),
                    confidence=best[1] if best else 0.0,
                    box=best[0] if best else None,
                )
            )
        return out
