"""Lazy LLaVA JSON/JSONL reading: byte-offset index, streamed JSON arrays, image field forms, sampler lengths; bad
lines counted alike by `cambrian data validate` and training (fuzzed records too); image paths confined to the image
root."""

from __future__ import annotations

import json
import random

import pytest
from helpers import one_error_line, toy_train_config
from PIL import Image
from toy_vlm import ToyVLM

from cambrian.cli.main import main
from cambrian.data.llava import LlavaSource, estimate_length, record_images
from cambrian.data.synthetic import make_synthetic_data
from cambrian.train.trainer import Trainer

RECS = [
    {
        "id": 0,
        "image": "a.jpg",
        "conversations": [
            {"from": "human", "value": '<image>\nWhat {is} "this"?'},
            {"from": "gpt", "value": "a [cat] \\ }"},
        ],
    },
    {"id": 1, "conversations": [{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "hello"}]},
    {
        "id": 2,
        "image": ["x.png", "y.png"],
        "conversations": [{"from": "human", "value": "<image><image> both"}, {"from": "gpt", "value": "ok ✓"}],
    },
    {"id": 3, "image": "None", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
]


def test_jsonl_index_and_random_access(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECS) + "\n\n{broken\n")
    src = LlavaSource(p, tmp_path / "imgs", image_tokens=10)
    assert src.format == "jsonl" and len(src) == 4 and src.bad_lines == 1
    assert src[2]["id"] == 2 and src[0]["id"] == 0 and src[-1]["id"] == 3
    assert [str(x) for x in src.image_paths(src[2])] == [
        str(tmp_path / "imgs" / "x.png"),
        str(tmp_path / "imgs" / "y.png"),
    ]
    # official lengths: words + image_tokens per image; negative for text-only
    assert src.lengths.tolist() == [4 + 4 + 10, -3, 2 + 2 + 20, -2]
    assert src.offsets.dtype.itemsize == 8  # 8 bytes per record in memory, not the record


def test_json_array_is_stream_indexed_with_tricky_strings(tmp_path, monkeypatch):
    import cambrian.data.llava as llava

    monkeypatch.setattr(llava, "_CHUNK", 7)  # force escapes/strings across chunk boundaries
    p = tmp_path / "d.json"
    p.write_text(json.dumps(RECS, indent=1, ensure_ascii=False))
    src = LlavaSource(p)
    assert src.format == "json" and len(src) == 4
    assert [src[i] for i in range(4)] == RECS
    p.write_text(json.dumps(RECS)[:-5])
    with pytest.raises(ValueError, match="truncated"):
        LlavaSource(p)


def test_index_cache_roundtrip(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in RECS))
    a = LlavaSource(p, index_cache=tmp_path / "idx")
    assert len(list((tmp_path / "idx").glob("*.npz"))) == 1
    b = LlavaSource(p, index_cache=tmp_path / "idx")
    assert (a.offsets == b.offsets).all() and (a.lengths == b.lengths).all()


def test_record_images_forms():
    assert record_images({"image": "a"}) == ["a"]
    assert record_images({"image": ["a", "b"]}) == ["a", "b"]
    for none in ("", "None", "none", "nan"):
        assert record_images({"image": none}) == []
    assert record_images({}) == []
    assert estimate_length({"conversations": []}, 5) == -1


# ---- bad lines: training counts each one, with the reader `cambrian data validate` uses -----------------------


def _half_garbage(tmp_path, n=8):

    data = make_synthetic_data(tmp_path / "d", n=n)
    good = data.read_text().splitlines()
    lines = []
    for i, g in enumerate(good):
        lines += [g, '{"id": "x", "conversations": [' if i % 2 else "[1, 2]"]
    data.write_text("\n".join(lines) + "\n")
    return data


def test_validate_and_train_share_the_reader_and_count_bad_lines(tmp_path, capsys):
    import yaml

    from cambrian.data.llava import LlavaSource

    data = _half_garbage(tmp_path)
    src = LlavaSource(data)
    assert len(src) == 8 and src.bad_by_reason == {"bad_record": 4, "bad_json": 4} and src.total == 16
    assert [ln for ln, _, _ in src.bad_examples] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [src.line_number(i) for i in range(3)] == [1, 3, 5]
    # validate: fails, names the reasons with line numbers
    assert main(["data", "validate", str(data), "--images", str(data.parent / "images")]) == 1
    out = capsys.readouterr().out
    assert "16 samples" in out and "8 bad" in out and "bad_json" in out and "line 4 " in out and "line 2 " in out
    # train: refuses before the first step, exit 2 (it trained with exit 0 before)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(toy_train_config(tmp_path, data).to_dict()))
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "8 of 16 data lines" in err and "bad_json=4" in err and "data.jsonl:2" in err, err
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_train_counts_bad_lines_by_reason_within_the_limit(tmp_path):
    from toy_vlm import ToyVLM

    from cambrian.train.trainer import DataQualityError, Trainer

    data = make_synthetic_data(tmp_path / "d", n=8)
    data.write_text(data.read_text() + "not json\n\n")  # blank lines are no records and no bad lines
    s = Trainer(toy_train_config(tmp_path, data, max_bad_fraction=0.2), model=ToyVLM()).train()
    assert s["bad_counts"] == {"bad_json": 1}
    with pytest.raises(DataQualityError, match=r"1 of 9 data lines .*bad_json=1"):
        Trainer(
            toy_train_config(tmp_path, data, max_bad_fraction=0.05, output_dir=str(tmp_path / "o2")), model=ToyVLM()
        )


def test_empty_data_file_is_one_clear_error(tmp_path, capsys):
    import yaml

    data = tmp_path / "data.jsonl"
    data.write_text("\n  \n")
    assert main(["data", "validate", str(data)]) == 2
    assert one_error_line(capsys) == f"error: {data}: no records"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(toy_train_config(tmp_path, data).to_dict()))
    assert main(["train", str(recipe)]) == 2
    assert one_error_line(capsys) == f"error: {data}: no records"


def test_json_array_bad_elements_have_line_numbers(tmp_path):
    from cambrian.data.llava import LlavaSource

    rec = {"id": 1, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    p = tmp_path / "d.json"
    p.write_text("[\n" + json.dumps(rec) + ',\n{"id": 2, "x": tru},\n' + json.dumps(rec) + "\n]\n")
    src = LlavaSource(p)
    assert len(src) == 2 and src.bad_by_reason == {"bad_json": 1}
    assert src.bad_examples[0][0] == 3 and [src.line_number(i) for i in range(2)] == [2, 4]


FUZZ_RECORDS = 2400


def _fuzz_record_lines(rng, images: list[str], n: int) -> list[bytes]:
    import copy

    """``n`` non-blank JSONL lines: valid records, records with wrong types / roles / tags / paths, JSON that is not
    an object, truncated or byte-flipped JSON, invalid UTF-8, deep nesting."""
    weird = [
        None,
        True,
        0,
        -1,
        1.5,
        float("nan"),
        "",
        "None",
        "nan",
        [],
        {},
        [None],
        [1, [2]],
        {"a": 1},
        "x" * 5000,
        "\u202e\u0000\ud7ff",
        "<image>",
        "<image><image>",
        "../../etc/passwd",
        "/etc/passwd",
        "a\x00b.png",
        "images/../../x.png",
        " ",
        "\n\t",
        10**30,
    ]
    roles = ["human", "gpt", "user", "assistant", "system", "HUMAN", "bot", "", None, 3, ["human"]]

    def pick(seq):  # a fresh copy: shared weird containers would make records refer to themselves
        return copy.deepcopy(rng.choice(seq))

    def valid():
        k = rng.randint(0, 2)
        img = rng.sample(images + ["corrupt.png", "missing.png"] if rng.random() < 0.2 else images, k) if k else None
        q = "<image>\n" * k + rng.choice(["What colour?", "Q", "é漢字 🙂", "describe " * 50])
        rec = {
            "id": rng.randint(0, 10**6),
            "conversations": [
                {"from": "human", "value": q},
                {"from": "gpt", "value": rng.choice(["red", "A", "x" * 400])},
            ],
        }
        if img is not None:
            rec["image"] = img[0] if k == 1 and rng.random() < 0.5 else img
        return rec

    def mutate(rec):
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(10)
            conv = rec.get("conversations")
            if op == 0:
                rec.pop(rng.choice(["conversations", "image", "id"]), None)
            elif op == 1:
                rec["conversations"] = pick(weird)
            elif op == 2:
                rec["image"] = pick(weird + images + [[pick(weird)], "missing.png", "corrupt.png", "adir"])
            elif op == 3 and isinstance(conv, list) and conv:
                t = rng.randrange(len(conv))
                conv[t] = pick(weird) if rng.random() < 0.3 else dict(conv[t]) if isinstance(conv[t], dict) else {}
                if isinstance(conv[t], dict):
                    conv[t][rng.choice(["from", "value", "extra"])] = pick(weird + roles)
            elif op == 4 and isinstance(conv, list):
                rng.shuffle(conv)
                conv.extend(rng.choice([[], [{"from": "human", "value": "<image> again"}], conv[:1]]))
            elif op == 5 and isinstance(conv, list) and conv and isinstance(conv[0], dict):
                conv[0]["value"] = str(conv[0].get("value", "")) + "<image>" * rng.randint(1, 3)
            elif op == 6 and isinstance(conv, list) and conv and isinstance(conv[-1], dict):
                conv[-1]["value"] = "<image>"
            elif op == 7:
                rec["conversations"] = [{"from": "system", "value": "s"}] + (conv if isinstance(conv, list) else [])
            elif op == 8:
                rec[rng.choice(["images", "image", "conversations"])] = pick(weird)
            else:
                rec["id"] = pick(weird)
        return rec

    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.15:
            line = json.dumps(valid(), allow_nan=True).encode()
        elif kind < 0.65:
            line = json.dumps(mutate(valid()), allow_nan=True).encode()
        elif kind < 0.72:
            line = json.dumps(rng.choice([[1, 2], "text", 42, None, True, [{"conversations": []}]])).encode()
        elif kind < 0.82:
            raw = json.dumps(valid()).encode()
            line = raw[: rng.randrange(1, len(raw))]
        elif kind < 0.90:
            raw = bytearray(json.dumps(valid()).encode())
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            line = bytes(raw)
        elif kind < 0.95:
            line = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60)))
        else:
            d = rng.randint(10, 3000)
            line = ("[" * d + "]" * d if rng.random() < 0.5 else '{"a":' * d + "1" + "}" * d).encode()
        line = line.replace(b"\n", b" ")
        out.append(line if line.strip() else b"x")
    return out


def test_fuzz_llava_records_validate_dataset_and_train_counts_add_up(tmp_path):
    """Every generated line is counted exactly once (good + bad by reason = total) by `cambrian data validate`'s
    reader, by the training dataset + collator, and no input raises."""
    import time
    from collections import Counter

    from toy_vlm import ToyVLM

    from cambrian.data.collator import Collator
    from cambrian.data.dataset import BAD_REASONS, ImagePipeline, SupervisedDataset
    from cambrian.data.llava import LlavaSource
    from cambrian.data.validate import validate

    t0 = time.perf_counter()
    rng = random.Random(1234)
    root = tmp_path / "images"
    root.mkdir()
    names = []
    for i, size in enumerate([(8, 8), (16, 4), (1, 1)]):
        Image.new("RGB", size, (i * 80, 10, 10)).save(root / f"ok{i}.png")
        names.append(f"ok{i}.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "adir").mkdir()
    lines = _fuzz_record_lines(rng, names, FUZZ_RECORDS)
    data = tmp_path / "fuzz.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")

    src = LlavaSource(data, root)
    assert src.total == FUZZ_RECORDS and set(src.bad_by_reason) <= set(BAD_REASONS)
    assert len(src) + src.bad_lines == FUZZ_RECORDS
    rep = validate(src, None, open_imgs=True, examples=1)
    assert rep["samples"] == FUZZ_RECORDS and rep["bad"] == sum(rep["by_reason"].values())

    model = ToyVLM()
    ds = SupervisedDataset(
        [src], model.tokenize_conversation, model.visual_token_count, ImagePipeline.from_model(model), max_length=256
    )
    items = [ds[i] for i in range(len(ds))]
    good = sum("bad" not in x for x in items)
    by_reason = Counter(x["bad"] for x in items if "bad" in x) + Counter(src.bad_by_reason)
    assert good + sum(by_reason.values()) == FUZZ_RECORDS
    # validate with the dataset: the same checks, the same counts
    rep2 = validate(src, ds, examples=1)
    assert rep2["samples"] == FUZZ_RECORDS and rep2["by_reason"] == dict(by_reason)
    # the collator (what the trainer counts): every sample once, bad ones by reason
    col = Collator(0)
    seen, bad = 0, Counter()
    for k in range(0, len(items), 7):
        b = col(items[k : k + 7])
        seen += b["num_samples"]
        bad.update(b["bad_counts"])
        assert b["empty"] or b["input_ids"].shape[0] == len(b["indices"])
    assert seen == len(ds) and bad + Counter(src.bad_by_reason) == by_reason
    # the mix is broad: most reasons occur, and some records are good
    assert good > 50 and len(by_reason) >= 9, by_reason
    assert time.perf_counter() - t0 < 20


# ---- image paths stay under the image root ---------------------------------------------------------------


def _png(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return path


def _records_file(tmp_path, images):
    path = tmp_path / "data" / "d.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for k, im in enumerate(images):
            f.write(
                json.dumps(
                    {
                        "id": f"r{k}",
                        "image": im,
                        "conversations": [
                            {"from": "human", "value": "<image>\nColour?"},
                            {"from": "gpt", "value": "red"},
                        ],
                    }
                )
                + "\n"
            )
    return path


@pytest.fixture
def image_tree(tmp_path):
    root = tmp_path / "root"
    _png(root / "in.png")
    _png(root / "sub" / "in2.png")
    outside = _png(tmp_path / "secret" / "out.png")
    elsewhere = tmp_path / "store"
    _png(elsewhere / "linked.png")
    (root / "link").symlink_to(elsewhere, target_is_directory=True)  # the root's owner links a shared store
    return root, outside


def test_llava_paths_confined_to_image_root(image_tree):
    from cambrian.data.llava import ImageOutsideRoot, LlavaSource

    root, outside = image_tree
    ok = ["in.png", "sub/in2.png", "sub/../in.png", str(root / "in.png"), "link/linked.png"]
    bad = [
        "../secret/out.png",
        "../../etc/passwd",
        str(outside),
        "/etc/passwd",
        "sub/../../secret/out.png",
        "link/../../secret/out.png",
    ]
    path = _records_file(root.parent, ok + bad)
    src = LlavaSource(path, root)
    for k in range(len(ok)):
        (p,) = src.image_paths(src[k])
        assert p.is_file(), p
    for k in range(len(ok), len(ok) + len(bad)):
        with pytest.raises(ImageOutsideRoot, match="outside the image root"):
            src.image_paths(src[k])
    # opted in: everything resolves as written
    loose = LlavaSource(path, root, allow_outside_root=True)
    assert loose.image_paths(loose[len(ok) + 2]) == [outside]
    # no image root at all (the demo's absolute paths): nothing to confine to
    assert LlavaSource(_records_file(root.parent, [str(outside)])).image_paths({"image": str(outside)}) == [outside]


def test_outside_root_is_a_counted_bad_sample(image_tree):
    from cambrian.data.dataset import ImagePipeline, SupervisedDataset
    from cambrian.data.llava import LlavaSource

    root, outside = image_tree
    m = ToyVLM()
    path = _records_file(root.parent, ["in.png", str(outside), "../secret/out.png"])
    ds = SupervisedDataset(
        [LlavaSource(path, root)],
        m.tokenize_conversation,
        m.visual_token_count,
        ImagePipeline.from_model(m),
        max_length=64,
    )
    items = [ds[i] for i in range(3)]
    assert "bad" not in items[0]
    assert [x["bad"] for x in items[1:]] == ["image_outside_root"] * 2
    assert "record 1 (id='r1')" in items[1]["detail"] and "record 2 (id='r2')" in items[2]["detail"]


def test_train_counts_outside_root_and_honours_opt_in(image_tree, tmp_path):
    root, outside = image_tree
    path = _records_file(root.parent, ["in.png"] * 7 + [str(outside)])
    entry = {"path": str(path), "images": str(root)}
    kw = dict(save_steps=0, max_bad_fraction=0.5, bad_check_after=1000, micro_batch_size=8)
    for opt_in, out, want in ((False, "a", {"image_outside_root": 1}), (True, "b", {})):
        cfg = toy_train_config(tmp_path, path, output_dir=str(tmp_path / out), **kw)
        cfg.data = [{**entry, "allow_outside_root": True} if opt_in else entry]
        assert Trainer(cfg, model=ToyVLM()).train()["bad_counts"] == want


def test_validate_cli_reports_outside_root(image_tree, capsys):
    from cambrian.cli.main import main

    root, outside = image_tree
    path = _records_file(root.parent, ["in.png", str(outside)])
    assert main(["data", "validate", str(path), "--images", str(root)]) == 1
    out = capsys.readouterr().out
    assert "image_outside_root" in out and "id=r1" in out
    assert main(["data", "validate", str(path), "--images", str(root), "--allow-outside-root"]) == 0
