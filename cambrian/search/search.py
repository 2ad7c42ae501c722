"""V*'s best-first search over the quad-tree of an image, for one target, driven step by step so that the patches of
many searches are scored in one localiser call (:func:`run_searches`).

The search, as ``visual_search.py`` of ``penghao-wu/vstar`` does it, with the constants of :class:`SearchSettings`:

1. Score the whole image (level 1). A detection with confidence >= ``confidence_high`` ends the search.
2. Otherwise, unless the patch is a leaf (short side <= ``smallest_size``), choose its heatmap: the target cue when
   its peak is prominent (>= ``cue_level_threshold(level)``), else the context cue; min-max normalise it. Split the
   patch (:func:`~cambrian.search.quadtree.split`) and push each sub-patch on the global frontier with the priority
   :func:`~cambrian.search.quadtree.child_scores` (its share of this patch's and every ancestor's heatmap, each
   divided by ``decay ** level``): sub-patches are ranked from their ancestors' evidence, without being scored.
3. Pop the best patch of the frontier, score it, and go on from 1's test with it; stop when a detection is
   confident, when the frontier is empty or after ``max_patches`` scored patches. Without a confident detection the
   best tentative one (of the visited patches) is kept when its confidence is >= ``confidence_low``, and the path is
   cut after it (V*'s path length).

One patch per search and round: ``run_searches`` scores the popped patches of every search of a batch in one
localiser call. ``path`` lists the visited (scored) patches in order; ``scored`` counts localiser calls, the
refinement's included.

After a detection, ``refine_steps`` times: localise again in a window of ``refine_context`` x the box (at least
``refine_min`` pixels) around it, and take that box when the target is still found there (a coarse grid gives a
coarse box; a window around the object gives finer cells).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .boxes import Box, around
from .localise import Evidence, Localiser, PatchRequest
from .quadtree import Patch, child_scores, normalize, split
from .settings import SearchSettings


@dataclass
class Node:
    patch: Patch
    level: int
    parent: int  # index into TargetSearch.nodes, -1 for the root
    score: float | None = None  # priority it was pushed with
    evidence: Evidence | None = None
    heatmap: np.ndarray | None = None  # the normalised cue it was split with
    cue: str = ""  # "target" / "context" / "flat" / "leaf"


@dataclass
class SearchResult:
    target: str
    found: bool
    box: Box | None  # image pixels
    confidence: float
    path: list[dict] = field(default_factory=list)  # visited patches in order: {"patch", "level", "score", "conf"}
    scored: int = 0  # patches the localiser scored (refinement included)
    refined: list = field(default_factory=list)  # the boxes of the refinement steps

    @property
    def path_length(self) -> int:
        return len(self.path)

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "found": self.found,
            "box": [round(v, 1) for v in self.box] if self.box else None,
            "confidence": round(self.confidence, 4),
            "path_length": self.path_length,
            "scored": self.scored,
            "path": self.path,
            "refined": [[round(v, 1) for v in b] for b in self.refined],
        }


class TargetSearch:
    """One target in one image. ``requests()`` lists the patches waiting for evidence; ``feed(evidence)`` answers
    them; repeat until ``done``; then ``result``."""

    def __init__(self, image, target: str, settings: SearchSettings, key=None):
        self.image, self.target, self.settings, self.key = image, target, settings, key
        W, H = image.size
        self.smallest = settings.smallest_size(W, H)
        self.nodes: list[Node] = [Node((0, 0, W, H), 1, -1)]
        self.frontier: list = []  # (-score, order, node index)
        self._order = itertools.count()
        self.visited: list[int] = []
        self.waiting: list[int] = [0]  # node indices to score
        self.refine_box: Box | None = None
        self.refine_left = 0
        self.window: Patch | None = None
        self.scored = 0
        self.result: SearchResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    def requests(self) -> list[PatchRequest]:
        if self.done:
            return []
        if self.window is not None:
            return [PatchRequest(self.image, self.window, self.target, self.key)]
        return [PatchRequest(self.image, self.nodes[i].patch, self.target, self.key) for i in self.waiting]

    def feed(self, evidence: Sequence[Evidence]) -> None:
        if self.window is not None:
            return self._refined(evidence[0])
        if len(evidence) != 1 or len(self.waiting) != 1:
            raise ValueError(f"expected evidence for {len(self.waiting)} patch(es), got {len(evidence)}")
        (i,) = self.waiting
        self.waiting = []
        self.nodes[i].evidence = evidence[0]
        self.scored += 1
        self.visited.append(i)
        if self._conf(i) >= self.settings.confidence_high:
            return self._found(i)
        self._split(i)
        if not self.frontier or self.scored >= self.settings.max_patches:
            return self._give_up()
        _, _, j = heapq.heappop(self.frontier)
        self.waiting = [j]

    # ---- internals ----------------------------------------------------------------------------------------
    def _conf(self, i: int) -> float:
        ev = self.nodes[i].evidence
        return float(ev.confidence) if ev is not None and ev.box is not None else 0.0

    def _is_leaf(self, node: Node) -> bool:
        x0, y0, x1, y1 = node.patch
        return min(x1 - x0, y1 - y0) <= self.smallest

    def _split(self, i: int) -> None:
        node = self.nodes[i]
        if self._is_leaf(node):
            node.cue = "leaf"
            return
        ev = node.evidence
        if float(np.max(ev.heatmap)) >= self.settings.cue_level_threshold(node.level):
            node.heatmap, node.cue = normalize(ev.heatmap), "target"
        elif ev.context is not None:
            node.heatmap, node.cue = normalize(ev.context), "context"
        else:
            node.heatmap, node.cue = normalize(ev.heatmap), "flat"
        chain, j = [], i
        while j >= 0:
            n = self.nodes[j]
            chain.append((n.heatmap, n.patch, n.level))
            j = n.parent
        kids = split(node.patch)
        scores = child_scores(chain, kids, self.settings.decay)
        for patch, score in zip(kids, scores):
            self.nodes.append(Node(patch, node.level + 1, i, score=score))
            heapq.heappush(self.frontier, (-score, next(self._order), len(self.nodes) - 1))

    def _image_box(self, i: int) -> Box:
        b = self.nodes[i].evidence.box
        x0, y0 = self.nodes[i].patch[:2]
        return (b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0)

    def _found(self, i: int) -> None:
        self.found_node = i
        self.refine_box = self._image_box(i)
        self.refine_conf = self._conf(i)
        self.refine_left = self.settings.refine_steps
        self.refined: list = []
        self._next_refine()

    def _next_refine(self) -> None:
        if self.refine_left <= 0:
            return self._finish(True, self.refine_box, self.refine_conf)
        self.refine_left -= 1
        s = self.settings
        W, H = self.image.size
        self.window = around(self.refine_box, s.refine_context, s.refine_min, W, H)

    def _refined(self, ev: Evidence) -> None:
        self.scored += 1
        window, self.window = self.window, None
        if ev.box is not None and ev.confidence >= self.settings.confidence_low:
            b = ev.box
            self.refine_box = (b[0] + window[0], b[1] + window[1], b[2] + window[0], b[3] + window[1])
            self.refined.append(self.refine_box)
        else:
            self.refine_left = 0
        self._next_refine()

    def _give_up(self) -> None:
        best = max(self.visited, key=self._conf)
        if self._conf(best) >= self.settings.confidence_low:
            self.visited = self.visited[: self.visited.index(best) + 1]  # V*: the path up to that step
            return self._found(best)
        self._finish(False, None, self._conf(best))

    def _finish(self, found: bool, box: Box | None, conf: float) -> None:
        path = []
        for i in self.visited:
            n = self.nodes[i]
            path.append(
                {
                    "patch": list(n.patch),
                    "level": n.level,
                    "score": None if n.score is None else round(float(n.score), 5),
                    "confidence": round(self._conf(i), 4),
                    "cue": n.cue,
                }
            )
        self.result = SearchResult(
            self.target,
            found,
            box,
            float(conf),
            path=path,
            scored=self.scored,
            refined=list(getattr(self, "refined", [])),
        )


def run_searches(localiser: Localiser, searches: Sequence[TargetSearch]) -> list[SearchResult]:
    """Advance every search in lockstep: each round, one localiser call scores the waiting patches of all of them."""
    while True:
        active = [(s, s.requests()) for s in searches if not s.done]
        if not active:
            break
        flat = [r for _, reqs in active for r in reqs]
        evidence = localiser.locate(flat)
        if len(evidence) != len(flat):
            raise RuntimeError(f"the localiser answered {len(evidence)} of {len(flat)} patches")
        k = 0
        for s, reqs in active:
            s.feed(evidence[k : k + len(reqs)])
            k += len(reqs)
    return [s.result for s in searches]
