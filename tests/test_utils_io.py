"""File helpers: atomic writes keep the usual permissions (umask); a torn JSONL tail is cut, nothing before it."""

from __future__ import annotations

import os

import pytest

from cambrian.utils.io import atomic_write_json, repair_jsonl


def test_atomic_writes_respect_umask(tmp_path):
    import stat

    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "before, after",
    [
        (b'{"idx": 1, "prediction": "a"}\n{"idx": 2, "pre', b'{"idx": 1, "prediction": "a"}\n'),  # torn last line
        (b'{"a": 1}\n{"b": 2}\n', b'{"a": 1}\n{"b": 2}\n'),  # intact: untouched
        (b'{"a": 1}\n{"b"\n\n', b'{"a": 1}\n'),  # trailing lines that are not JSON
        (b"not json\n", b""),
        (b"", b""),
    ],
)
def test_repair_jsonl_cuts_only_a_torn_tail(tmp_path, before, after):
    p = tmp_path / "p.jsonl"
    p.write_bytes(before)
    assert repair_jsonl(p) == len(before) - len(after) and p.read_bytes() == after


def test_repair_jsonl_reads_only_the_tail_and_keeps_bad_lines_before_a_good_one(tmp_path):
    p = tmp_path / "p.jsonl"
    body = b"garbage in the middle\n" + b'{"a": 1}\n' * 5000
    p.write_bytes(body + b'{"torn')
    assert repair_jsonl(p, window=64) == 6 and p.read_bytes() == body  # a long file, a 64-byte window
    p.write_bytes(b'{"a": 1}\n' + b"x" * 200 + b"\n" + b"y" * 30)
    assert repair_jsonl(p, window=16) == 231 and p.read_bytes() == b'{"a": 1}\n'  # the window grows
    assert repair_jsonl(tmp_path / "missing.jsonl") == 0
