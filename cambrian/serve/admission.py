"""Admission control: at most ``limit`` completion requests at once, counted from the moment their API key is
accepted (before their body is read) until their last event is delivered. One over the limit gets a 429 in the OpenAI
error shape at once: a client reading a slow body, queued or generating holds a place; an idle socket does not
(:mod:`.connections`)."""

from __future__ import annotations

import threading

from .errors import busy


class Admission:
    def __init__(self, limit: int):
        self.limit = limit
        self.admitted = 0
        self._lock = threading.Lock()

    def enter(self):
        """A release function for one admitted request (idempotent); a 429 ``APIError`` when full."""
        with self._lock:
            if self.admitted >= self.limit:
                raise busy(self.limit)
            self.admitted += 1
        done = threading.Event()

        def release() -> None:
            with self._lock:
                if not done.is_set():
                    done.set()
                    self.admitted -= 1

        return release
