"""Structured outputs over `cambrian serve` with the official `openai` client: ``response_format`` (json_schema,
json_object; plain and streamed), vLLM's ``structured_outputs`` (choice, regex, grammar, json), a batch of
concurrent requests with different schemas, ``finish_reason: length`` when the budget ends first, and one 400 naming
the field for every spec that cannot be used."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("xgrammar")
openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")

from helpers import sensitive_tiny_model  # noqa: E402
from schema_gen import random_schemas  # noqa: E402

from cambrian.models.generate import SamplingParams, StructuredOutput  # noqa: E402
from cambrian.serve.server import ServerThread  # noqa: E402
from cambrian.serve.settings import ServeSettings  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {"colour": {"enum": ["red", "green", "blue"]}, "count": {"type": "integer", "minimum": 0}},
    "required": ["colour", "count"],
}


@pytest.fixture(scope="module")
def model():
    return sensitive_tiny_model()


@pytest.fixture(scope="module")
def client(model):
    with ServerThread(model, ServeSettings(model_name="tiny", max_tokens_cap=200, batch_window_ms=20.0)) as srv:
        yield openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=60)


def _ask(client, **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 120)
    kw.setdefault("messages", [{"role": "user", "content": "How many red cubes?"}])
    return client.chat.completions.create(model="tiny", **kw)


def _json_schema(schema, name="answer"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def test_json_schema_plain_and_streamed_equal_the_in_process_answer(client, model):
    r = _ask(client, response_format=_json_schema(SCHEMA))
    text = r.choices[0].message.content
    jsonschema.validate(json.loads(text), SCHEMA)
    assert r.choices[0].finish_reason == "stop"
    sp = SamplingParams(max_new_tokens=120, structured=StructuredOutput.json_schema(SCHEMA))
    assert text == model.generate_text([[{"role": "user", "content": "How many red cubes?"}]], sampling=sp)[0]
    chunks = list(_ask(client, response_format=_json_schema(SCHEMA), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_json_object_and_the_structured_outputs_extension(client):
    r = _ask(client, response_format={"type": "json_object"}, max_tokens=60)
    text, finish = r.choices[0].message.content, r.choices[0].finish_reason
    # any object: the random model opens a string it never closes, so this one ends by length (reported as such)
    assert text.startswith('{"') and (finish == "length" or isinstance(json.loads(text), dict))
    choice = _ask(client, extra_body={"structured_outputs": {"choice": ["A", "B", "C"]}}).choices[0].message.content
    assert choice in ("A", "B", "C")
    rx = _ask(client, extra_body={"structured_outputs": {"regex": r"\d{2}-[a-c]+"}}).choices[0].message.content
    assert re.fullmatch(r"\d{2}-[a-c]+", rx)
    g = _ask(client, extra_body={"structured_outputs": {"grammar": 'root ::= ("yes" | "no") "!"'}})
    assert g.choices[0].message.content in ("yes!", "no!")
    js = _ask(client, extra_body={"structured_outputs": {"json": SCHEMA}}).choices[0].message.content
    jsonschema.validate(json.loads(js), SCHEMA)
    sampled = _ask(client, response_format=_json_schema(SCHEMA), temperature=1.0, seed=4).choices[0].message.content
    jsonschema.validate(json.loads(sampled), SCHEMA)


def test_concurrent_requests_with_different_schemas_are_batched_and_all_valid(client):
    schemas = random_schemas(12, seed=3)
    with ThreadPoolExecutor(12) as ex:
        rs = list(ex.map(lambda s: _ask(client, response_format=_json_schema(s), max_tokens=200), schemas))
    for s, r in zip(schemas, rs):
        assert r.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(r.choices[0].message.content), s)


def test_budget_ending_before_the_grammar_completes_says_length(client):
    long = {"type": "object", "properties": {"note": {"type": "string", "minLength": 40, "maxLength": 50}}}
    r = _ask(client, response_format=_json_schema(long), max_tokens=8)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8
    with pytest.raises(ValueError):
        json.loads(r.choices[0].message.content)


@pytest.mark.parametrize(
    "kw, param, words",
    [
        ({"response_format": _json_schema({"type": "foo"})}, "response_format.json_schema.schema", 'type "foo"'),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
            "needs json_schema.schema",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type", "json_schema"),
        ({"extra_body": {"structured_outputs": {"regex": "(ab"}}}, "structured_outputs.regex", "not closed"),
        (
            {"extra_body": {"structured_outputs": {"grammar": "root ::= nothing"}}},
            "structured_outputs.grammar",
            '"nothing" is not defined',
        ),
        ({"extra_body": {"structured_outputs": {"choice": []}}}, "structured_outputs.choice", "non-empty"),
        ({"extra_body": {"structured_outputs": {"choice": ["a"], "regex": "a"}}}, None, "give one of"),
        (
            {"extra_body": {"structured_outputs": {"structural_tag": {}}}},
            "structured_outputs.structural_tag",
            "not supported",
        ),
        (
            {"response_format": {"type": "json_object"}, "extra_body": {"structured_outputs": {"choice": ["a"]}}},
            "structured_outputs",
            "not both",
        ),
    ],
)
def test_specs_that_cannot_be_used_are_one_400_naming_the_field(client, kw, param, words):
    with pytest.raises(openai.BadRequestError) as ei:
        _ask(client, **kw)
    body = ei.value.body if isinstance(ei.value.body, dict) else {}
    body = body.get("error", body)
    assert ei.value.status_code == 400 and body.get("param") == param and words in body.get("message", ""), body
    assert ".cc:" not in body["message"]
