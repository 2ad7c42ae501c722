"""The worked-answer hop probe (cambrian.demo.hops) on hand-made items and predictions."""

from cambrian.demo.hops import hop_scores, hops_table

REL = (
    "Considering the relative positions of the red cube and the blue sphere in the image provided, "
    "where is the red cube located with respect to the blue sphere?"
)
SCENE = {
    "camera": {"width": 80, "height": 80},
    "objects": [
        {"category": "red cube", "color": "red", "shape": "cube", "bbox": [0, 60, 10, 10]},  # column 0, row 6
        {"category": "blue sphere", "color": "blue", "shape": "sphere", "bbox": [50, 10, 20, 20]},  # 6, 2
    ],
}


def _row(idx, task, question, choices, answer, target=None):
    return {
        "idx": idx,
        "task": task,
        "question": question,
        "choices": choices,
        "answer": answer,
        "source_filename": "s.png",
        "target_class": target,
    }


def test_hop_scores_hand_counted():
    rows = [
        _row(0, "Relation", REL, ["left", "right"], "(A)"),  # truth: x zero vs six -> left
        _row(1, "Relation", REL, ["left", "right"], "(A)"),
        _row(2, "Depth", "Which object is closer ...", ["red cube", "blue sphere"], "(A)"),  # rows 6 vs 2
        _row(3, "Count", "How many cubes are in the image?", ["2", "1", "0"], "(B)", "cube"),
    ]
    preds = {
        # right values, right letter
        0: "x: red cube zero, blue sphere six. The answer is (A)",
        # one value off by one, the other off by four and out of order; the letter follows the model's own values
        1: "x: red cube one, blue sphere zero. The answer is (B)",
        # right order (seventh > third means red is lower = closer) but the letter contradicts it
        2: "y: red cube seventh, blue sphere third. The answer is (B)",
        # stated count wrong (2, truth 1), letter names the stated count
        3: "cubes: red zero seventh, blue six third. So 2. The answer is (A)",
    }
    got = hop_scores(rows, preds, {"s.png": SCENE}, 8)
    assert got["Relation"] == {
        "n": 2,
        "correct": 1,
        "worked": 2,
        "lookups": 4,
        "lookup_exact": 2,  # item 0: both
        "lookup_within_1": 3,  # item 0: both; item 1: "one" vs zero
        "ordered": 2,
        "order_right": 1,
        "decided": 2,
        "decide_follows": 2,  # item 1: one > zero -> right = (B), as answered
    }
    assert got["Depth"] == {
        "n": 1,
        "correct": 0,
        "worked": 1,
        "lookups": 2,
        "lookup_exact": 2,
        "lookup_within_1": 2,
        "ordered": 1,
        "order_right": 1,
        "decided": 1,
        "decide_follows": 0,  # its values say red (lower) is closer = (A), it answered (B)
    }
    assert got["Count"] == {
        "n": 1,
        "correct": 0,
        "worked": 1,
        "count_stated": 1,
        "count_true": 0,
        "count_letter_follows": 1,
    }
    table = hops_table({"own": got})
    assert "| Relation | lookup within 1 | 75.0 (4) |" in table
    assert "| Depth | letter follows own values | 0.0 (1) |" in table
    assert "| Count | letter names the stated count | 100.0 (1) |" in table


def test_hops_of_a_folder_that_is_not_a_demo_run_is_one_error_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "cambrian.cli.main", "demo", "--hops", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and "not a demo output folder" in proc.stderr
