"""Structured outputs of a request: OpenAI's ``response_format`` (``json_object``; ``json_schema`` with ``name``,
``schema``, ``strict``) and vLLM's ``structured_outputs`` extension (``json``, ``regex``, ``choice``, ``grammar``,
``json_object``) -> a :class:`~cambrian.models.generate.StructuredOutput`, compiled for the served model while the
request is parsed, so a spec that cannot be used is one 400 naming the field and the problem before the request
queues."""

from __future__ import annotations

from ..models.generate import GrammarError, StructuredOutput, grammars_for
from .errors import bad_request
from .schema import ChatCompletionRequest


def structured_output(req: ChatCompletionRequest) -> tuple[StructuredOutput, str] | None:
    """(the spec, the request field it came from), or None for free text; a malformed spec is a 400."""
    rf, so = req.response_format, req.structured_outputs
    asked_rf = rf is not None and rf.type != "text"
    if so is not None:
        given = [name for name in ("json_", "regex", "choice", "grammar") if getattr(so, name) is not None] + (
            ["json_object"] if so.json_object else []
        )
        if asked_rf and given:
            raise bad_request("give response_format or structured_outputs, not both", param="structured_outputs")
        if len(given) > 1:
            fields = ", ".join(n.rstrip("_") for n in given)
            raise bad_request(f"structured_outputs: give one of json, regex, choice, grammar ({fields} given)")
        if given:
            field = given[0]
            param = f"structured_outputs.{field.rstrip('_')}"
            value = getattr(so, field)
            make = {
                "json_": StructuredOutput.json_schema,
                "regex": StructuredOutput.regex,
                "choice": StructuredOutput.choice,
                "grammar": StructuredOutput.grammar,
                "json_object": lambda _: StructuredOutput.json_object(),
            }[field]
            return _built(make, value, param)
    if not asked_rf:
        return None
    if rf.type == "json_object":
        return StructuredOutput.json_object(), "response_format"
    param = "response_format.json_schema.schema"
    if rf.json_schema is None or rf.json_schema.schema_ is None:
        raise bad_request("response_format type 'json_schema' needs json_schema.schema", param=param)
    return _built(StructuredOutput.json_schema, rf.json_schema.schema_, param)


def _built(make, value, param: str) -> tuple[StructuredOutput, str]:
    try:
        return make(value), param
    except GrammarError as e:
        raise bad_request(f"{param}: {e}", param=param) from None


def compile_for(model, spec: StructuredOutput, param: str) -> None:
    """Compile ``spec`` for ``model`` now (cached for the batch); a 400 naming ``param`` when it cannot be used."""
    try:
        grammars_for(model).compile(spec)
    except GrammarError as e:
        raise bad_request(f"{param}: {e}", param=param) from None
