"""Lazy LLaVA JSON/JSONL reading: byte-offset index, streamed JSON arrays, image field forms, sampler lengths."""

from __future__ import annotations

import json

import pytest

from cambrian.data.llava import LlavaSource, estimate_length, record_images

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
