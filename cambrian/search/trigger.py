"""Triggers: does a question need a search? V*'s answering model is trained to refuse ("Sorry, I can not answer the
question. Some visual information about the following objects is missing or unclear: ...") and list what it could
not see; models that were never trained to refuse need another signal.

- :class:`MarginTrigger` (default): the model's own confidence. With options, their probabilities (a softmax over
  the options' log-likelihoods); search when the best leads the second by less than ``margin``. Without options
  there is no margin to read, so it searches.
- :class:`RefusalTrigger`: V*'s rule on a free-form answer: search when it contains the refusal string; the objects
  listed after it (comma-separated, up to a full stop) become the targets.
- :class:`AlwaysTrigger` / :class:`NeverTrigger`: search every question / none (the no-search baseline).

``decide(option_logprobs, answer)`` returns ``(search?, margin or None, targets or None)``; ``needs_answer`` says
whether it needs a free-form answer generated first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def option_margin(logprobs: Sequence[float]) -> float:
    """p(best) - p(second) of a softmax over the options' log-likelihoods (1.0 with a single option)."""
    if len(logprobs) < 2:
        return 1.0
    top = max(logprobs)
    p = sorted((math.exp(v - top) for v in logprobs), reverse=True)
    total = sum(p)
    return (p[0] - p[1]) / total


class MarginTrigger:
    needs_answer = False

    def __init__(self, margin: float = 0.5):
        self.margin = margin

    def decide(self, option_logprobs: Sequence[float] | None, answer: str | None = None):
        if not option_logprobs:
            return True, None, None
        m = option_margin(option_logprobs)
        return m < self.margin, m, None


class RefusalTrigger:
    needs_answer = True

    def __init__(self, refusal: str):
        self.refusal = refusal

    def decide(self, option_logprobs: Sequence[float] | None, answer: str | None = None):
        if not answer or self.refusal not in answer:
            return False, None, None
        rest = answer.split(self.refusal, 1)[1]
        if ":" in rest:
            rest = rest.split(":", 1)[1]
        rest = rest.split(".")[0]
        objects = [o.strip() for o in rest.split(",") if o.strip()]
        return True, None, objects or None


class AlwaysTrigger:
    needs_answer = False

    def decide(self, option_logprobs=None, answer=None):
        return True, None, None


class NeverTrigger:
    needs_answer = False

    def decide(self, option_logprobs=None, answer=None):
        return False, None, None


def make_trigger(settings):
    if settings.trigger == "margin":
        return MarginTrigger(settings.margin)
    if settings.trigger == "refusal":
        return RefusalTrigger(settings.refusal)
    if settings.trigger == "always":
        return AlwaysTrigger()
    return NeverTrigger()
