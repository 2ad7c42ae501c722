"""CV-Bench: extraction, official scoring, schema validation, loader round trips, builder rules (hand-made data)."""

import io
import json

import numpy as np
import pytest

from cambrian.cvbench.builder import (
    BuildParams,
    build_cvbench,
    count_options,
    depth_order,
    distance_order,
    plural,
    questions_from_coco,
    questions_from_omni3d,
)
from cambrian.cvbench.extract import extract_choice, extract_letter
from cambrian.cvbench.loader import load_cvbench
from cambrian.cvbench.schema import SchemaError, format_prompt, model_prompt, validate_row
from cambrian.cvbench.score import score_items

# ------------------------------------------------------------------------------------------------ extraction
CH = ["left", "right"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("B", 1),
        ("(B)", 1),
        ("B.", 1),
        ("b", 1),
        ("B)", 1),
        (" (A) ", 0),
        ("The answer is B", 1),
        ("The answer is (B).", 1),
        ("Answer: A", 0),
        ("**B**", 1),
        ("right", 1),
        ("Right.", 1),
        ("the left", 0),
        ("(B) right", 1),
        ("A. left", 0),
    ],
)
def test_extract_accepts(text, expected):
    assert extract_choice(text, CH) == expected


@pytest.mark.parametrize(
    "text", ["B or A", "Bicycle", "C", "(D)", "", "   ", "I cannot tell", "(A) right", "left or right", "Below"]
)
def test_extract_rejects(text):
    assert extract_choice(text, CH) is None


def test_extract_numeric_options_and_letter_form():
    ch = ["3", "0", "1", "2", "4"]
    assert extract_choice("2", ch) == 3  # option text, not a letter
    assert extract_choice("E", ch) == 4
    assert extract_letter("The answer is C.", ch) == "(C)"
    assert extract_letter("7", ch) is None


# ------------------------------------------------------------------------------------------------ scoring
def _item(idx, typ, task, src, ans="(A)", choices=("left", "right")):
    return {"idx": idx, "type": typ, "task": task, "source": src, "choices": list(choices), "answer": ans}


def test_official_score_differs_from_flat():
    items = (
        [_item(i, "2D", "Relation", "ADE20K") for i in range(2)]  # 1 right, 1 parse failure -> 0.5
        + [_item(10 + i, "2D", "Count", "COCO", "(B)", ("0", "1", "2", "3")) for i in range(4)]  # 4/4 -> 1.0
        + [_item(20 + i, "3D", "Depth", "Omni3D") for i in range(2)]  # 1/2
        + [_item(30 + i, "3D", "Distance", "Omni3D") for i in range(2)]  # 0/2 (one missing) -> Omni3D 1/4
    )
    preds = {
        0: "A",
        1: "Bicycle",
        10: "B",
        11: "(B)",
        12: "1",
        13: "The answer is B.",
        20: "A",
        21: "B",
        30: "right",
    }  # 31 missing
    s = score_items(items, preds)
    # hand-computed: ade 1/2, coco 4/4, omni 1/4; 2D = (0.5 + 1) / 2 = 0.75; 3D = 0.25; overall = 0.5
    assert s["accuracy_2d_ade"] == pytest.approx(0.5)
    assert s["accuracy_2d_coco"] == pytest.approx(1.0)
    assert s["accuracy_3d_omni"] == pytest.approx(0.25)
    assert s["accuracy_2d"] == pytest.approx(0.75)
    assert s["accuracy_3d"] == pytest.approx(0.25)
    assert s["overall"] == pytest.approx(0.5)
    assert s["flat_accuracy"] == pytest.approx(6 / 10)  # differs from the official 0.5
    assert s["per_task"] == pytest.approx({"Count": 1.0, "Depth": 0.5, "Distance": 0.0, "Relation": 0.5})
    assert s["per_source"] == pytest.approx({"ADE20K": 0.5, "COCO": 1.0, "Omni3D": 0.25})
    assert s["parse_failure_rate"] == pytest.approx(0.1)
    assert s["n_parse_failures"] == 1 and s["n_missing"] == 1
    assert s["parse_failures"] == [{"idx": 1, "prediction": "Bicycle"}]
    for k, v in s.items():
        if k.startswith("accuracy") or k in ("overall", "flat_accuracy", "parse_failure_rate"):
            assert 0.0 <= v <= 1.0


def test_synth_sources_generalise_keys_and_str_idx_predictions():
    items = [_item(0, "2D", "Count", "Synth2D", "(B)"), _item(1, "3D", "Depth", "Synth3D")]
    s = score_items(items, {"0": "B", "1": "B"})
    assert s["accuracy_2d_synth2d"] == 1.0 and s["accuracy_3d_synth3d"] == 0.0
    assert s["overall"] == 0.5
    only2d = score_items(items[:1], {0: "B"})
    assert only2d["accuracy_3d"] is None and only2d["overall"] == 1.0


# ------------------------------------------------------------------------------------------------ schema
def _row(**kw):
    r = {
        "idx": 0,
        "type": "2D",
        "task": "Relation",
        "image": None,
        "question": "Where is the cat?",
        "choices": ["left", "right"],
        "answer": "(B)",
        "prompt": "p",
        "filename": "img/2D/relation/x_0.png",
        "source": "COCO",
        "source_dataset": "COCO",
        "source_filename": "x.jpg",
        "target_class": None,
        "target_size": None,
        "bbox": None,
    }
    r.update(kw)
    return r


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"answer": "B"}, "answer"),
        ({"answer": "(C)"}, "answer"),
        ({"type": "3D"}, "type"),
        ({"task": "Colour"}, "task"),
        ({"choices": ["only"]}, "choices"),
        ({"question": ""}, "question"),
        ({"bbox": "box"}, "bbox"),
    ],
)
def test_schema_errors_name_row_and_field(bad, field):
    with pytest.raises(SchemaError) as e:
        validate_row(_row(idx=7, **bad), 3)
    assert "row 3" in str(e.value) and "idx=7" in str(e.value) and repr(field) in str(e.value)


def test_schema_missing_field():
    r = _row()
    del r["prompt"]
    with pytest.raises(SchemaError, match=r"row 0 .*'prompt'"):
        validate_row(r, 0)


def test_prompt_format():
    p = format_prompt("How many cubes are in the image?", ["3", "0"])
    assert p == "How many cubes are in the image? Select from the following choices.\n(A) 3\n(B) 0"
    assert model_prompt(p).endswith("\n(B) 0\nAnswer with the option's letter from the given choices directly.")


# ------------------------------------------------------------------------------------------------ loader
def _png(color=(255, 0, 0)):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format="PNG")
    return buf.getvalue()


def test_loader_parquet_and_jsonl_and_benchmark(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cambrian.eval.api import get_benchmark

    rows2d = [_row(idx=0, image={"bytes": _png(), "path": "a.png"}, prompt=format_prompt("Where?", ["left", "right"]))]
    rows3d = [
        _row(
            idx=1,
            type="3D",
            task="Depth",
            source="Omni3D",
            answer="(A)",
            choices=["lamp", "bed"],
            image={"bytes": _png((0, 0, 255)), "path": "b.png"},
            bbox=[[0.0, 0.0, 2.0, 2.0]],
        )
    ]
    pq.write_table(pa.Table.from_pylist(rows2d), tmp_path / "test_2d.parquet")
    pq.write_table(pa.Table.from_pylist(rows3d), tmp_path / "test_3d.parquet")
    rows = load_cvbench(tmp_path)
    assert [r["idx"] for r in rows] == [0, 1]
    assert rows[1].image().getpixel((0, 0)) == (0, 0, 255)
    assert rows[1]["bbox"] == [[0.0, 0.0, 2.0, 2.0]]

    bench = get_benchmark("cvbench")
    assert bench.category == "Vision-Centric" and bench.max_new_tokens == 512
    samples = bench.load(str(tmp_path))
    assert samples[0].prompt.endswith("(B) right\nAnswer with the option's letter from the given choices directly.")
    assert samples[0].load_images()[0].size == (8, 6)
    assert bench.extract(samples[0], "The answer is B") == "(B)"
    s = bench.score(samples, {0: "B", 1: "bed"})
    assert s["accuracy_2d_coco"] == 1.0 and s["accuracy_3d_omni"] == 0.0 and s["overall"] == 0.5

    # jsonl + img/ layout
    jd = tmp_path / "j"
    (jd / "img" / "2D" / "relation").mkdir(parents=True)
    (jd / "img" / "2D" / "relation" / "x_0.png").write_bytes(_png((0, 255, 0)))
    r = _row()
    r.pop("image")
    (jd / "test.jsonl").write_text(json.dumps(r) + "\n")
    rows = load_cvbench(jd)
    assert rows[0].image().getpixel((1, 1)) == (0, 255, 0)

    # a bad row is reported with its position and field
    pq.write_table(pa.Table.from_pylist([{**rows2d[0], "answer": "(Z)"}]), tmp_path / "bad.parquet")
    with pytest.raises(SchemaError, match=r"row 0 \(idx=0\): field 'answer'"):
        load_cvbench(tmp_path / "bad.parquet")


# ------------------------------------------------------------------------------------------------ builder
def test_plural_and_count_options():
    assert plural("red cube") == "red cubes" and plural("person") == "people" and plural("bus") == "buses"
    assert plural("pony") == "ponies" and plural("knife") == "knives"
    rng = np.random.default_rng(0)
    for truth in range(0, 7):
        for k in (4, 5, 6):
            for _ in range(10):
                o = count_options(truth, k, rng)
                assert len(o) == k and len(set(o)) == k and truth in o and 0 in o and min(o) >= 0

    # truth 4, k 5, window starting at 2 -> [2..6] -> farthest (6) replaced by 0
    class FixedRng:
        def integers(self, lo, hi):
            return 2

    assert count_options(4, 5, FixedRng()) == [0, 2, 3, 4, 5]


def _coco():
    cats = [
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
        {"id": 3, "name": "person"},
        {"id": 4, "name": "bird"},
        {"id": 5, "name": "kite"},
        {"id": 6, "name": "car"},
    ]
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 40, 20, 20], "area": 400},  # cat centre (20, 50)
        {"image_id": 1, "category_id": 2, "bbox": [70, 42, 20, 20], "area": 400},  # dog centre (80, 52)
        *[{"image_id": 1, "category_id": 3, "bbox": [5 + 30 * i, 80, 10, 10], "area": 100} for i in range(3)],
        {"image_id": 1, "category_id": 4, "bbox": [50, 50, 3, 3], "area": 9},  # tiny bird: ambiguous
        {"image_id": 1, "category_id": 5, "bbox": [40, 5, 30, 10], "area": 300, "iscrowd": 1},  # crowd
    ]
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
        "annotations": anns,
        "categories": cats,
    }


def test_builder_count_and_relation_rules():
    P = BuildParams(max_per_image={"Count": 99, "Relation": 99}, count_zero_prob=1.0, relation_margin=0.05)
    stats = __import__("collections").Counter()
    qs = questions_from_coco(_coco(), P, seed=0, stats=stats)
    counts = {q.target_class: q for q in qs if q.task == "Count"}
    # cat 1, dog 1, person 3; bird (tiny) and kite (crowd) skipped; one existence check on the absent car (0)
    assert {k: q.truth for k, q in counts.items()} == {"cat": 1, "dog": 1, "person": 3, "car": 0}
    for q in counts.values():
        assert q.choices[q.answer_index] == str(q.truth) and "0" in q.choices
    assert counts["person"].question == "How many people are in the image?"
    rel = [q for q in qs if q.task == "Relation"]
    # only cat and dog are single clean instances; |dy| = 2 < 5 px margin, so only left/right; both orders
    assert len(rel) == 2 and stats["count_dropped_ambiguous"] == 2
    for q in rel:
        assert set(q.choices) == {"left", "right"}
        a = q.question.split("positions of the ")[1].split(" and")[0]
        assert q.choices[q.answer_index] == ("left" if a == "cat" else "right")
        assert q.question.endswith(f"where is the {a} located with respect to the {'dog' if a == 'cat' else 'cat'}?")
    # a bigger margin drops the pair
    assert not [q for q in questions_from_coco(_coco(), BuildParams(relation_margin=0.7), 0) if q.task == "Relation"]


def _box(cx, cy, cz, d):
    return {"center_cam": [cx, cy, cz], "dimensions": [d, d, d], "R_cam": np.eye(3).tolist()}


def test_depth_and_distance_rules_hand_computed():
    import itertools

    def corners(cx, cy, cz, d):
        return np.array(
            [[cx + sx * d / 2, cy + sy * d / 2, cz + sz * d / 2] for sx, sy, sz in itertools.product([-1, 1], repeat=3)]
        )

    A, B, C = corners(0, 0, 2, 1), corners(0, 0, 5, 1), corners(0.3, 0, 2.8, 1)
    # A's farthest vertex: sqrt(.25 + .25 + 6.25) = 2.598; B's nearest: sqrt(.25 + .25 + 20.25) = 4.555
    assert depth_order(A, B, 0.1) == 0 and depth_order(B, A, 0.1) == 1
    assert depth_order(A, B, 2.0) is None  # 2.598 + 2 > 4.555
    assert depth_order(A, C, 0.1) is None  # overlapping in depth
    anchor, near, far = corners(0, 0, 3, 1), corners(1.5, 0, 3, 0.5), corners(-4, 0, 3, 0.5)
    # near: max distance to anchor centre = |(1.75, .25, .25)| = 1.785; far: min = |(3.75, .25, .25)| = 3.767
    assert distance_order(anchor, near, far, 0.1) == 0 and distance_order(anchor, far, near, 0.1) == 1
    assert distance_order(anchor, near, far, 2.0) is None


def test_builder_omni3d_questions():
    K = [[100, 0, 50], [0, 100, 50], [0, 0, 1]]
    anns = [
        {"image_id": 1, "category_name": "lamp", **_box(-0.5, 0, 2, 0.5)},
        {"image_id": 1, "category_name": "bed", **_box(0.8, 0, 6, 1.0)},
        {"image_id": 1, "category_name": "chair", **_box(-0.3, 0, 7, 0.5)},
        {"image_id": 1, "category_name": "cup", **_box(0.5, 0.5, 3, 0.2)},
        {"image_id": 1, "category_name": "cup", **_box(-0.5, 0.5, 3, 0.2)},  # two cups: never asked
    ]
    omni = {
        "images": [{"id": 1, "file_path": "a.png", "width": 100, "height": 100, "K": K}],
        "annotations": anns,
        "categories": [],
    }
    P = BuildParams(max_per_image={"Depth": 99, "Distance": 99}, min_area=1)
    qs = questions_from_omni3d(omni, P, seed=3)
    depth = [q for q in qs if q.task == "Depth"]
    dist = [q for q in qs if q.task == "Distance"]
    z = {"lamp": 2, "bed": 6, "chair": 7}
    # pairs: lamp/bed, lamp/chair valid; bed/chair: bed far vertex |(1.3,.5,6.5)| = 6.65 vs chair near
    # |(-0.55, .25, 6.75)| = 6.78: 6.65 + 0.1 < 6.78 -> valid too
    assert len(depth) == 3
    for q in depth:
        assert "cup" not in q.question
        assert q.choices[q.answer_index] == min(q.choices, key=z.get)
        assert [c for _, c in q.boxes] == ["red", "blue"]
        assert q.question.startswith(
            f"Which object is closer to the camera taking this photo, the {q.choices[0]} (highlighted by a red box)"
        )
        # boxes are the projected corners: lamp at z=2 spans u = 50 + 100*(-0.75)/1.75 ...
    lamp_q = next(q for q in depth if q.choices[0] == "lamp")
    assert lamp_q.boxes[0][0][0] == pytest.approx(50 + 100 * -0.75 / 1.75)
    for q in dist:
        anchor = q.question.split("closer to the ")[1].split(" (")[0]
        assert anchor not in q.choices and [c for _, c in q.boxes] == ["red", "blue", "green"]
    # anchor lamp centre (-0.5, 0, 2): bed vertices lie 3.625..4.872 m from it, chair vertices 4.757..5.275 m;
    # neither 4.872 + 0.1 < 4.757 nor 5.275 + 0.1 < 3.625 holds, so that triple is dropped
    assert not any(
        q.question.split("closer to the ")[1].startswith("lamp") and set(q.choices) == {"bed", "chair"} for q in dist
    )


def test_build_writes_official_layout_and_round_trips(tmp_path):
    from PIL import Image

    Image.new("RGB", (100, 100), (200, 200, 200)).save(tmp_path / "a.png")
    K = [[100, 0, 50], [0, 100, 50], [0, 0, 1]]
    omni = {
        "images": [{"id": 1, "file_path": "a.png", "width": 100, "height": 100, "K": K}],
        "annotations": [
            {"image_id": 1, "category_name": "lamp", **_box(-0.5, 0, 2, 0.5)},
            {"image_id": 1, "category_name": "bed", **_box(0.8, 0, 6, 1.0)},
        ],
        "categories": [],
    }
    rep = build_cvbench(
        tmp_path / "out",
        coco=_coco(),
        coco_images=str(tmp_path),
        omni3d=omni,
        omni3d_images=str(tmp_path),
        seed=0,
        params={"min_area": 1},
    )
    out = tmp_path / "out"
    for f in (
        "test_2d.parquet",
        "test_3d.parquet",
        "test.jsonl",
        "test_2d.jsonl",
        "test_3d.jsonl",
        "build_report.json",
    ):
        assert (out / f).is_file()
    rows = load_cvbench(out)
    assert len(rows) == rep["n"] == sum(rep["per_task"].values())
    assert sum(sum(v.values()) for v in rep["letter_balance"].values()) == rep["n"]
    depth = [r for r in rows if r["task"] == "Depth"][0]
    assert depth["filename"] == "img/3D/depth/omni3d_0.png" and (out / depth["filename"]).is_file()
    im = depth.image  # red box drawn at the first-mentioned object's box edge
    first = depth["choices"][0]
    x1, y1, x2, y2 = depth["bbox"][0]
    img = im()
    assert any(img.getpixel((int(x1) + dx, int((y1 + y2) / 2))) == (255, 0, 0) for dx in (-1, 0, 1))
    assert img.getpixel((int((x1 + x2) / 2), int((y1 + y2) / 2))) == (200, 200, 200)  # outline only
    assert first in depth["question"].split("(highlighted by a red box)")[0]
    jrows = load_cvbench(out / "test.jsonl")
    assert [r.fields for r in jrows] == [r.fields for r in rows]
