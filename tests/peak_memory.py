"""Peak resident memory of this process over a block, for memory-bound tests.

``with PeakRSS() as peak: ...`` then ``peak.delta`` (bytes above the RSS at entry). On Linux the kernel's own peak is
used: writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM`` to the current RSS, and ``VmHWM`` after the block is
the true peak, however short. Where that is not allowed, a thread samples ``VmRSS`` every millisecond instead.
Memory allocated by other threads of the process (a server thread) counts too: that is the point."""

from __future__ import annotations

import threading
import time


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakRSS:
    def __init__(self):
        self.delta = 0
        self._sampled = 0
        self._stop = threading.Event()
        self._thread = None
        self._kernel = False

    def _sample(self):
        while not self._stop.is_set():
            self._sampled = max(self._sampled, _status_kb("VmRSS"))
            time.sleep(0.001)

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self._kernel = True
        except OSError:
            self._thread = threading.Thread(target=self._sample, daemon=True)
        self.base = _status_kb("VmRSS")
        self._sampled = self.base
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._kernel:
            peak = _status_kb("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._sampled, _status_kb("VmRSS"))
        self.delta = max(0, peak - self.base) * 1024
