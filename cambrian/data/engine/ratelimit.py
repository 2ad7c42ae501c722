"""A minimum interval between calls (thread-safe), for LLM requests per minute and polite page fetching."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """``wait()`` blocks until at least ``interval`` seconds have passed since the previous call returned.
    ``RateLimiter.per_minute(60)`` = one call a second; ``interval <= 0``: no limit."""

    def __init__(
        self, interval: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ):
        self.interval = max(0.0, float(interval))
        self.clock = clock
        self.sleep = sleep
        self._next = None
        self._lock = threading.Lock()
        self.waited = 0.0

    @classmethod
    def per_minute(cls, calls: float, **kw) -> RateLimiter:
        return cls(60.0 / calls if calls and calls > 0 else 0.0, **kw)

    def wait(self) -> None:
        if self.interval <= 0:
            return
        with self._lock:
            now = self.clock()
            if self._next is not None and now < self._next:
                d = self._next - now
                self.sleep(d)
                self.waited += d
                now = self._next
            self._next = now + self.interval
