"""Constrained decoding: a :class:`~cambrian.models.generate.structured.StructuredOutput` compiled by xgrammar into
one :class:`GrammarRow` per row, the decode loop's :class:`~cambrian.models.generate.logits.RowProcessor`.

- :class:`Grammars` (one per tokenizer, logits width and stop tokens; :func:`grammars_for` builds it once per model)
  compiles a spec with xgrammar (its ``TokenizerInfo`` and ``GrammarCompiler``, whose cache makes a repeated schema
  free). A spec xgrammar cannot compile is one :class:`~cambrian.models.generate.structured.GrammarError` naming the
  problem.
- :class:`GrammarRow` is one row's state (an xgrammar ``GrammarMatcher``). Each step the decode loop hands all the
  grammar rows of the batch to :meth:`GrammarRow.process_batch`: every row writes the tokens it allows into its row
  of one shared token bitmask, which masks their logits; after sampling each row accepts its token. A row's answer
  can only end (stop token) where its grammar is complete; a row that reaches its token budget first finishes with
  ``length``, as any other.
- :func:`grammar_processors` is what ``generate_events`` calls: a processor for each row whose
  ``SamplingParams.structured`` is set (compiled before the prefill, so a bad spec costs nothing).

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

import torch

from .structured import GrammarError, StructuredOutput

COMPILE_CACHE_BYTES = 128 * 2**20  # compiled grammars kept per model (a server sees many schemas)
JSON_OBJECT_SCHEMA = '{"type":"object"}'


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


_BITS = torch.arange(32, dtype=torch.int32)


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """``logits [n, V]`` with the tokens row ``i`` may not take set to -inf: ``bitmask [n, W]`` int32, bit ``j`` of
    word ``w`` of row ``i`` allows token ``32 w + j`` (xgrammar's layout). Logits past the bitmask's ``32 W`` tokens
    (a head wider than the grammar's vocabulary) are never allowed."""
    n, V = logits.shape
    allowed = ((bitmask[:, :, None] >> _BITS.to(bitmask.device)) & 1).bool().reshape(n, -1)
    allowed = allowed.to(logits.device)
    if allowed.shape[1] < V:
        allowed = torch.cat([allowed, allowed.new_zeros(n, V - allowed.shape[1])], dim=1)
    return logits.masked_fill(~allowed[:, :V], float("-inf"))


class GrammarRow:
    """One row's grammar state: a :class:`~cambrian.models.generate.logits.RowProcessor`."""

    __slots__ = ("_m", "words")

    def __init__(self, matcher, words: int):
        self._m = matcher
        self.words = words  # ceil(vocabulary / 32): the width of this row's bitmask

    @classmethod
    def process_batch(cls, logits: torch.Tensor, processors: Sequence[GrammarRow]) -> torch.Tensor:
        """Every row fills its row of one shared ``[n, W]`` bitmask; the logits of disallowed tokens become -inf."""
        bitmask = torch.empty(len(processors), max(p.words for p in processors), dtype=torch.int32)
        for i, p in enumerate(processors):
            p._m.fill_next_token_bitmask(bitmask, i)
        return apply_token_bitmask(logits, bitmask)

    def accept(self, token: int) -> bool:
        """Advance by the chosen token; True when the grammar has ended (the row finishes)."""
        if not self._m.accept_token(token):  # the mask makes this impossible unless the logits were NaN
            raise RuntimeError(f"constrained decoding: token {token} is not allowed by the row's grammar")
        return self._m.is_terminated()


class Grammars:
    """Compiles :class:`StructuredOutput` specs for one tokenizer (xgrammar ``TokenizerInfo`` with ``vocab_size``
    = the model's logits width and its ``stop_token_ids``). Thread-safe: the server compiles while parsing a request
    and again (from xgrammar's cache) when the batch starts."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: Sequence[int]):
        xgr = require_xgrammar()
        self._xgr = xgr
        self.vocab_size = int(vocab_size)
        self.stop_token_ids = [int(t) for t in stop_token_ids]
        try:
            self.info = xgr.TokenizerInfo.from_huggingface(
                tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_token_ids
            )
        except (AttributeError, TypeError, ValueError, RuntimeError) as e:
            raise GrammarError(
                f"structured outputs need a Hugging Face tokenizer; this model's {type(tokenizer).__name__} cannot be "
                f"read by xgrammar ({_library_message(e)})"
            ) from None
        self._compiler = xgr.GrammarCompiler(self.info, cache_limit_bytes=COMPILE_CACHE_BYTES)

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
        return GrammarRow(self._xgr.GrammarMatcher(self.compile(so)), (self.vocab_size + 31) // 32)


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


def logits_width(model) -> int:
    """The width of the model's next-token logits: its LM head's (also for a quantised head, whose weight is
    packed), else the LLM config's vocabulary size, else the tokenizer's length (or its ``vocab_size``)."""
    llm = getattr(model, "llm", None)
    head = llm.get_output_embeddings() if hasattr(llm, "get_output_embeddings") else None
    width = getattr(head, "out_features", None) or getattr(getattr(llm, "config", None), "vocab_size", None)
    tok = model.tokenizer
    return int(width or (len(tok) if hasattr(tok, "__len__") else getattr(tok, "vocab_size", 0)))


def grammars_for(model) -> Grammars:
    """The model's :class:`Grammars` (a generation-contract model: its tokenizer, logits width, stop tokens)."""
    return grammars_for_tokenizer(model.tokenizer, logits_width(model), model.stop_token_ids)


def grammar_processors(model, params) -> list[GrammarRow | None] | None:
    """One :class:`GrammarRow` per row whose ``SamplingParams.structured`` is set (None for the others); None when
    no row is constrained."""
    if not any(p.structured is not None for p in params):
        return None
    g = grammars_for(model)
    return [g.row(p.structured) if p.structured is not None else None for p in params]
