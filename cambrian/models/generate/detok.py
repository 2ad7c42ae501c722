"""Incremental detokenisation of one answer (:class:`RowText`) and stop strings (:func:`cut_at_stop`)."""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stop: Sequence[str], start: int = 0) -> int | None:
    """Index of the first occurrence (at or after ``start``) of any stop string, or None."""
    best = None
    for s in stop:
        k = text.find(s, start)
        if k != -1 and (best is None or k < best):
            best = k
    return best


class RowText:
    """Incremental detokenisation of one answer: each new token decodes only a short window (the tokens since the
    last emitted text, plus the ones before as context), so a step costs the same at token 5 and token 500. Text that
    ends in an incomplete UTF-8 sequence (``\\ufffd``) waits for the next token. Stop strings are searched in the
    new text only. For streaming, :meth:`delta` releases text that can no longer change: not the leading
    whitespace, not trailing whitespace (the final answer is stripped) and not a tail that could be the start of a
    stop string; the deltas of a row add up to its final text."""

    def __init__(self, tokenizer, stop: Sequence[str] = (), track: bool = True):
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self._max_stop = max((len(s) for s in self.stop), default=0)
        self.track = track
        self.ids: list[int] = []
        self.text = ""
        self.sent = ""
        self.stopped = False
        self._prefix = 0  # token offsets of the decode window: [prefix, read) is already in self.text
        self._read = 0
        self._prefix_text = ""
        self._lead: int | None = None  # index of the first non-whitespace character of self.text

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def push(self, token: int) -> bool:
        """Append a token; True when a stop string is now complete (the text is cut before it)."""
        self.ids.append(token)
        if not self.track:
            return False
        new = self._decode(self.ids[self._prefix :])
        if len(new) <= len(self._prefix_text) or new.endswith("\ufffd"):
            return False
        before = len(self.text)
        self.text += new[len(self._prefix_text) :]
        self._prefix, self._read = self._read, len(self.ids)
        self._prefix_text = self._decode(self.ids[self._prefix : self._read])
        if self.stop:
            k = cut_at_stop(self.text, self.stop, max(0, before - self._max_stop + 1))
            if k is not None:
                self.text = self.text[:k]
                self.stopped = True
                return True
        return False

    def _stop_holdback(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:n]):
                    best = n
                    break
        return best

    def delta(self) -> str:
        """New streamable text since the last call."""
        text = self.text
        if self._lead is None:
            stripped = text.lstrip()
            if not stripped:
                return ""
            self._lead = len(text) - len(stripped)
        end = len(text) - (self._stop_holdback() if not self.stopped else 0)
        while end > self._lead and text[end - 1].isspace():
            end -= 1
        start = self._lead + len(self.sent)
        if end <= start:
            return ""
        d = text[start:end]
        self.sent += d
        return d

    def final(self) -> tuple[str, str]:
        """(final text, the rest of it not streamed yet). The final text comes from one decode of all ids: cut at
        the first stop string, stripped (what ``generate_text`` returns)."""
        full = self._decode(self.ids)
        k = cut_at_stop(full, self.stop)
        text = (full if k is None else full[:k]).strip()
        rest = text[len(self.sent) :] if text.startswith(self.sent) else ""
        return text, rest
