"""Guided visual search around any model of the VLM and generation contracts (``cambrian.models.vlm``,
``cambrian.models.generate``): V*'s loop with pluggable parts.

For a batch of :class:`Question`\\ s (text, one image, optional options):

1. **plain answer**: the options scored with the whole image (the model's ``score_options``), or a free-form answer
   when the trigger reads one;
2. **trigger** (:mod:`~cambrian.search.trigger`): search this question?
3. **targets** (:mod:`~cambrian.search.targets`): the objects it needs (given ones first, then the trigger's, then
   the extractor's);
4. **search** (:mod:`~cambrian.search.search`) per target, all targets of all questions advanced together, the
   localiser (:mod:`~cambrian.search.localise`) scoring their patches in shared calls;
5. **memory** (:mod:`~cambrian.search.memory`): crops of the found boxes as extra images with their boxes;
6. **answer** with that prompt: the most likely option (summed log-probability; ``normalize``: the per-token mean,
   near V*'s lowest mean loss), or a generated answer.

A question that is not searched (trigger says no, no target, nothing found) keeps its plain answer. Nothing here
is trained: the localiser reads what the model already computes (its grounded cells, or its own yes/no likelihood)
or a detector you plug in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constants import IMAGE_TOKEN
from ..errors import InputError
from ..models.generate import check_generative
from ..models.vlm import check_vlm
from .localise import AskLocaliser, EmbeddingLocaliser, Localiser
from .memory import MemoryItem, memory_items, memory_prompt
from .search import SearchResult, TargetSearch, run_searches
from .settings import SearchSettings
from .targets import RuleTargets
from .trigger import make_trigger


@dataclass
class Question:
    text: str  # the question (no <image> tag), options and instructions included as the model should read them
    image: Any  # PIL image
    options: Sequence[str] | None = None  # candidate answers scored by likelihood (None: generate)
    targets: Sequence[str] | None = None  # objects to search for (None: the trigger's or the extractor's)
    key: Any = None  # identifies the question (logs, the oracle localiser, the search cache)


@dataclass
class SearchOutcome:
    question: Question
    searched: bool
    margin: float | None
    targets: list[str]
    results: list[SearchResult]
    memory: list[MemoryItem]
    prompt: str  # the prompt that produced the answer
    images: list
    option_scores: list | None  # log-likelihood of each option under the final prompt
    choice: int | None  # index of the chosen option
    answer: str  # the chosen option's text, or the generated answer
    plain_choice: int | None = None  # the choice without search
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "key": self.question.key,
            "question": self.question.text,
            "image_size": list(self.question.image.size) if self.question.image is not None else None,
            "searched": self.searched,
            "margin": None if self.margin is None else round(self.margin, 4),
            "targets": self.targets,
            "searches": [r.to_dict() for r in self.results],
            "memory": [m.to_dict() for m in self.memory],
            "prompt": self.prompt,
            "choice": self.choice,
            "plain_choice": self.plain_choice,
            "answer": self.answer,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


def make_localiser(model, settings: SearchSettings) -> Localiser:
    if settings.localiser == "embedding":
        return EmbeddingLocaliser(model)
    if settings.localiser == "ask":
        return AskLocaliser(model)
    raise InputError(
        f"localiser={settings.localiser} needs its data: pass localiser=OracleLocaliser(boxes) to GuidedSearch"
    )


class GuidedSearch:
    """``GuidedSearch(model).run([Question(...)])``. Parts: ``localiser`` (default from ``settings.localiser``),
    ``trigger`` (from ``settings.trigger``), ``extractor`` (``question text -> [target]``, default rules)."""

    def __init__(
        self,
        model,
        settings: SearchSettings | None = None,
        *,
        localiser: Localiser | None = None,
        trigger=None,
        extractor=None,
        system: str | None = None,
        batch_size: int = 8,
    ):
        check_vlm(model, "guided search")
        check_generative(model, "guided search")
        self.model = model
        self.settings = settings or SearchSettings()
        self.localiser = localiser if localiser is not None else make_localiser(model, self.settings)
        self.trigger = trigger if trigger is not None else make_trigger(self.settings)
        self.extractor = extractor if extractor is not None else RuleTargets(self.settings.max_targets)
        self.system = system
        self.batch_size = batch_size

    # ---- the model's two ways of answering ---------------------------------------------------------------------
    def score(self, prompts: Sequence[str], images: Sequence[list], options: Sequence[Sequence[str]]) -> list[list]:
        """Log-likelihood of each option as the answer (the model's ``score_options``, in batches; ``normalize``:
        divided by the option's token count)."""
        out: list[list[float]] = []
        for k in range(0, len(prompts), max(1, self.batch_size)):
            part = slice(k, k + self.batch_size)
            out += self.model.score_options(
                list(prompts[part]),
                [list(x) for x in images[part]],
                [list(o) for o in options[part]],
                system=self.system,
            )
        if self.settings.normalize:
            count = self.model.tokenizer.encode
            out = [
                [v / max(1, len(count(o, add_special_tokens=False))) for v, o in zip(row, opts)]
                for row, opts in zip(out, options)
            ]
        return out

    def generate(self, prompts: Sequence[str], images: Sequence[list], max_new_tokens: int | None = None) -> list[str]:
        if not prompts:
            return []
        return self.model.generate_text(
            list(prompts),
            [list(x) for x in images],
            max_new_tokens=max_new_tokens or self.settings.max_new_tokens,
            system=self.system,
        )

    @staticmethod
    def _choose(scores: Sequence[float]) -> int:
        """The most likely option (ties: the first)."""
        return max(range(len(scores)), key=lambda k: (scores[k], -k))

    # ---- the loop -------------------------------------------------------------------------------------------
    def look(
        self, questions: Sequence[Question], targets: Sequence[Sequence[str]], cache: dict | None = None
    ) -> list[tuple[list[SearchResult], list[MemoryItem]]]:
        """Search each question's image for its ``targets`` (all searches advanced together) and build the memory
        of what was found: per question ``(results, memory items)``. ``cache``: see :meth:`run`."""
        cache = cache if cache is not None else {}
        jobs, searches = [], []
        for i, (q, names) in enumerate(zip(questions, targets)):
            for name in names:
                if q.key is not None and (q.key, name) in cache:
                    continue
                jobs.append((i, name))
                searches.append(TargetSearch(q.image, name, self.settings, key=q.key))
        fresh = dict(zip(jobs, run_searches(self.localiser, searches)))
        out = []
        for i, (q, names) in enumerate(zip(questions, targets)):
            row = []
            for name in names:
                r = fresh.get((i, name)) or cache.get((q.key, name))
                if q.key is not None:
                    cache[(q.key, name)] = r
                row.append(r)
            found = [(r.target, r.box) for r in row if r.found]
            out.append((row, memory_items(q.image, found, self.settings) if found else []))
        return out

    def run(
        self, questions: Sequence[Question], cache: dict | None = None, max_new_tokens: int | None = None
    ) -> list[SearchOutcome]:
        """Answer a batch. ``cache``: ``{(key, target): SearchResult}`` shared between calls about the same questions
        (a search is then run once per question and target); ``max_new_tokens``: for generated answers (default the
        settings')."""
        qs = list(questions)
        clock = {"plain": 0.0, "search": 0.0, "answer": 0.0}
        t = time.perf_counter()
        plain_prompts = [f"{IMAGE_TOKEN}\n{q.text}" if q.image is not None else q.text for q in qs]
        plain_images = [[q.image] if q.image is not None else [] for q in qs]
        opts = [i for i, q in enumerate(qs) if q.options]
        plain_scores = _scatter(
            len(qs), opts, self.score(*_pick(opts, plain_prompts, plain_images, [q.options for q in qs]))
        )
        todo = [i for i, q in enumerate(qs) if q.image is not None] if self.trigger.needs_answer else []
        plain_answers = _scatter(
            len(qs), todo, self.generate(*_pick(todo, plain_prompts, plain_images), max_new_tokens)
        )
        clock["plain"] = time.perf_counter() - t

        # trigger and targets
        t = time.perf_counter()
        decisions, targets = [], []
        for i, q in enumerate(qs):
            if q.image is None:
                decisions.append((False, None))
                targets.append([])
                continue
            go, margin, listed = self.trigger.decide(plain_scores[i], plain_answers[i])
            names = list(q.targets) if q.targets else (listed or self.extractor(q.text))
            decisions.append((bool(go and names), margin))
            targets.append(names[: self.settings.max_targets] if go else [])

        # search (every target of every searched question, in lockstep) and memory
        found = self.look(qs, [names if d[0] else [] for names, d in zip(targets, decisions)], cache)
        results = [r for r, _ in found]
        memories = [m for _, m in found]
        clock["search"] = time.perf_counter() - t

        # the answer
        t = time.perf_counter()
        prompts, images = list(plain_prompts), [list(x) for x in plain_images]
        for i, q in enumerate(qs):
            if memories[i]:
                prompts[i], images[i] = memory_prompt(q.text, q.image, memories[i], self.settings.layout)
        redo = [i for i in range(len(qs)) if memories[i] and qs[i].options]
        redone = _scatter(len(qs), redo, self.score(*_pick(redo, prompts, images, [q.options for q in qs])))
        final_scores = [r if r is not None else p for r, p in zip(redone, plain_scores)]
        gen = [i for i in range(len(qs)) if not qs[i].options and (memories[i] or plain_answers[i] is None)]
        generated = _scatter(len(qs), gen, self.generate(*_pick(gen, prompts, images), max_new_tokens))
        answers = [g if g is not None else a for g, a in zip(generated, plain_answers)]
        clock["answer"] = time.perf_counter() - t

        out = []
        share = {k: v / max(1, len(qs)) for k, v in clock.items()}
        for i, q in enumerate(qs):
            choice = self._choose(final_scores[i]) if final_scores[i] is not None else None
            plain_choice = self._choose(plain_scores[i]) if plain_scores[i] is not None else None
            answer = q.options[choice] if choice is not None else (answers[i] or "")
            out.append(
                SearchOutcome(
                    question=q,
                    searched=bool(memories[i]),
                    margin=decisions[i][1],
                    targets=targets[i],
                    results=results[i],
                    memory=memories[i],
                    prompt=prompts[i],
                    images=images[i],
                    option_scores=final_scores[i],
                    choice=choice,
                    answer=answer,
                    plain_choice=plain_choice,
                    seconds=dict(share),
                )
            )
        return out


def _pick(idx: Sequence[int], *columns: Sequence) -> list[list]:
    """The rows ``idx`` of each column."""
    return [[col[i] for i in idx] for col in columns]


def _scatter(n: int, idx: Sequence[int], values: Sequence) -> list:
    """``values`` placed at positions ``idx`` of a list of ``n`` (None elsewhere)."""
    out: list = [None] * n
    for i, v in zip(idx, values):
        out[i] = v
    return out
