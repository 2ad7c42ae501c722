"""Callbacks of the training loop: what happens around each optimizer step without being the step itself.

The loop calls ``on_train_begin(trainer)``, ``on_step_end(trainer, record)`` after every optimizer step (``record``
is the step's metrics: step, epoch, loss, lr per group, grad_norm, samples/s, tokens/s, bad, mfu on GPUs) and
``on_train_end(trainer, summary)``. The defaults of a run are :class:`MetricsCallback` (metrics.jsonl,
TensorBoard/W&B, the progress bar) and :class:`CheckpointCallback` (every ``save_steps``); a caller adds its own,
e.g. :class:`History` to keep the records in memory (the demo does).
"""

from __future__ import annotations

from .metrics import MetricsLogger


class Callback:
    def on_train_begin(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, record: dict) -> None:
        pass

    def on_train_end(self, trainer, summary: dict) -> None:
        """After the last step (``trainer.completed``), or when the run failed or a callback stopped it."""


class MetricsCallback(Callback):
    """``metrics.jsonl`` every ``log_steps`` (and the last step), TensorBoard / W&B, and a progress bar (rank 0)."""

    def __init__(self):
        self.logger: MetricsLogger | None = None

    def on_train_begin(self, trainer) -> None:
        self.logger = MetricsLogger(
            trainer.out,
            trainer.cfg,
            enabled=trainer.env.is_main,
            total=trainer.total_steps,
            initial=trainer.state["step"],
        )

    def on_step_end(self, trainer, record: dict) -> None:
        step = record["step"]
        self.logger.log(record, log=step % trainer.cfg.log_steps == 0 or step == trainer.total_steps)

    def on_train_end(self, trainer, summary: dict) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None


class CheckpointCallback(Callback):
    """A resumable checkpoint every ``save_steps`` optimizer steps (0: none in between) and one after the last step
    of a completed run (a run that fails or is stopped keeps its last periodic one)."""

    def on_step_end(self, trainer, record: dict) -> None:
        every = trainer.cfg.save_steps
        if every and record["step"] % every == 0:
            trainer.save()

    def on_train_end(self, trainer, summary: dict) -> None:
        every = trainer.cfg.save_steps
        if trainer.completed and not (every and trainer.state["step"] % every == 0):
            trainer.save()


class History(Callback):
    """Every step's record, in memory."""

    def __init__(self):
        self.records: list[dict] = []

    def on_step_end(self, trainer, record: dict) -> None:
        self.records.append(dict(record))


class StopAfter(Callback):
    """Stop the loop right after step ``n`` without the final save: what a kill at that point leaves (tests)."""

    def __init__(self, n: int):
        self.n = n

    def on_step_end(self, trainer, record: dict) -> None:
        if record["step"] >= self.n:
            trainer.stop_now = True


def default_callbacks() -> list[Callback]:
    return [MetricsCallback(), CheckpointCallback()]
