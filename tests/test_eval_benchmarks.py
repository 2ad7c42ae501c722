"""Every benchmark scored on a small fixture in its public schema (written by the test) against hand-computed
numbers — with the official scorer (the default) and, where a benchmark has one, the lenient scorer
(``LENIENT``) — plus golden prompt snapshots (tests/fixtures/prompts/<bench>.json; set CAMBRIAN_UPDATE_PROMPTS=1
to rewrite them after an intended prompt change; each must equal the official evaluation script's prompt)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cambrian.eval.api import get_benchmark

PROMPTS = Path(__file__).parent / "fixtures" / "prompts"


def png(seed: int, size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, ((seed * 40) % 256, (seed * 90) % 256, (seed * 15) % 256)).save(buf, format="PNG")
    return buf.getvalue()


def img(seed: int) -> dict:
    return {"bytes": png(seed), "path": f"{seed}.png"}


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# Each builder: (tmp dir) -> (data path, predictions in loaded-sample order, expected metrics subset).
def mme(d):
    q = "Please answer yes or no."
    rows = [  # pairs deliberately not adjacent: acc+ must pair by image, not by line parity
        dict(
            question_id="existence/1.jpg",
            question=f"Is there a dog in this image? {q}",
            answer="Yes",
            category="existence",
            image=img(1),
        ),
        dict(
            question_id="existence/2.jpg",
            question=f"Is there a car in this image? {q}",
            answer="Yes",
            category="existence",
            image=img(2),
        ),
        dict(
            question_id="existence/1.jpg",
            question=f"Is there a cat in this image? {q}",
            answer="No",
            category="existence",
            image=img(1),
        ),
        dict(
            question_id="count/3.jpg",
            question=f"Are there two cups in the image? {q}",
            answer="Yes",
            category="count",
            image=img(3),
        ),
        dict(
            question_id="existence/2.jpg",
            question=f"Is there a boat in this image? {q}",
            answer="No",
            category="existence",
            image=img(2),
        ),
        dict(
            question_id="count/3.jpg",
            question=f"Are there three cups in the image? {q}",
            answer="No",
            category="count",
            image=img(3),
        ),
        dict(
            question_id="code_reasoning/4.png",
            question=f"Does the code print 5? {q}",
            answer="Yes",
            category="code_reasoning",
            image=img(4),
        ),
        dict(
            question_id="code_reasoning/4.png",
            question=f"Does the code print 6? {q}",
            answer="No",
            category="code_reasoning",
            image=img(4),
        ),
    ]
    preds = ["Yes", "yes, there is", "No.", "Yes", "Yes", "no", "maybe", "No"]
    # official (exact yes/no after lower + rstrip "."): "yes, there is" is wrong. existence: 2/4, images {1: ok,
    # 2: not} -> 100*(0.5+0.5)=100; count: 200; code: 100*(0.5+0)=50
    return (
        write_parquet(d / "mme" / "test-00000.parquet", rows),
        preds,
        {"perception": 300.0, "cognition": 50.0, "accuracy": 5 / 8},
    )


def mmvp(d):
    root = d / "mmvp"
    (root / "MMVP Images").mkdir(parents=True)
    rows = [
        ("1", "Are the butterfly's wings closer to being open or closed?", "(a) Open (b) Closed", "(a)"),
        ("2", "Are the butterfly's wings closer to being open or closed?", "(a) Open (b) Closed", "(b)"),
        ("3", "Is the dog facing left or right from the camera's perspective?", "(a) Left (b) Right", "(b)"),
        ("4", "Is the dog facing left or right from the camera's perspective?", "(a) Left (b) Right", "(a)"),
        ("5", "Is the door open or closed?", "(a) Open. (b) Closed.", "(b)"),
        ("6", "Is the door open or closed?", "(a) Open. (b) Closed.", "(a)"),
    ]
    with open(root / "Questions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Index", "Question", "Options", "Correct Answer"])
        w.writerows(rows)
    for k in range(1, 7):
        Image.new("RGB", (8, 8), (k * 40, 0, 0)).save(root / "MMVP Images" / f"{k}.jpg")
    # pair (1,2) both right, pair (3,4) not; "Closed." vs the official option text "closed." (its period kept, the
    # answer's stripped) is wrong, so pair (5,6) fails officially
    preds = ["A", "Closed", "The answer is B.", "B", "Closed.", "A"]
    return root, preds, {"accuracy": 1 / 3, "question_accuracy": 4 / 6, "pairs": 3}


def gqa(d):
    root = d / "gqa"
    write_parquet(
        root / "testdev_balanced_instructions" / "testdev-00000.parquet",
        [
            dict(
                id="201307251",
                imageId="n161313",
                question="Is it overcast?",
                answer="yes",
                fullAnswer="Yes, it is overcast.",
            ),
            dict(
                id="201640614",
                imageId="n235859",
                question="Which side is the pole on?",
                answer="left",
                fullAnswer="The pole is on the left.",
            ),
            dict(
                id="20523210",
                imageId="n161313",
                question="What is the piece of furniture?",
                answer="table",
                fullAnswer="It is a table.",
            ),
            dict(
                id="20523211", imageId="n235859", question="Is it sunny?", answer="yes", fullAnswer="Yes, it is sunny."
            ),
        ],
    )
    write_parquet(
        root / "testdev_balanced_images" / "testdev-00000.parquet",
        [dict(id="n161313", image=img(5)), dict(id="n235859", image=img(6))],
    )
    # official: lower + rstrip(".") only, so "Yes ." -> "yes " is wrong
    return root, ["Yes.", "Left side", "table", "Yes ."], {"accuracy": 2 / 4}


def chartqa(d):
    rows = [
        dict(type="human_test", question="What percentage voted yes?", answer="45", image=img(1)),
        dict(type="augmented_test", question="What is the value in 2019?", answer="12.5", image=img(2)),
        dict(type="human_test", question="Is the red bar the tallest?", answer="Yes", image=img(3)),
        dict(type="augmented_test", question="What is the total?", answer="100", image=img(4)),
        dict(type="augmented_test", question="What is the population?", answer="1234", image=img(5)),
        dict(type="human_test", question="Which country is largest?", answer="Brazil", image=img(6)),
    ]
    # official: "45%" vs 45 wrong (not a float), 13 vs 12.5: |0.5| <= 0.625 right, yes right, 106 vs 100: 6 > 5,
    # "1,234" vs 1234 wrong (not a float), "brazil." vs "brazil" wrong (no stripping)
    return (
        write_parquet(d / "chartqa" / "test.parquet", rows),
        ["45%", "13", "yes", "106", "1,234", "Brazil."],
        {"accuracy": 2 / 6, "per_category": {"augmented_test": 1 / 3, "human_test": 1 / 3}},
    )


def docvqa(d):
    rows = [
        dict(
            questionId=49153,
            question="What is the year of the report?",
            question_types=["handwritten"],
            docId=1,
            answers=["1995"],
            image=img(1),
        ),
        dict(
            questionId=49154,
            question="Which company is named?",
            question_types=["layout"],
            docId=2,
            answers=["ITC Limited", "ITC"],
            image=img(2),
        ),
        dict(
            questionId=49155,
            question="Who signed the letter?",
            question_types=["form"],
            docId=3,
            answers=["John Smith"],
            image=img(3),
        ),
        dict(
            questionId=49156,
            question="What is the code?",
            question_types=["other"],
            docId=4,
            answers=["abef"],
            image=img(4),
        ),
        dict(
            questionId=49157,
            question="Which company?",
            question_types=["other"],
            docId=5,
            answers=[" ACME  Corp"],
            image=img(5),
        ),
    ]
    # 1; "itc limited." vs "itc limited": 1 - 1/12; "jane doe" vs "john smith": 8 edits / 10 -> 0;
    # "abcd" vs "abef": NL exactly 2/4 = 0.5 -> kept as 0.5; "acme corp." vs " ACME  Corp": 1 edit on the
    # normalised strings, divided by the raw length 11 -> 1 - 1/11
    return (
        write_parquet(d / "docvqa" / "validation.parquet", rows),
        ["1995", "ITC Limited.", "Jane Doe", "abcd", "acme corp."],
        {"anls": (1 + 11 / 12 + 0 + 0.5 + 10 / 11) / 5},
    )


def textvqa(d):
    rows = [
        dict(
            question_id=34602,
            question="what is the brand of this camera?",
            ocr_tokens=["nokia", "lumia"],
            answers=["nokia"] * 10,
            image=img(1),
        ),
        dict(
            question_id=34603,
            question="what drink is advertised?",
            ocr_tokens=["coca-cola"],
            answers=["coca cola"] * 2 + ["coke"] * 8,
            image=img(2),
        ),
        dict(
            question_id=34604,
            question="how many people are there?",
            ocr_tokens=[],
            answers=["3", "three"] + ["4"] * 8,
            image=img(3),
        ),
        dict(
            question_id=34605,
            question="what is written?",
            ocr_tokens=["hello,world"],
            answers=["hello world"] * 10,
            image=img(4),
        ),
        dict(question_id=34606, question="what is the sign?", ocr_tokens=[], answers=["what's"] * 10, image=img(5)),
        dict(
            question_id=34607, question="what does it say?", ocr_tokens=[], answers=["wouldn't've"] * 10, image=img(6)
        ),
    ]
    # nokia: 1; "Coca-Cola" -> "coca cola" matches 2 of 10 -> (2*(1/3) + 8*(2/3))/10 = 0.6; "three" -> "3" likewise
    # 0.6; official processor: "hello,world" -> "helloworld" (commas deleted) -> 0; "what's" -> "what 's" ("'s"
    # split off) while "whats" -> "what's" -> 0; "wouldnt've" -> "wouldn't've" (in the official table) -> 1
    return (
        write_parquet(d / "textvqa" / "validation.parquet", rows),
        ["Nokia", "Coca-Cola", "three", "hello,world", "whats", "wouldnt've"],
        {"accuracy": (1 + 0.6 + 0.6 + 0 + 0 + 1) / 6},
    )


def ocrbench(d):
    rows = [
        dict(
            dataset="IIIT5K",
            question="what is written in the image?",
            question_type="Regular Text Recognition",
            answer=["CENTRAL"],
            image=img(1),
        ),
        dict(
            dataset="HME100k",
            question="Please write out the expression of the formula in the image using LaTeX format.",
            question_type="Handwritten Mathematical Expression Recognition",
            answer=["x ^ { 2 }"],
            image=img(2),
        ),
        dict(
            dataset="docVQA",
            question="What is the total amount?",
            question_type="Doc-oriented VQA",
            answer=["$12.50", "12.50"],
            image=img(3),
        ),
        dict(
            dataset="FUNSD",
            question="What is the company name?",
            question_type="Key Information Extraction",
            answer=["ACME"],
            image=img(4),
        ),
    ]
    return (
        write_parquet(d / "ocrbench" / "test.parquet", rows),
        ["The text is central.", "x^{2}", "twelve dollars", "acme corp"],
        {"accuracy": 0.75, "score": 3},
    )


def ai2d(d):
    rows = [
        dict(question="Which label shows the sun?", options=["A", "B", "C", "D"], answer="1", image=img(1)),
        dict(
            question="What stage follows the larva?",
            options=["egg", "adult", "pupa", "nymph"],
            answer="2",
            image=img(2),
        ),
        dict(question="Which is a producer?", options=["grass", "hawk", "snake"], answer="0", image=img(3)),
    ]
    return write_parquet(d / "ai2d" / "test.parquet", rows), ["B", "The answer is (C).", "D"], {"accuracy": 2 / 3}


def scienceqa(d):
    rows = [
        dict(
            image=img(1),
            question="Which of these states is farthest north?",
            choices=["Texas", "Ohio"],
            answer=1,
            hint="The map shows the United States.",
            subject="social science",
        ),
        dict(
            image=img(2),
            question="Is the statement true?",
            choices=["true", "false"],
            answer=0,
            hint="",
            subject="natural science",
        ),
        dict(
            image=img(3),
            question="Which material is this?",
            choices=["wood", "glass", "rubber"],
            answer=2,
            hint=None,
            subject="natural science",
        ),
        dict(
            image=img(4),
            question="Which is a conductor?",
            choices=["wood", "copper"],
            answer=1,
            hint="",
            subject="natural science",
        ),
        dict(
            image=None,
            question="Which word comes first in alphabetical order?",
            choices=["cat", "dog"],
            answer=0,
            hint="",
            subject="language science",
        ),  # text-only: not part of SQA-I, not loaded
    ]
    # official: "(B)" is wrong (its head "(b)" is not "b" and "b" is not the choice text)
    return (
        write_parquet(d / "scienceqa" / "test.parquet", rows),
        ["B", "True", "A.", "(B)"],
        {"accuracy": 2 / 4, "n": 4, "per_category": {"natural science": 1 / 3, "social science": 1.0}},
    )


def mmmu(d):
    base = dict(
        image_2=None,
        image_3=None,
        image_4=None,
        image_5=None,
        image_6=None,
        image_7=None,
        explanation="",
        img_type="['Diagrams']",
        topic_difficulty="Easy",
    )
    rows = [
        dict(
            base,
            id="validation_Math_1",
            question="<image 1> How many edges does the graph have?",
            options="['12', '15', \"it's 20\"]",
            answer="B",
            question_type="multiple-choice",
            subfield="Graph Theory",
            image_1=img(1),
        ),
        dict(
            base,
            id="validation_Physics_2",
            question="What is the force in newtons? <image 1>",
            options="[]",
            answer="100",
            question_type="open",
            subfield="Mechanics",
            image_1=img(2),
        ),
        dict(
            base,
            id="validation_Biology_3",
            question="Which animal is shown in <image 1>?",
            options="[]",
            answer="['cat', 'feline']",
            question_type="open",
            subfield="Zoology",
            image_1=img(3),
        ),
        dict(
            base,
            id="validation_Art_4",
            question="Which style is this painting?",
            options="['Baroque', 'Cubism']",
            answer="A",
            question_type="multiple-choice",
            subfield="Art History",
            image_1=img(4),
        ),
        dict(
            base,
            id="validation_Economics_5",
            question="What is the rate in percent?",
            options="[]",
            answer="45",
            question_type="open",
            subfield="Macroeconomics",
            image_1=None,
        ),
    ]
    # 95.1 vs 100 is within 5 % of the ground truth (FIX: the official swapped tolerance, 5 % of 95.1, rejects it);
    # "feline" vs the answer string "['cat', 'feline']" is wrong officially; "45%" is not a float officially
    return (
        write_parquet(d / "mmmu" / "validation.parquet", rows),
        ["B", "The answer is 95.1", "Feline.", "C", "45%"],
        {"accuracy": 2 / 5},
    )


def mathvista(d):
    rows = [
        dict(
            pid="1",
            question="How many sides?",
            query="Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\nQuestion: How many sides does the shape have?\nChoices:\n(A) 3\n(B) 4\n(C) 5",
            question_type="multi_choice",
            answer_type="text",
            choices=["3", "4", "5"],
            answer="4",
            precision=None,
            unit=None,
            image="images/1.jpg",
            decoded_image=img(1),
        ),
        dict(
            pid="2",
            question="How many apples?",
            query="Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.\nQuestion: How many apples are there?",
            question_type="free_form",
            answer_type="integer",
            choices=None,
            answer="12",
            precision=None,
            unit=None,
            image="images/2.jpg",
            decoded_image=img(2),
        ),
        dict(
            pid="3",
            question="What is the slope?",
            query="Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.\nQuestion: What is the slope?",
            question_type="free_form",
            answer_type="float",
            choices=None,
            answer="1.5",
            precision=1.0,
            unit=None,
            image="images/3.jpg",
            decoded_image=img(3),
        ),
        dict(
            pid="4",
            question="Are the lines parallel?",
            query="Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\nQuestion: How are the two lines related?\nChoices:\n(A) parallel\n(B) perpendicular",
            question_type="multi_choice",
            answer_type="text",
            choices=["parallel", "perpendicular"],
            answer="parallel",
            precision=None,
            unit=None,
            image="images/4.jpg",
            decoded_image=img(4),
        ),
        dict(
            pid="5",
            question="How many sides?",
            query="Question: How many sides?\nChoices:\n(A) 3\n(B) 4\n(C) 5",
            question_type="multi_choice",
            answer_type="text",
            choices=["3", "4", "5"],
            answer="4",
            precision=None,
            unit=None,
            image="images/5.jpg",
            decoded_image=img(5),
        ),
        dict(
            pid="6",
            question="What is the total?",
            query="Question: What is the total?",
            question_type="free_form",
            answer_type="integer",
            choices=None,
            answer="100",
            precision=None,
            unit=None,
            image="images/6.jpg",
            decoded_image=img(6),
        ),
    ]
    preds = [
        "The shape has four sides, so the answer is B.",
        "There are 12 apples",
        "Answer: 1.8",
        "They meet at a right angle. The answer is perpendicular",
        "B. Four sides",
        "95.2",
    ]
    # official: only "b. four sides" -> "b" (the letter split the official code meant to apply) and 95.2 within 5 %
    # of 100 (FIX: not of 95.2, which would reject it) are right
    return write_parquet(d / "mathvista" / "testmini.parquet", rows), preds, {"accuracy": 2 / 6}


def mmbench(d):
    im1, im2 = img(1), img(2)
    # the circular copy of question 2 stores the same picture as a differently encoded PNG file: the official
    # grouping (decoded image) puts both rows in one group, a hash of the file bytes would not
    buf = io.BytesIO()
    Image.open(io.BytesIO(im2["bytes"])).save(buf, format="PNG", compress_level=0)
    assert buf.getvalue() != im2["bytes"]
    im2b = {"bytes": buf.getvalue(), "path": "2b.png"}
    common = dict(category="object_localization", split="dev", comment="nan")
    rows = [
        dict(
            common,
            index=1,
            question="Where is the cat?",
            hint="nan",
            A="left",
            B="right",
            C="top",
            D="nan",
            answer="A",
            source="src1",
            image=im1,
        ),
        dict(
            common,
            index=1000001,
            question="Where is the cat?",
            hint="nan",
            A="right",
            B="left",
            C="top",
            D="nan",
            answer="B",
            source="src1",
            image=im1,
        ),
        dict(
            common,
            index=2,
            question="What color is the car?",
            hint="The car is parked.",
            A="blue",
            B="green",
            C="red",
            D="black",
            answer="C",
            source="src1",
            image=im2,
        ),
        dict(
            common,
            index=1000002,
            question="What color is the car?",
            hint="The car is parked.",
            A="green",
            B="red",
            C="black",
            D="blue",
            answer="D",
            source="src1",
            image=im2b,
        ),
    ]
    # official extraction: "( C )" -> " c " -> its first character " " is wrong
    return (
        write_parquet(d / "mmbench" / "dev.parquet", rows),
        ["A", "B", "( C )", "A"],
        {"accuracy": 0.5, "circular_accuracy": 0.5, "groups": 2},
    )


def seed(d):
    def row(qid, q, ans, images, dtype="image"):
        return dict(
            question_id=qid,
            question=q,
            choice_a="one",
            choice_b="two",
            choice_c="three",
            choice_d="four",
            answer=ans,
            question_type_id=5,
            data_type=dtype,
            data_id=f"{qid}.jpg",
            segment=None,
            image=images,
        )

    rows = [
        row("101", "How many dogs are there?", "A", [img(1)]),
        row("102", "How many cats are there?", "C", [img(2)]),
        row("103", "What happens next in the video?", "B", [img(3), img(4)], "video"),
        row("104", "How many birds are there?", "B", [img(5)]),
    ]
    return write_parquet(d / "seed" / "test.parquet", rows), ["A", "The answer is D", "b."], {"accuracy": 2 / 3, "n": 3}


def realworldqa(d):
    rows = [
        dict(
            question="In which direction is the car going?\nA. left\nB. right\nPlease answer directly with only the letter of the correct option and nothing else.",
            answer="B",
            image=img(1),
        ),
        dict(
            question="How many cars are in the image? Please answer directly with a single word or number.",
            answer="3",
            image=img(2),
        ),
        dict(
            question="Is the light green? Please answer directly with a single word or number.",
            answer="No",
            image=img(3),
        ),
        dict(
            question="Which way does the road turn?\nA. Left\nB. Right\nPlease answer directly with only the letter of the correct option and nothing else.",
            answer="A",
            image=img(4),
        ),
    ]
    # official: "A. Left" -> first word "a." (the "." is stripped from the whole answer only) is wrong
    return write_parquet(d / "realworldqa" / "test.parquet", rows), ["B.", "3 cars", "", "A. Left"], {"accuracy": 2 / 4}


def pope(d):
    rows = [
        dict(
            question_id="1", question="Is there a dog in the image?", answer="yes", category="adversarial", image=img(1)
        ),
        dict(
            question_id="2", question="Is there a cat in the image?", answer="no", category="adversarial", image=img(1)
        ),
        dict(question_id="3", question="Is there a car in the image?", answer="no", category="random", image=img(2)),
        dict(question_id="4", question="Is there a bus in the image?", answer="yes", category="popular", image=img(2)),
    ]
    return (
        write_parquet(d / "pope" / "test.parquet", rows),
        ["Yes, there is", "No.", "yes", ""],
        {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "yes_ratio": 0.5},
    )


def mmstar(d):
    rows = [
        dict(
            index=0,
            question="Which option describes the object?\nOptions: A: cup, B: bowl, C: plate, D: fork",
            answer="A",
            category="coarse perception",
            l2_category="image scene and topic",
            image=img(1),
        ),
        dict(
            index=1,
            question="How many people are there?\nOptions: A: 1, B: 2, C: 3, D: 4",
            answer="C",
            category="fine-grained perception",
            l2_category="object counting",
            image=img(2),
        ),
        dict(
            index=2,
            question="What is the man doing?\nOptions: A: running, B: sitting, C: eating, D: sleeping",
            answer="D",
            category="instance reasoning",
            l2_category="single-instance reasoning",
            image=img(3),
        ),
    ]
    return write_parquet(d / "mmstar" / "val.parquet", rows), ["A", "C.", "B"], {"accuracy": 2 / 3}


FIXTURES = {
    f.__name__: f
    for f in [
        mme,
        mmvp,
        gqa,
        chartqa,
        docvqa,
        textvqa,
        ocrbench,
        ai2d,
        scienceqa,
        mmmu,
        mathvista,
        mmbench,
        seed,
        realworldqa,
        pope,
        mmstar,
    ]
}


# The lenient scorer on the same fixtures: every metric named *_lenient.
LENIENT = {
    "chartqa": {"accuracy_lenient": 5 / 6, "per_category_lenient": {"augmented_test": 2 / 3, "human_test": 1.0}},
    "docvqa": {"anls_lenient": (1 + 11 / 12 + 0 + 0 + 0.9) / 5},  # NL 0.5 zeroed; 1 edit / normalised length 10
    "textvqa": {"accuracy_lenient": (1 + 0.6 + 0.6 + 1 + 1 + 0) / 6},
    "scienceqa": {"accuracy_lenient": 3 / 4, "n": 4},
    "realworldqa": {"accuracy_lenient": 3 / 4},
    "mmmu": {"accuracy_lenient": 4 / 5},
    "mmbench": {"accuracy_lenient": 0.75, "circular_accuracy_lenient": 0.5, "groups": 2},
    "mme": {"perception_lenient": 325.0, "cognition_lenient": 50.0, "accuracy_lenient": 6 / 8},
    "mathvista": {"accuracy_lenient": 4 / 6},
    "gqa": {"accuracy_lenient": 3 / 4},
    "mmvp": {"accuracy_lenient": 2 / 3, "question_accuracy_lenient": 5 / 6, "pairs": 3},
    "seed": {"accuracy_lenient": 2 / 3},
    "ai2d": {"accuracy_lenient": 2 / 3},
}


def _check(actual, expected, path="metrics"):
    if isinstance(expected, dict):
        for k, v in expected.items():
            assert k in actual, f"{path}.{k} missing"
            _check(actual[k], v, f"{path}.{k}")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=1e-9), path
    else:
        assert actual == expected, path


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_benchmark_scores_fixture(tmp_path, name):
    path, preds, expected = FIXTURES[name](tmp_path)
    bench = get_benchmark(name)
    samples = bench.load(str(path))
    assert len(samples) == len(preds)
    assert len({str(s.idx) for s in samples}) == len(samples), "idx must be unique"
    assert all(im().mode == "RGB" for s in samples for im in s.images)
    metrics = bench.score(samples, {s.idx: p for s, p in zip(samples, preds)})
    _check(metrics, expected)
    assert json.loads(json.dumps(metrics)) == metrics  # JSON-serialisable


@pytest.mark.parametrize("name", sorted(LENIENT))
def test_benchmark_scores_fixture_lenient(tmp_path, name):
    path, preds, official = FIXTURES[name](tmp_path)
    bench = get_benchmark(name, scorer="lenient")
    assert bench.scorer == "lenient" and bench.primary_metric.endswith("_lenient")
    samples = bench.load(str(path))
    metrics = bench.evaluate(samples, {s.idx: p for s, p in zip(samples, preds)})
    _check(metrics, LENIENT[name])
    assert metrics["scorer"] == "lenient"
    # no official metric name leaks out of a lenient score, so it can never fill a paper-table cell
    assert not (set(official) - {"n", "pairs", "groups"}) & set(metrics)
    assert bench.table_value(metrics) is not None and get_benchmark(name).table_value(metrics) is None


def test_benchmarks_without_a_lenient_variant_refuse_it():
    for name in ("pope", "mmstar", "ocrbench"):
        assert get_benchmark(name).scorers() == ("official",)
        with pytest.raises(ValueError, match="no 'lenient' scorer"):
            get_benchmark(name, scorer="lenient")
    with pytest.raises(ValueError, match="no 'strict' scorer"):
        get_benchmark("chartqa", scorer="strict")


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_golden_prompts(tmp_path, name):
    path, _, _ = FIXTURES[name](tmp_path)
    bench = get_benchmark(name)
    got = {
        "benchmark": name,
        "max_new_tokens": bench.max_new_tokens,
        "prompts": [s.prompt for s in bench.load(str(path))],
    }
    golden = PROMPTS / f"{name}.json"
    if os.environ.get("CAMBRIAN_UPDATE_PROMPTS") == "1":
        golden.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    assert golden.exists(), f"missing {golden}; run with CAMBRIAN_UPDATE_PROMPTS=1 once and review it"
    assert got == json.loads(golden.read_text()), f"prompt change for {name}: update {golden} deliberately"


def test_textvqa_ocr_switch(tmp_path):
    path, _, _ = textvqa(tmp_path)
    on = get_benchmark("textvqa").load(str(path))[0].prompt
    off = get_benchmark("textvqa", ocr_tokens=False).load(str(path))[0].prompt
    assert on == (
        "what is the brand of this camera?\nReference OCR tokens: nokia, lumia\n"
        "Answer the question using a single word or phrase."
    )
    assert off == "what is the brand of this camera?\nAnswer the question using a single word or phrase."
    with pytest.raises(ValueError, match="unknown option"):
        get_benchmark("textvqa", ocr=False)


def test_mme_missing_predictions_count_wrong(tmp_path):
    path, preds, _ = mme(tmp_path)
    bench = get_benchmark("mme")
    samples = bench.load(str(path))
    m = bench.score(samples, {})
    assert m["perception"] == 0.0 and m["missing"] == len(samples)


def test_jsonl_schema_with_relative_image_paths(tmp_path):
    root = tmp_path / "pope"
    (root / "imgs").mkdir(parents=True)
    Image.new("RGB", (4, 4), (1, 2, 3)).save(root / "imgs" / "a.png")
    (root / "test.jsonl").write_text(
        json.dumps(
            dict(question_id="1", question="Is there a dog?", answer="yes", category="random", image="imgs/a.png")
        )
        + "\n"
    )
    (s,) = get_benchmark("pope").load(str(root))
    assert s.load_images()[0].size == (4, 4)


def test_every_registered_benchmark_has_a_fixture():
    from cambrian.eval.api import list_benchmarks

    # benchmarks whose fixture tests live next to their own code: CV-Bench in tests/test_cvbench.py,
    # easy-VQA (the demo's benchmark) in tests/test_demo.py::test_easyvqa_load_prompt_and_score, synth-attribute
    # in tests/test_grounding.py::test_synth_attribute_build_balances_answers_and_scores, synth-text and
    # synth-chart in tests/test_synth_sets.py, V*Bench (a fixture in the released layout) and synth-vstar in
    # tests/test_search_bench.py
    tested_elsewhere = {
        "cvbench", "cvbench-synth", "easyvqa", "synth-attribute", "synth-text", "synth-chart", "vstar", "synth-vstar"
    }  # fmt: skip
    assert set(list_benchmarks()) - tested_elsewhere == set(FIXTURES)
