"""The batching queue. Requests become :class:`Job`\\ s in a FIFO; one worker thread takes the first waiting job, waits
at most ``batch_window_ms`` for more while other requests are still being parsed (a lone request does not wait),
takes at once whatever is already queued, up to ``max_batch_size``, and decodes them together (the generation
contract's ``generate_events``, ``cambrian.models.generate``: one prefill, then one token per row per step). Batching
is continuous: rows leave the batch as they finish, and at every step boundary requests that arrived meanwhile are
prefilled and join the running batch (up to ``max_batch_size`` rows), so a long answer never holds the queue. Events
go back to each request's asyncio queue on the server's event loop.

All model work happens on the worker thread; a request's prompt arrives tokenised (``Job.prompt``, see
``tokenizing``) and is checked there against the context just before its batch, so the event loop only parses JSON
and decodes images. Jobs that fail alone (a prompt over the context
length, a bad conversation) get their own 400; a batch whose prefill fails is retried one job at a time so one bad
request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field

from ..constants import IMAGE_TOKEN_INDEX
from ..errors import UserError
from ..models.generate import SamplingParams
from ..utils.log import get_logger
from .errors import APIError, bad_request, busy, server_error, shutting_down

log = get_logger("serve")

STARTED = "started"  # sent to streaming jobs once their prefill succeeded
ADMITTED_HISTORY = 1000  # batch sizes at prefill kept for /health-style inspection (tests, benchmarks)
STEP_HISTORY = 10000  # rows per decode step kept likewise


def _append_bounded(history: list, value, keep: int) -> None:
    """Append; past twice ``keep`` items, drop all but the last ``keep`` (amortised O(1) per append)."""
    history.append(value)
    if len(history) > 2 * keep:
        del history[:-keep]


@dataclass(eq=False)
class Job:
    messages: list[dict]
    images: list
    params: SamplingParams
    stream: bool
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    on_release: object = None  # called once when the job is done (frees its admission and pixel budget)
    prompt: object = None  # the messages' PromptIds, tokenised off this thread (None: tokenised here)
    cancelled: bool = False
    finished: bool = False
    _run: object = None
    _row: int = -1

    def deliver(self, item) -> None:
        """Hand an event / APIError / STARTED to the request (thread-safe; dropped when the loop is gone)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # event loop closed: nobody is waiting any more
            pass

    def cancel(self) -> None:
        """The client went away: stop generating for this job."""
        self.cancelled = True
        run = self._run
        if run is not None:
            run.cancel(self._row)

    def attach(self, run, row: int) -> None:
        self._run, self._row = run, row
        if self.cancelled:
            run.cancel(row)


class BatchScheduler:
    def __init__(self, model, max_batch_size: int = 16, batch_window_ms: float = 10.0, max_concurrency: int = 64):
        self.model = model
        self.max_batch_size = max_batch_size
        self.window_s = batch_window_ms / 1000.0
        self.max_concurrency = max_concurrency
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._inflight = 0
        self._arriving = 0
        self.running = 0  # jobs in the batch being decoded
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="cambrian-generate", daemon=True)
        self._stop = False
        self.admitted: list[int] = []  # requests prefilled together (at least the last ADMITTED_HISTORY)
        self.step_sizes: list[int] = []  # requests decoded at each step (at least the last STEP_HISTORY)

    # -- called from the event loop --
    def start(self) -> None:
        self._thread.start()

    @property
    def inflight(self) -> int:
        return self._inflight

    @contextlib.contextmanager
    def arriving(self):
        """Around a request's parsing and image decoding, up to its ``submit``: while any request is on its way the
        worker waits (at most the window) for it to join the batch; when none is, a lone request starts at once."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closing:
                raise shutting_down()
            if self._inflight >= self.max_concurrency:
                raise busy(self.max_concurrency)
            self._inflight += 1
        self._q.put(job)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs; the worker finishes every job already submitted, then exits."""
        with self._lock:
            self._closing = True
        self._q.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- worker thread --
    def _release(self, job: Job, item=None) -> None:
        """The job's last message (its final event or an error); the job stops counting against the limit."""
        if job.finished:
            return
        job.finished = True
        if job.on_release is not None:
            job.on_release()
        with self._lock:
            self._inflight -= 1
        if item is not None:  # last: a client that has its answer may send the next request at once
            job.deliver(item)

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            batch, last = [job], False
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    if remaining > 0 and (self._arriving or not self._q.empty()):
                        nxt = self._q.get(timeout=remaining)
                    else:  # nobody else on the way: go now with what is queued
                        nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    last = True
                    break
                batch.append(nxt)
            try:
                self._run_batch(batch)
            except BaseException:  # never leave a request hanging; keep serving
                log.exception("generation worker failed")
                for j in batch:
                    self._release(j, server_error("generation failed"))
            if last or self._stop:
                return

    def _check(self, job: Job) -> None:
        """A 400 for a conversation the template refuses or a prompt that leaves no room to answer."""
        model = self.model
        try:
            ids = job.prompt if job.prompt is not None else model.prompt_ids(job.messages)
        except UserError as e:  # a conversation the template refuses
            raise bad_request(f"messages: {e}", param="messages") from None
        n_img = sum(1 for t in ids if t == IMAGE_TOKEN_INDEX)
        if n_img != len(job.images):
            raise bad_request(f"messages: {n_img} image places but {len(job.images)} images", param="messages")
        positions = len(ids) - n_img + sum(model.visual_token_count(im.size) for im in job.images)
        limit = model.context_length
        if limit and positions >= limit:
            raise bad_request(
                f"the prompt takes {positions} positions (images included); the model's context is {limit}",
                param="messages",
                code="context_length_exceeded",
            )

    def _prefill(self, jobs: list[Job]) -> list[tuple[list[Job], object]]:
        """Validate and prefill ``jobs`` together: ``[(jobs, DecodeRun)]``. When the joint prefill fails, each job is
        tried alone, so one bad request cannot fail the others; failed jobs get their error here."""
        live: list[Job] = []
        for job in jobs:
            if job.cancelled:
                self._release(job)
                continue
            try:
                self._check(job)
            except APIError as e:
                self._release(job, e)
                continue
            live.append(job)
        if not live:
            return []
        try:
            run = self.model.generate_events(
                [j.prompt if j.prompt is not None else j.messages for j in live],
                [j.images for j in live],
                sampling=[j.params for j in live],
                stream=[j.stream for j in live],
                step_events=True,
            )
        except Exception as e:
            if len(live) > 1:
                return [group for j in live for group in self._prefill([j])]
            err = bad_request(str(e)) if isinstance(e, UserError) else server_error(f"generation failed: {e}")
            if not isinstance(e, UserError):
                log.exception("prefill failed")
            self._release(live[0], err)
            return []
        _append_bounded(self.admitted, len(live), ADMITTED_HISTORY)
        return [(live, run)]

    def _run_batch(self, batch: list[Job]) -> None:
        """Decode a batch: its first prefilled group takes waiting jobs at step boundaries (continuous batching); jobs
        whose joint prefill failed were prefilled one by one and run after it, each on its own."""
        for k, (jobs, run) in enumerate(self._prefill(batch)):
            rows: dict[int, Job] = {}
            active: set[int] = set()
            self._attach(run, rows, active, jobs, range(len(jobs)))
            self._forward(run, rows, active, admit=k == 0)

    def _attach(self, run, rows: dict, active: set, jobs: list[Job], ids) -> None:
        for i, j in zip(ids, jobs):
            rows[i] = j
            active.add(i)
            j.attach(run, i)
            if j.stream:
                j.deliver(STARTED)
        self.running = len(active)

    def _forward(self, run, rows: dict[int, Job], active: set[int], admit: bool) -> None:
        """Hand each event of ``run`` to its job until the run ends; with ``admit``, waiting jobs join at each step
        boundary."""
        try:
            for ev in run:
                if ev.step:
                    if admit:
                        _append_bounded(self.step_sizes, len(active), STEP_HISTORY)
                        self._admit(run, rows, active)
                    continue
                j = rows[ev.row]
                if ev.finished:
                    active.discard(ev.row)
                    self.running = len(active)
                    self._release(j, ev)
                elif not j.cancelled:
                    j.deliver(ev)
        except Exception as e:
            log.exception("decoding failed")
            for j in rows.values():
                self._release(j, server_error(f"generation failed: {e}"))
        finally:
            self.running = 0

    def _admit(self, run, rows: dict, active: set) -> None:
        """Continuous batching: at a step boundary, waiting jobs (up to the free places) are prefilled and join the
        running batch, instead of waiting for all of it to finish."""
        room = self.max_batch_size - len(active)
        if room <= 0 or self._q.empty() or not run.joinable():
            return
        jobs: list[Job] = []
        while len(jobs) < room:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                break
            if job is None:  # shutting down: finish what runs, then stop
                self._stop = True
                break
            jobs.append(job)
        for group, other in self._prefill(jobs):
            self._attach(run, rows, active, group, run.join(other))
