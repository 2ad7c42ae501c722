"""What a caller asks of an answer's form (:class:`StructuredOutput`): a JSON schema, any JSON object, a regular
expression, an EBNF grammar or one of a list of choices. Pure data, size-checked, set on
``SamplingParams.structured`` (vLLM's ``SamplingParams.structured_outputs``); the server builds it from
``response_format`` / ``structured_outputs``. :mod:`.grammar` compiles it into the per-row
:class:`~cambrian.models.generate.logits.RowProcessor` that constrains the decode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import InputError

KINDS = ("json_schema", "json_object", "regex", "grammar", "choice")
MAX_SPEC_CHARS = 64 * 1024  # a schema / regex / grammar / choice list of an untrusted request
MAX_CHOICES = 256
_DESCRIBE = {
    "json_schema": "JSON schema",
    "json_object": "JSON object",
    "regex": "regular expression",
    "grammar": "EBNF grammar",
    "choice": "choice list",
}


class GrammarError(InputError):
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
