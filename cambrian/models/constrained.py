"""Constrained decoding: answers that follow a JSON schema, any JSON object, a regular expression, an EBNF grammar or
one of a list of choices.

- :class:`StructuredOutput` is what a caller asks for (pure data: a kind and its text, size-checked), set on
  ``SamplingParams.structured``; the server builds it from ``response_format`` / ``structured_outputs``.
- :class:`Grammars` (one per tokenizer, vocabulary size and stop tokens; :func:`grammars_for` builds it once per
  model) compiles it with xgrammar (its ``TokenizerInfo`` and ``GrammarCompiler``, whose cache makes a repeated
  schema free). A spec xgrammar cannot compile is one :class:`GrammarError` naming the problem.
- :class:`GrammarRow` is one row's state (an xgrammar ``GrammarMatcher``): the ``RowConstraint`` the decode loop
  (``cambrian.models.generation``) calls each step: fill this row of the batch's shared token bitmask before
  sampling, accept the chosen token after. A row's answer can only end (stop token) where its grammar is complete;
  a row that reaches its token budget first finishes with ``length``, as any other.

Generated JSON is compact (``", "`` and ``": "`` separators, no newlines: a small model cannot spend its budget on
whitespace) and never has properties a schema does not name (xgrammar's strict mode); both still validate against
the schema. xgrammar is an optional dependency (``make setup`` installs it; see scripts/setup_env.sh).
"""

from __future__ import annotations

import functools
import json
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("json_schema", "json_object", "regex", "grammar", "choice")
MAX_SPEC_CHARS = 64 * 1024  # a schema / regex / grammar / choice list of an untrusted request
MAX_CHOICES = 256
COMPILE_CACHE_BYTES = 128 * 2**20  # compiled grammars kept per model (a server sees many schemas)
JSON_OBJECT_SCHEMA = '{"type":"object"}'
_DESCRIBE = {
    "json_schema": "JSON schema",
    "json_object": "JSON object",
    "regex": "regular expression",
    "grammar": "EBNF grammar",
    "choice": "choice list",
}


class GrammarError(ValueError):
    """A structured-output spec that is malformed or that the grammar library cannot compile."""


@dataclass(frozen=True)
class StructuredOutput:
    """``kind``: one of :data:`KINDS`; ``spec``: the JSON schema (JSON text), the regex, the EBNF grammar (rule
    ``root``) or the choices (a JSON list of strings); empty for ``json_object``. Build it with the class methods."""

    kind: str
    spec: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise GrammarError(f"structured output: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.spec, str):
            raise GrammarError(f"structured output: the {self.describe()} must be text, got {type(self.spec).__name__}")
        if len(self.spec) > MAX_SPEC_CHARS:
            raise GrammarError(f"the {self.describe()} is {len(self.spec)} characters; the limit is {MAX_SPEC_CHARS}")
        if self.kind != "json_object" and not self.spec.strip():
            raise GrammarError(f"the {self.describe()} is empty")

    @classmethod
    def json_schema(cls, schema: dict | str) -> StructuredOutput:
        """A JSON schema (a dict, or its JSON text); property order is kept (it is the order of generation)."""
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except ValueError as e:
                raise GrammarError(f"the JSON schema is not valid JSON: {e}") from None
        if not isinstance(schema, dict):
            raise GrammarError(f"a JSON schema must be an object, got {type(schema).__name__}")
        return cls("json_schema", json.dumps(schema, ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def json_object(cls) -> StructuredOutput:
        """Any JSON object (OpenAI's ``response_format: {"type": "json_object"}``)."""
        return cls("json_object")

    @classmethod
    def regex(cls, pattern: str) -> StructuredOutput:
        """The whole answer matches ``pattern``."""
        return cls("regex", pattern)

    @classmethod
    def grammar(cls, ebnf: str) -> StructuredOutput:
        """An EBNF grammar in xgrammar's (GBNF-like) notation whose start rule is ``root``."""
        return cls("grammar", ebnf)

    @classmethod
    def choice(cls, options: Sequence[str]) -> StructuredOutput:
        """The answer is exactly one of ``options`` (non-empty strings)."""
        if isinstance(options, str) or not isinstance(options, Sequence):
            raise GrammarError("choices must be a list of strings")
        options = list(dict.fromkeys(options))
        if not options or not all(isinstance(o, str) and o for o in options):
            raise GrammarError("choices must be a non-empty list of non-empty strings")
        if len(options) > MAX_CHOICES:
            raise GrammarError(f"{len(options)} choices; the limit is {MAX_CHOICES}")
        return cls("choice", json.dumps(options, ensure_ascii=False))

    @property
    def choices(self) -> list[str]:
        return json.loads(self.spec) if self.kind == "choice" else []

    def describe(self) -> str:
        return _DESCRIBE.get(self.kind, self.kind)


def choice_grammar(options: Sequence[str]) -> str:
    """The EBNF of "exactly one of these strings" (JSON string literals are valid xgrammar literals)."""
    return "root ::= " + " | ".join(json.dumps(o, ensure_ascii=False) for o in options)


# xgrammar 0.2.8 writes a string bounded by minLength / maxLength as repetitions of the class [^"\\\r\n], which
# admits raw control characters (tab, form feed...): invalid JSON for strict parsers (Python's json.loads among them).
# A schema is therefore converted to xgrammar's EBNF and that class replaced by JSON's own string-character class
# (what xgrammar uses for unbounded strings). The same bounds written as a "pattern" are no way out: xgrammar refuses
# repetition bounds over about 128 there and lets overlong UTF-8 through (both measured with xgrammar 0.2.8;
# tests/test_constrained.py keeps a 200-character bound and the refusal of control characters checked).
_BOUNDED_STRING_CHAR = '[^\\"\\\\\\r\\n]'
_JSON_STRING_CHAR = '[^\\0-\\x1f\\"\\\\]'


@functools.lru_cache(maxsize=256)
def json_schema_ebnf(schema_text: str) -> str:
    """The EBNF xgrammar makes of a JSON schema (compact whitespace, no unnamed properties), with length-bounded
    strings limited to characters JSON allows unescaped."""
    xgr = require_xgrammar()
    ebnf = str(xgr.Grammar.from_json_schema(schema_text, any_whitespace=False, strict_mode=True))
    return ebnf.replace(_BOUNDED_STRING_CHAR, _JSON_STRING_CHAR)


_CPP_PREFIX = re.compile(r"^\[[\d:.]+\]\s+\S+:\d+:\s*")


def _library_message(e: Exception) -> str:
    """xgrammar's error text without its C++ source location (first line only)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = _CPP_PREFIX.sub("", text)
    return text.replace("Check failed: (error.empty()) is false: ", "")


def require_xgrammar():
    try:
        import xgrammar
    except ImportError:
        raise GrammarError(
            "structured outputs need the xgrammar package (make setup installs it; elsewhere: pip install xgrammar)"
        ) from None
    return xgrammar


class GrammarRow:
    """One row's grammar state (the decode loop's ``RowConstraint``)."""

    __slots__ = ("_m",)

    def __init__(self, matcher):
        self._m = matcher

    def fill_bitmask(self, bitmask, index: int) -> None:
        """Write the tokens allowed next into row ``index`` of the shared ``[rows, ceil(V/32)]`` int32 bitmask."""
        self._m.fill_next_token_bitmask(bitmask, index)

    def accept(self, token: int) -> bool:
        """Advance by the chosen token; False when the grammar does not allow it (the row's text is then not
        guaranteed: the caller treats it as an error)."""
        return self._m.accept_token(token)

    def is_terminated(self) -> bool:
        """The grammar is complete and its stop token accepted."""
        return self._m.is_terminated()


class Grammars:
    """Compiles :class:`StructuredOutput` specs for one tokenizer (xgrammar ``TokenizerInfo`` with ``vocab_size``
    = the model's logits width and the chat template's ``stop_token_ids``). Thread-safe: the server compiles while
    parsing a request and again (from xgrammar's cache) when the batch starts."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: Sequence[int]):
        xgr = require_xgrammar()
        self._xgr = xgr
        self.vocab_size = int(vocab_size)
        self.stop_token_ids = [int(t) for t in stop_token_ids]
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_token_ids
        )
        self.info = info
        self._compiler = xgr.GrammarCompiler(info, cache_limit_bytes=COMPILE_CACHE_BYTES)

    def compile(self, so: StructuredOutput):
        """The xgrammar ``CompiledGrammar`` of ``so``; :class:`GrammarError` naming the problem."""
        c = self._compiler
        try:
            if so.kind == "json_schema":
                return c.compile_grammar(json_schema_ebnf(so.spec))
            if so.kind == "json_object":
                return c.compile_grammar(json_schema_ebnf(JSON_OBJECT_SCHEMA))
            if so.kind == "regex":
                return c.compile_regex(so.spec)
            if so.kind == "grammar":
                return c.compile_grammar(so.spec)
            return c.compile_grammar(choice_grammar(so.choices))
        except (RuntimeError, ValueError, TypeError) as e:
            raise GrammarError(f"the {so.describe()} cannot be used: {_library_message(e)}") from None

    def row(self, so: StructuredOutput) -> GrammarRow:
        """A fresh per-row state for ``so``."""
        return GrammarRow(self._xgr.GrammarMatcher(self.compile(so)))


_BY_TOKENIZER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def grammars_for_tokenizer(tokenizer, vocab_size: int, stop_token_ids: Sequence[int]) -> Grammars:
    """The :class:`Grammars` of this tokenizer object, vocabulary size and stop tokens (built once: about 0.5 s for
    a 49k vocabulary, 1.5 s for Llama-3's 128k)."""
    key = (int(vocab_size), tuple(int(t) for t in stop_token_ids))
    with _LOCK:
        per = _BY_TOKENIZER.setdefault(tokenizer, {})
        g = per.get(key)
        if g is None:
            g = per[key] = Grammars(tokenizer, *key)
        return g


def grammars_for(model) -> Grammars:
    """The model's :class:`Grammars`: its tokenizer, the width of its logits, its chat template's stop tokens."""
    head = model.llm.get_output_embeddings()  # its width, also for a quantised head (whose weight is packed)
    width = getattr(head, "out_features", None) or model.llm.config.vocab_size
    return grammars_for_tokenizer(model.tokenizer, width, model.template.stop_token_ids(model.tokenizer))


def row_constraints(model, params) -> list[GrammarRow | None] | None:
    """One :class:`GrammarRow` per row whose ``SamplingParams.structured`` is set (None for the others); None when
    no row is constrained."""
    if not any(p.structured is not None for p in params):
        return None
    g = grammars_for(model)
    return [g.row(p.structured) if p.structured is not None else None for p in params]
