"""Guided visual search (``cambrian.search``): the quad-tree split and the ancestor-decay scoring against hand-computed
values, the best-first order on a constructed heatmap, the localisers on constructed images whose target cell is
known, the memory prompt's text and boxes, the triggers and the target rules, and the whole loop around both VLM
implementations (``CambrianModel`` and the test suite's toy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import VLM_KINDS, make_vlm, set_context_length, tiny_cambrian
from PIL import Image, ImageDraw

from cambrian.constants import IMAGE_TOKEN
from cambrian.search.boxes import around, fmt, iou, normalized
from cambrian.search.guided import GuidedSearch, Question
from cambrian.search.localise import (
    DetectorLocaliser,
    EmbeddingLocaliser,
    Evidence,
    OracleLocaliser,
    PatchRequest,
    box_from_cells,
    target_words,
)
from cambrian.search.memory import memory_items, memory_prompt
from cambrian.search.quadtree import child_scores, mass_in, normalize, shares, split
from cambrian.search.search import TargetSearch, run_searches
from cambrian.search.settings import SearchSettings, search_settings
from cambrian.search.targets import rule_targets
from cambrian.search.trigger import MarginTrigger, RefusalTrigger, option_margin
from cambrian.typed import ConfigError


# ---- the quad-tree -------------------------------------------------------------------------------------------
def test_split_2x2_1x4_4x1_with_remainders():
    assert split((0, 0, 100, 60)) == [(0, 0, 50, 30), (50, 0, 100, 30), (0, 30, 50, 60), (50, 30, 100, 60)]
    # odd sides: integer strides, the last row / column takes the remainder (V*'s get_sub_patches)
    assert split((10, 20, 111, 81)) == [(10, 20, 60, 50), (60, 20, 111, 50), (10, 50, 60, 81), (60, 50, 111, 81)]
    assert split((0, 0, 50, 120)) == [(0, 0, 50, 30), (0, 30, 50, 60), (0, 60, 50, 90), (0, 90, 50, 120)]
    assert split((0, 0, 130, 60)) == [(0, 0, 32, 60), (32, 0, 64, 60), (64, 0, 96, 60), (96, 0, 130, 60)]
    assert len(split((0, 0, 50, 100))) == 4 and split((0, 0, 50, 100))[1] == (0, 25, 50, 50)  # h/w = 2: a column
    assert split((0, 0, 100, 50))[1] == (25, 0, 50, 50)  # h/w = 0.5: a row
    with pytest.raises(ValueError):
        split((5, 5, 5, 9))


def test_heatmap_mass_counts_the_covered_part_of_each_cell():
    h = np.arange(1, 10, dtype=float).reshape(3, 3)
    # cells (0,0) whole, (0,1) and (1,0) half, (1,1) a quarter: 1 + 2/2 + 4/2 + 5/4
    assert mass_in(h, (0, 0, 3, 3), (0, 0, 1.5, 1.5)) == pytest.approx(5.25)
    assert shares(h, (0, 0, 3, 3), [(0, 0, 1.5, 1.5), (0, 0, 3, 3)]) == pytest.approx([5.25 / 45, 1.0])
    assert shares(np.zeros((2, 2)), (0, 0, 4, 4), [(0, 0, 2, 2)]) == [0.0]
    assert normalize(np.array([[0.0, 1.0], [1.0, 2.0]])).tolist() == [[0.0, 0.5], [0.5, 1.0]]
    assert normalize(np.full((2, 2), 3.0)).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_ancestor_decay_scores_by_hand():
    """Root (0,0,8,8) at level 1 with heatmap [[0,1],[1,2]] (cells of 4x4 px, mass 4); its bottom-right child
    (4,4,8,8) at level 2 with heatmap [[0,0],[0,1]] (cells of 2x2 px, mass 1). The child's four sub-patches each
    cover a quarter of the root's cell of value 2: share 0.5 / 4, divided by 4^1 = 1/32. Only the last one holds the
    child's mass: share 1, divided by 4^2 = 1/16. Scores: 1/32, 1/32, 1/32, 1/32 + 1/16."""
    root = (np.array([[0.0, 1.0], [1.0, 2.0]]), (0, 0, 8, 8), 1)
    child = (np.array([[0.0, 0.0], [0.0, 1.0]]), (4, 4, 8, 8), 2)
    kids = split((4, 4, 8, 8))
    assert kids == [(4, 4, 6, 6), (6, 4, 8, 6), (4, 6, 6, 8), (6, 6, 8, 8)]
    assert child_scores([child, root], kids, 4.0) == pytest.approx([1 / 32, 1 / 32, 1 / 32, 3 / 32])
    # the root's own children: shares 0, 1/4, 1/4, 2/4 of its mass, over 4^1
    assert child_scores([root], split((0, 0, 8, 8)), 4.0) == pytest.approx([0, 1 / 16, 1 / 16, 1 / 8])


# ---- the search on a constructed heatmap -----------------------------------------------------------------------
TARGET = (700, 100, 730, 130)


class GridLocaliser:
    """Heatmap: 4x4 cells over the patch, 1 where the cell holds the target's centre. Detection: only once the patch
    is at most ``visible`` pixels wide (a small object is readable only when zoomed in), with ``conf``."""

    def __init__(self, visible=256, conf=1.0, target=TARGET):
        self.visible, self.conf, self.target, self.calls = visible, conf, target, []

    def locate(self, requests):
        self.calls.append([r.patch for r in requests])
        out = []
        cx, cy = (self.target[0] + self.target[2]) / 2, (self.target[1] + self.target[3]) / 2
        for r in requests:
            x0, y0, x1, y1 = r.patch
            h = np.zeros((4, 4))
            inside = x0 <= cx < x1 and y0 <= cy < y1
            if inside:
                h[int(4 * (cy - y0) / (y1 - y0)), int(4 * (cx - x0) / (x1 - x0))] = 1.0
            seen = inside and (x1 - x0) <= self.visible
            box = tuple(v - o for v, o in zip(self.target, (x0, y0, x0, y0))) if seen else None
            out.append(Evidence(h, self.conf if seen else 0.0, box, context=np.ones((4, 4))))
        return out


def _image(size=(1024, 1024)):
    return Image.new("RGB", size, (128, 128, 128))


def test_best_first_search_goes_down_the_target_quadrants():
    loc = GridLocaliser()
    s = SearchSettings(refine_steps=0)
    (res,) = run_searches(loc, [TargetSearch(_image(), "cup", s)])
    assert res.found and res.box == pytest.approx(TARGET)
    # root, its top-right quarter (all of the root's heatmap), then the 256-px patch holding the target
    assert [p["patch"] for p in res.path] == [[0, 0, 1024, 1024], [512, 0, 1024, 512], [512, 0, 768, 256]]
    assert res.path[1]["score"] == pytest.approx(1 / 4)  # share 1 of the root's mass / 4^1
    # + its own heatmap's share / 4^2: sub-patches are ranked from the evidence of their ancestors, not scored
    assert res.path[2]["score"] == pytest.approx(1 / 4 + 1 / 16)
    assert res.scored == 3 and [len(c) for c in loc.calls] == [1, 1, 1]


def test_search_keeps_a_tentative_detection_above_the_low_threshold_only():
    s = SearchSettings(refine_steps=0)
    (res,) = run_searches(GridLocaliser(conf=0.4), [TargetSearch(_image(), "cup", s)])
    assert res.found and res.confidence == pytest.approx(0.4)  # 0.3 <= 0.4 < 0.5: kept after the frontier ran out
    assert res.scored == 21  # 1 + 4 + 16: every patch down to the 256-px leaves
    assert res.path[-1]["patch"] == [512, 0, 768, 256] and res.path_length == 3  # cut after the kept detection
    (res,) = run_searches(GridLocaliser(conf=0.2), [TargetSearch(_image(), "cup", s)])
    assert not res.found and res.box is None
    (res,) = run_searches(GridLocaliser(conf=0.2), [TargetSearch(_image(), "cup", SearchSettings(max_patches=5))])
    assert not res.found and res.scored == 5  # the budget ends it


def test_leaves_follow_vstars_smallest_size_rule():
    s = SearchSettings()
    assert s.smallest_size(2246, 1582) == math.ceil(1582 / 4)  # 396 > 224
    assert s.smallest_size(600, 400) == 224
    assert s.cue_level_threshold(1) == 0.5 and s.cue_level_threshold(2) == pytest.approx(0.35)
    assert s.cue_level_threshold(5) == 0.25  # floor


def test_refinement_takes_the_box_found_in_a_window_around_the_first():
    class Coarse(GridLocaliser):
        """Boxes snapped outwards to a 4x4 grid of the patch (what a coarse localiser can say)."""

        def locate(self, requests):
            out = super().locate(requests)
            for r, ev in zip(requests, out):
                if ev.box is not None:
                    cw, ch = (r.patch[2] - r.patch[0]) / 4, (r.patch[3] - r.patch[1]) / 4
                    b = ev.box
                    ev.box = (
                        cw * math.floor(b[0] / cw),
                        ch * math.floor(b[1] / ch),
                        cw * math.ceil(b[2] / cw),
                        ch * math.ceil(b[3] / ch),
                    )
            return out

    s = SearchSettings(refine_steps=0)
    (first,) = run_searches(Coarse(), [TargetSearch(_image(), "cup", s)])
    assert first.box == pytest.approx((640, 64, 768, 192))  # 64-px cells of the 256-px patch
    s = SearchSettings(refine_steps=2, refine_context=1.5)
    (res,) = run_searches(Coarse(), [TargetSearch(_image(), "cup", s)])
    # a 192-px window around it has 48-px cells: (608, 32) + [48, 48, 144, 144]; then a 144-px one, 36-px cells
    assert res.refined[0] == pytest.approx((656, 80, 752, 176))
    assert len(res.refined) == 2 and res.box == res.refined[-1]
    assert iou(res.box, TARGET) > iou(res.refined[0], TARGET) > iou(first.box, TARGET)
    assert res.scored == 3 + 2


def test_searches_of_several_questions_share_localiser_calls():
    loc = GridLocaliser()
    other = GridLocaliser(target=(100, 800, 120, 820))
    searches = [TargetSearch(_image(), "cup", SearchSettings(refine_steps=0)) for _ in range(3)]
    results = run_searches(loc, searches)
    assert [len(c) for c in loc.calls] == [3, 3, 3]  # one patch per search and round, all in one call
    assert all(r.found for r in results)
    (far,) = run_searches(other, [TargetSearch(_image(), "cup", SearchSettings(refine_steps=0))])
    assert far.path[1]["patch"] == [0, 512, 512, 1024]


# ---- localisers --------------------------------------------------------------------------------------------------
def _colour_cells(word_of_colour):
    """A stand-in for the grounded cells: each cell of the tiny model's 4x4 grid becomes the mean embedding of the
    words of its crop area's dominant colour (``word_of_colour``), the way grounding places them."""
    from cambrian.data.grounding import WordIds
    from cambrian.models.connectors.geometry import valid_region

    def cells(model, images):
        E = model.llm.get_input_embeddings().weight.detach()
        words = WordIds(model.tokenizer)
        side = model.grounding_grid
        out = []
        for im in images:
            top, bottom, left, right = valid_region(im.width, im.height, side)
            h, w = bottom - top, right - left
            arr = np.asarray(im.convert("RGB").resize((w * 8, h * 8), Image.NEAREST), dtype=float)
            grid = torch.zeros(h, w, E.shape[1])
            for r in range(h):
                for c in range(w):
                    rgb = tuple(int(v) for v in arr[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8].reshape(-1, 3).mean(0))
                    ids = [t for word in word_of_colour(rgb).split() for t in words(word)]
                    grid[r, c] = E[torch.tensor(ids)].mean(0)
            out.append((grid, (top, bottom, left, right)))
        return out

    return cells


def _words(rgb):
    return "red cube" if rgb[0] > 150 and rgb[1] < 100 else "blue sphere" if rgb[2] > 150 else "floor"


def test_embedding_localiser_finds_the_known_cell():
    model = tiny_cambrian()
    assert model.grounding_grid == 4
    im = _image((400, 400))
    ImageDraw.Draw(im).rectangle([200, 300, 299, 399], fill=(220, 20, 20))  # cell (row 3, col 2)
    ImageDraw.Draw(im).rectangle([0, 0, 99, 99], fill=(20, 20, 220))  # a distractor in cell (0, 0)
    loc = EmbeddingLocaliser(model, cells=_colour_cells(_words))
    (ev,) = loc.locate([PatchRequest(im, (0, 0, 400, 400), "cube")])
    assert np.unravel_index(ev.heatmap.argmax(), ev.heatmap.shape) == (3, 2)
    assert ev.confidence == pytest.approx(1.0, abs=1e-4)  # the target is that cell's nearest word
    assert ev.heatmap[0, 0] < 0.5 and ev.heatmap[1, 1] < 0.5
    assert ev.box == pytest.approx((200, 300, 300, 400))  # the cell, in the patch's pixels
    assert ev.context[3, 2] > 0.5 and ev.context[0, 0] > 0.5 and ev.context[1, 1] == pytest.approx(0.0)
    # "red object": the generic noun is dropped, the colour finds the same cell
    (ev,) = loc.locate([PatchRequest(im, (0, 0, 400, 400), "red object")])
    assert np.unravel_index(ev.heatmap.argmax(), ev.heatmap.shape) == (3, 2)
    # two words must both be near: the blue sphere's cell is found as "blue sphere", not as "blue cube"
    sphere, cube = loc.locate([PatchRequest(im, (0, 0, 400, 400), t) for t in ("blue sphere", "blue cube")])
    assert sphere.confidence == pytest.approx(1.0, abs=1e-4) and sphere.heatmap[0, 0] == sphere.heatmap.max()
    assert cube.confidence < 0.5


def test_embedding_localiser_maps_a_letterboxed_patch():
    model = tiny_cambrian()
    im = _image((800, 400))
    ImageDraw.Draw(im).rectangle([600, 200, 799, 399], fill=(220, 20, 20))
    loc = EmbeddingLocaliser(model, cells=_colour_cells(_words))
    (ev,) = loc.locate([PatchRequest(im, (0, 0, 800, 400), "cube")])
    assert ev.heatmap.shape == (2, 4)  # a 2:1 patch fills rows 1-2 of the 4x4 grid
    assert ev.box == pytest.approx((600, 200, 800, 400))


def test_embedding_localiser_refuses_a_model_without_a_grounded_grid():
    with pytest.raises(ValueError, match="grounded grid"):
        EmbeddingLocaliser(make_vlm("toy"))


def test_cell_tokens_of_a_real_model_cover_the_valid_region():
    from cambrian.models.grounding import cell_tokens

    model = tiny_cambrian()
    (tokens, region), (wide, wregion) = cell_tokens(model, [_image((64, 64)), _image((128, 64))])
    assert tokens.shape[:2] == (4, 4) and region == (0, 4, 0, 4)
    assert wide.shape[:2] == (2, 4) and wregion == (1, 3, 0, 4)


def test_box_from_cells_keeps_the_connected_group_of_the_best_cell():
    score = np.zeros((4, 4))
    score[1, 1], score[1, 2], score[3, 3] = 1.0, 0.6, 0.9  # (3,3) is strong but not connected
    assert box_from_cells(score, (0, 4, 0, 4), (40, 40)) == pytest.approx((10, 10, 30, 20))
    assert box_from_cells(np.zeros((4, 4)), (0, 4, 0, 4), (40, 40)) is None


def test_detector_and_oracle_localisers():
    im = _image((200, 100))

    def detect(crop, target):
        return [((10, 10, 20, 30), 0.9), ((0, 0, 5, 5), 0.2)] if target == "cup" else []

    ev, none = DetectorLocaliser(detect).locate(
        [PatchRequest(im, (0, 0, 200, 100), "cup"), PatchRequest(im, (0, 0, 200, 100), "dog")]
    )
    assert ev.confidence == 0.9 and ev.box == (10, 10, 20, 30) and ev.heatmap.max() == 0.9
    assert none.confidence == 0.0 and none.box is None
    oracle = OracleLocaliser({("q1", "cup"): [(150, 40, 170, 60)]})
    whole, half, miss = oracle.locate(
        [
            PatchRequest(im, (100, 0, 200, 100), "cup", key="q1"),
            PatchRequest(im, (0, 0, 160, 100), "cup", key="q1"),
            PatchRequest(im, (0, 0, 100, 100), "cup", key="q1"),
        ]
    )
    assert whole.confidence == 1.0 and whole.box == (50, 40, 70, 60)
    assert half.confidence == pytest.approx(0.5)
    assert miss.box is None


def test_target_words():
    assert target_words("red object") == ["red"]
    assert target_words("woman's bag") == ["woman", "bag"]
    assert target_words("object") == ["object"]


# ---- memory, triggers, targets -----------------------------------------------------------------------------------
def test_memory_prompt_text_and_boxes():
    im = _image((200, 100))
    s = SearchSettings()
    (item,) = memory_items(im, [("sphere", (20, 30, 40, 50))], s)
    assert item.window == (18, 28, 42, 52)  # 1.2 x the 20x20 box, centred
    assert item.crop.size == (24, 24)
    # boxes as fractions of the image padded to a square (200x200, the image 50 px down), three decimals
    assert normalized((20, 30, 40, 50), 200, 100) == pytest.approx((0.1, 0.4, 0.2, 0.5))
    text, images = memory_prompt("What color is the sphere?", im, [item], "vstar")
    assert text == (
        "<image>\nAdditional visual information to focus on: sphere <image> at location "
        "[0.100,0.400,0.200,0.500].\nWhat color is the sphere?"
    )
    assert images == [im, item.crop]
    (cube,) = memory_items(im, [("cube", (150, 0, 190, 20))], s)
    text, images = memory_prompt("Is the sphere left of the cube?", im, [item, cube], "vstar")
    assert text.count(IMAGE_TOKEN) == 3 and "sphere <image> at location [0.100,0.400,0.200,0.500]; cube <image>" in text
    assert images == [im, item.crop, cube.crop]
    text, images = memory_prompt("What color is the sphere?", im, [item], "focus")
    assert text == (
        "Additional visual information to focus on: sphere <image> at location [0.100,0.400,0.200,0.500].\n"
        "What color is the sphere?"
    )
    assert images == [item.crop]
    text, images = memory_prompt("What color is the sphere?", im, [item], "crops")
    assert text == "<image>\nWhat color is the sphere?" and images == [item.crop]
    assert memory_prompt("Q?", im, [], "vstar") == ("<image>\nQ?", [im])
    assert fmt((0.1234, 0, 1, 0.5)) == "[0.123,0.000,1.000,0.500]"


def test_crop_window_stays_inside_the_image():
    assert around((190, 80, 200, 100), 1.2, 50, 200, 100) == (150, 50, 200, 100)
    assert around((0, 0, 400, 400), 1.2, 0, 200, 100) == (0, 0, 200, 100)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_triggers():
    assert option_margin([math.log(0.7), math.log(0.2), math.log(0.1)]) == pytest.approx(0.5)
    assert option_margin([0.0]) == 1.0
    go, margin, _ = MarginTrigger(0.6).decide([math.log(0.7), math.log(0.2), math.log(0.1)])
    assert go and margin == pytest.approx(0.5)
    assert not MarginTrigger(0.4).decide([math.log(0.7), math.log(0.2), math.log(0.1)])[0]
    assert MarginTrigger(0.4).decide(None)[0]  # no options: nothing to read, search
    refusal = RefusalTrigger("Sorry, I can not answer the question")
    answer = (
        "Sorry, I can not answer the question. Some visual information about the following objects is missing or "
        "unclear: red cup, dog."
    )
    assert refusal.decide(None, answer) == (True, None, ["red cup", "dog"])
    assert refusal.decide(None, "It is red.") == (False, None, None)


@pytest.mark.parametrize(
    "question, targets",
    [
        ("What is the color of the woman's bag?", ["woman's bag"]),
        ("What color is the sphere?\nAnswer the question using a single word or phrase.", ["sphere"]),
        ("What shape is the red object?", ["red object"]),
        ("Is the cup on the left or right side of the dog?", ["cup", "dog"]),
        ("What is the material of the glove?\n(A) rubber\n(B) cotton", ["glove"]),
        ("How many are there?", []),
    ],
)
def test_rule_targets(question, targets):
    assert rule_targets(question) == targets


def test_settings_are_typed_and_checked():
    s = search_settings(["trigger=always", "crop_scale=3"])
    assert s.trigger == "always" and s.crop_scale == 3.0
    with pytest.raises(ConfigError, match="did you mean 'crop_scale'"):
        search_settings(["crop_scal=3"])
    with pytest.raises(ConfigError, match="trigger"):
        search_settings(["trigger=sometimes"])


# ---- the loop around both VLMs -----------------------------------------------------------------------------------
def _scene():
    im = _image((512, 512))
    ImageDraw.Draw(im).rectangle([400, 40, 423, 63], fill=(220, 20, 20))
    return im


def _red_detector(crop, target):
    """Finds the red square when it is at least 8% of the crop's width (a small object seen only when zoomed)."""
    arr = np.asarray(crop.convert("RGB"), dtype=int)
    ys, xs = np.nonzero((arr[..., 0] > 150) & (arr[..., 1] < 100))
    if not len(xs) or (xs.max() - xs.min() + 1) < 0.08 * crop.width:
        return []
    return [((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), 0.9)]


@pytest.mark.parametrize("kind", VLM_KINDS)
def test_guided_search_around_either_vlm(kind):
    model = make_vlm(kind).eval()
    set_context_length(model, 1024)  # the memory prompt is long in the tiny models' character-level tokens
    s = SearchSettings(trigger="always", min_size=64, refine_steps=0)
    gs = GuidedSearch(model, s, localiser=DetectorLocaliser(_red_detector))
    im = _scene()
    q = Question("What color is the cube?", im, options=["red", "blue"], key="q")
    (out,) = gs.run([q, Question("What is it?", None)])[:1]
    assert out.searched and out.targets == ["cube"]
    (res,) = out.results
    assert res.found and res.box == pytest.approx((400, 40, 424, 64))
    assert out.prompt.count(IMAGE_TOKEN) == 2 and "cube <image> at location" in out.prompt
    assert out.images[0] is im and out.images[1].size == (29, 29)  # 1.2 x 24, rounded
    # the answer is the model's own likelihood of the options under the memory prompt
    direct = model.score_options([out.prompt], [out.images], [["red", "blue"]])[0]
    assert out.option_scores == pytest.approx(direct, abs=1e-4)
    assert out.choice in (0, 1) and out.answer == ["red", "blue"][out.choice]
    # never searching gives the plain answer
    plain = GuidedSearch(model, SearchSettings(trigger="never"), localiser=DetectorLocaliser(_red_detector))
    (p,) = plain.run([q])
    assert not p.searched and p.prompt == f"{IMAGE_TOKEN}\nWhat color is the cube?"
    assert p.choice == out.plain_choice
    # generation without options
    (g,) = gs.run([Question("What color is the cube?", im)], max_new_tokens=3)
    assert g.searched and isinstance(g.answer, str) and g.choice is None


def test_guided_search_cache_runs_each_target_once():
    model = make_vlm("toy").eval()
    calls = []

    def detect(crop, target):
        calls.append(target)
        return _red_detector(crop, target)

    gs = GuidedSearch(model, SearchSettings(trigger="always", min_size=64), localiser=DetectorLocaliser(detect))
    cache = {}
    q = Question("What color is the cube?", _scene(), options=["red", "blue"], key=("b", 1))
    gs.run([q], cache=cache)
    n = len(calls)
    gs.run([Question(q.text, q.image, options=["A", "B"], key=("b", 1))], cache=cache)
    assert len(calls) == n and ("b", 1), "cube" in cache


def test_ask_localiser_runs_on_any_vlm():
    from cambrian.search.localise import AskLocaliser

    model = make_vlm("toy").eval()
    (ev,) = AskLocaliser(model).locate([PatchRequest(_scene(), (0, 0, 512, 512), "cube")])
    assert ev.heatmap.shape == (2, 2) and 0 <= ev.confidence <= 1
    assert ev.box in [(0, 0, 256, 256), (256, 0, 512, 256), (0, 256, 256, 512), (256, 256, 512, 512)]
