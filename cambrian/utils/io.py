"""Small I/O helpers: atomic writes so a crash never leaves a half-written output file. Files get the
permissions a plain ``open(path, "w")`` would give (0666 minus the umask), not mkstemp's 0600."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InputError


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Mode of a newly created regular file: 0666 minus the umask (0644 under the usual 022)."""
    return 0o666 & ~current_umask()


def temp_file_beside(path: str | os.PathLike) -> Path:
    """A new empty temp file in ``path``'s directory (same filesystem, so ``os.replace`` onto ``path`` is atomic)
    with the permissions of a normally created file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, default_file_mode())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file_beside(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> Iterable[dict]:
    """Yield JSON objects from a JSONL file; a malformed line raises ValueError naming file and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None


def append_jsonl(f, obj: Any) -> None:
    """Append one record to an open text file and flush it (used for resumable predictions)."""
    f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    f.flush()


def repair_jsonl(path: str | os.PathLike, window: int = 1 << 20) -> int:
    """Cut what a killed writer left at the end of a JSONL file: an unterminated last line and any trailing lines
    that are not JSON. Reads only the tail (``window`` bytes, grown while it holds no valid line). Returns the
    number of bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    with open(path, "rb+") as f:
        while True:
            start = max(0, size - window)
            f.seek(start)
            tail = f.read()
            first = tail.find(b"\n") + 1 if start else 0  # the window's first line may be cut: never judged
            lines = tail[first:].split(b"\n")
            end = size - len(lines[-1])  # an unterminated last line goes
            for line in reversed(lines[:-1]):
                try:
                    json.loads(line)
                    break
                except (ValueError, RecursionError):
                    end -= len(line) + 1
            else:
                if start > 0:
                    window *= 2
                    continue
            break
        if end < size:
            f.truncate(end)
    return size - end


def atomic_save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG through a temp file + rename, then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file_beside(path)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
    return path
