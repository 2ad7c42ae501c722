"""The evaluation contracts: what a benchmark is and what a model must offer.

Benchmark: loads samples from a local path (or a hub id when online), builds the prompt text, extracts an
answer from raw model text, and scores. Predictions are JSONL lines ``{"idx": <sample idx>, "prediction": str}``.

Model: anything with ``generate(requests, options) -> list[str]``. The model adapter (not the benchmark)
applies the chat template and puts one ``<image>`` placeholder per image in front of the text
(``"<image>\\n" + prompt``, the official protocol), so the same benchmark works for any model, including an
OpenAI-compatible endpoint (see ``cambrian.eval.adapters``).

Scorers: every benchmark scores with the **official** rules by default (what the Cambrian-1 evaluation scripts
compute, so a table is comparable with the paper's): a subclass implements them as ``extract`` / ``is_correct`` /
``score``. Benchmarks that also have a forgiving variant define ``extract_lenient`` / ``is_correct_lenient`` /
``score_lenient``. Callers use the scorer-aware entry points, which dispatch on ``self.scorer``: ``answer`` (the
extraction), ``correct`` (one item), ``evaluate`` (the metrics; a non-official scorer's carry its suffix,
``accuracy_lenient``, so a lenient number can never be mistaken for a paper-comparable one or land in the
paper-style table). A benchmark's own ``score`` calls ``answer`` / ``correct`` so its variants apply.

Units: every metric a benchmark returns is a fraction in [0, 1] unless its docstring says otherwise (MME's
``perception``/``cognition`` are raw scores out of 2000/800, as in the paper's table). ``table_value`` turns the
primary metric into the number printed in the paper's table (percent, MME-P raw) and ``average_value`` into the
number used in the group averages (MME-P / 20).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import InputError
from ..registry import Registry


@dataclass
class EvalSample:
    idx: Any  # unique id within the benchmark (int or str); predictions are keyed by it
    prompt: str  # full user text (question + options + the benchmark's answer-format instruction), no <image>
    images: list = field(default_factory=list)  # PIL images, or callables returning one (lazy decode)
    answer: Any = None  # ground truth in the benchmark's own form
    meta: dict = field(default_factory=dict)  # task, source, category, choices, ...

    def load_images(self) -> list:
        return [im() if callable(im) else im for im in self.images]


@dataclass
class GenerationOptions:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    stop: list[str] = field(default_factory=list)


@dataclass
class GenerationRequest:
    prompt: str
    images: list = field(default_factory=list)  # PIL images; empty list = text only (vision disabled)
    choices: list[str] | None = None  # the reply must be exactly one of these (``--constrained``)
    origin: tuple | None = None  # (benchmark, sample idx) it answers, for adapters that log per sample


@dataclass(frozen=True)
class MCOptions:
    """The options of one multiple-choice sample, for option-likelihood answering (``--mc likelihood``).

    ``texts``: the option texts in order (None when the prompt carries them but the sample does not);
    ``letters``: the letters the prompt asks the model to answer with (None when it asks for the text itself).
    ``prediction(k)`` is a reply that the benchmark's own scorer reads as option ``k``."""

    texts: tuple[str, ...] | None
    letters: tuple[str, ...] | None = None

    def __post_init__(self):
        if not self.texts and not self.letters:
            raise ValueError("MCOptions needs option texts or letters")
        if self.texts and self.letters and len(self.texts) != len(self.letters):
            raise ValueError(f"{len(self.texts)} option texts but {len(self.letters)} letters")

    def __len__(self) -> int:
        return len(self.letters or self.texts)

    def prediction(self, k: int) -> str:
        return self.letters[k] if self.letters else self.texts[k]


@runtime_checkable
class EvalModel(Protocol):
    name: str

    def generate(self, requests: Sequence[GenerationRequest], options: GenerationOptions) -> list[str]: ...


OFFICIAL = "official"
LENIENT = "lenient"
SCORERS = (OFFICIAL, LENIENT)
# metric keys that count things rather than score them: never renamed by a non-official scorer
COUNT_KEYS = frozenset({"n", "missing", "groups", "pairs", "missing_images", "scorer"})


def label_metrics(metrics: dict, scorer: str) -> dict:
    """Metrics of a non-official scorer: every score key gets the ``_<scorer>`` suffix, and ``scorer`` is recorded."""
    if scorer == OFFICIAL:
        return metrics
    out = {k if k in COUNT_KEYS else f"{k}_{scorer}": v for k, v in metrics.items()}
    out["scorer"] = scorer
    return out


class Benchmark(ABC):
    """Subclass, set ``name``/``max_new_tokens``/``category`` and register with ``@register_benchmark``.

    Options (e.g. TextVQA's ``ocr_tokens``) are constructor keyword arguments; unknown ones raise. ``scorer``
    (``"official"``, the default, or ``"lenient"`` where the benchmark has a lenient variant) picks the scoring
    rules; it is not an option, so predictions made for one scorer are rescored with the other.
    """

    name: str = ""
    category: str = ""  # General | Knowledge | OCR & Chart | Vision-Centric (the paper's table groups)
    max_new_tokens: int = 128
    primary_metric: str = "accuracy"  # key of score() used in tables (a fraction in [0, 1] unless stated)
    hub_id: str | None = None
    metric_name: str = "accuracy"  # human-readable description of the primary metric (docs / report)
    chance: float | None = None  # random-guess level of the primary metric (vision-disabled plot), if known
    options: dict = {}  # option name -> default value
    option_types: dict = {}  # option name -> field type (cambrian.typed); default: the default value's type

    def __init__(self, scorer: str = OFFICIAL, **options):
        self.opts = {**self.options, **check_options(self, options)}
        if scorer not in self.scorers():
            raise InputError(f"benchmark {self.name!r}: no {scorer!r} scorer; available: {', '.join(self.scorers())}")
        self.scorer = scorer
        if scorer != OFFICIAL:
            self.primary_metric = f"{type(self).primary_metric}_{scorer}"

    # --- the scorer's rules (dispatch on self.scorer) --------------------------------------------------------
    def _rule(self, method: str):
        """``<method>_<scorer>`` when this benchmark defines it for the instance's scorer, else the official
        ``<method>``."""
        if self.scorer != OFFICIAL and hasattr(self, f"{method}_{self.scorer}"):
            return getattr(self, f"{method}_{self.scorer}")
        return getattr(self, method)

    def answer(self, sample: EvalSample, prediction: str) -> Any:
        """The scorer's extraction of ``prediction``."""
        return self._rule("extract")(sample, prediction)

    def correct(self, sample: EvalSample, extracted: Any) -> float:
        """The scorer's score of one extracted answer."""
        return self._rule("is_correct")(sample, extracted)

    def evaluate(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        """The scorer's metrics (``predictions``: idx -> raw text); a non-official scorer's carry its suffix."""
        return label_metrics(self._rule("score")(samples, predictions), self.scorer)

    @classmethod
    def scorers(cls) -> tuple[str, ...]:
        """The scorers this benchmark has: always ``official``; ``lenient`` when it defines a lenient variant."""
        lenient = any(hasattr(cls, f"{m}_{LENIENT}") for m in ("extract", "is_correct", "score"))
        return (OFFICIAL, LENIENT) if lenient else (OFFICIAL,)

    @abstractmethod
    def load(self, path: str | None) -> list[EvalSample]:
        """Read the benchmark from a local path (file or directory in the public dataset's schema)."""

    @abstractmethod
    def extract(self, sample: EvalSample, prediction: str) -> Any:
        """The official parse of the raw model text into the benchmark's answer form (None = parse failure)."""

    @abstractmethod
    def score(self, samples: Sequence[EvalSample], predictions: dict) -> dict:
        """``predictions`` maps idx -> raw text. Returns metrics (fractions in [0, 1] unless documented), taking each
        answer through :meth:`answer` / :meth:`correct` (so a scorer's variants apply)."""

    # --- table helpers -------------------------------------------------------------------------------------
    def table_value(self, metrics: dict) -> float | None:
        """The number shown in the paper-style table (percent unless overridden)."""
        v = metrics.get(self.primary_metric)
        return None if v is None else 100.0 * float(v)

    def average_value(self, metrics: dict) -> float | None:
        """The number that enters a group average (percent; MME-P overrides with score / 20)."""
        return self.table_value(metrics)

    def mc_options(self, sample: EvalSample) -> MCOptions | None:
        """The sample's options when it is a multiple-choice question (``--mc likelihood`` scores them), else
        None (open questions, and every benchmark that does not define it)."""
        return None

    # --- per-question scores (95% intervals, ``cambrian.eval.stats``) ------------------------------------------
    def question_scores(self, samples: Sequence[EvalSample], predictions: dict) -> list[float] | None:
        """Each question's score in [0, 1], such that the primary metric is their mean (for CV-Bench: the official
        formula over its sources' means, ``cambrian.cvbench.score.formula_strata``). None where the primary metric
        is not built that way (pairs, circular groups, F1, MME's sums): such a benchmark gets no interval."""
        return None

    def question_chance(self, sample: EvalSample) -> float | None:
        """The random-guess score of one question (1 / its options), or None when unknown."""
        return None


def check_options(bench: Benchmark, given: dict) -> dict:
    """The benchmark's options through the typed loader: unknown names refused with a did-you-mean, each value
    checked against ``option_types[name]`` (default: the type of its default value)."""
    from ..typed import Bool, ConfigError, Int, Num, Str, check_value, did_you_mean

    by_default = {bool: Bool, int: Int(), float: Num(), str: Str}
    out = {}
    for name, value in given.items():
        if name not in bench.options:
            valid = did_you_mean(name, bench.options) if bench.options else " (it has no options)"
            raise ConfigError(f"benchmark {bench.name!r}: unknown option {name!r}{valid}")
        tp = bench.option_types.get(name) or by_default.get(type(bench.options[name]))
        out[name] = check_value(tp, value, f"benchmark {bench.name!r}: option {name}") if tp is not None else value
    return out


BENCHMARKS: Registry[type[Benchmark]] = Registry("benchmark")


def register_benchmark(name: str):
    def deco(cls):
        cls.name = name
        BENCHMARKS.register(name, cls)
        return cls

    return deco


def get_benchmark(name: str, **options) -> Benchmark:
    from . import benchmarks  # noqa: F401  (populates the registry)

    return BENCHMARKS.get(name)(**options)


def list_benchmarks() -> list[str]:
    from . import benchmarks  # noqa: F401

    return BENCHMARKS.names()
