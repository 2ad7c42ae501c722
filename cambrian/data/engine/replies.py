"""Prompts for the LLM and the parsing of its replies into topics and question-answer pairs.

LLM replies are messy: JSON inside Markdown fences, prose before or after the JSON, trailing commas, Python-style
quotes, a single object instead of a list, wrapper keys (``{"qa_pairs": [...]}``), or plain "Question: / Answer:"
text. :func:`extract_json` tries, in order: the first fenced block, the whole text, every ``[``/``{`` position
with a JSON decoder (first success wins), the same with trailing commas removed, and a Python-literal reading
(``ast.literal_eval``, literals only). :func:`parse_qa` falls back to "Q:/A:" lines. Every failure is a
:class:`ReplyError` whose ``reason`` is counted.
"""

from __future__ import annotations

import ast
import json
import re

from ...errors import InputError

MAX_REPLY_CHARS = 50_000
MAX_QUESTION_CHARS = 600
MAX_ANSWER_CHARS = 3000
MAX_CONTEXT_WORDS = 700

TOPIC_SYSTEM = (
    "You are given a field and a list of its subfields. For every subfield, propose {n} distinct, "
    "specific sub-topics that an encyclopedia would have illustrated articles about. Reply with JSON "
    "only: an object whose keys are the subfields and whose values are lists of short topic names."
)

QA_SYSTEM = (
    "You create training data for a vision-language assistant. You get the caption of an image from an "
    "encyclopedia article, the text of the article section around it, and its topic. Write {n} "
    "question-answer pair(s) about what the image shows: questions a curious reader looking at the image "
    "would ask, answerable from the image with the help of the caption and the text, with accurate, "
    "self-contained answers of one to three sentences. Do not mention the caption or the text. Reply "
    'with JSON only: a list of objects with the keys "question" and "answer".'
)


class ReplyError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_QA_LINES = re.compile(
    r"(?:^|\n)\s*(?:\*\*)?(?:Q(?:uestion)?\s*\d*)(?:\*\*)?\s*[:.)-]\s*(?:\*\*)?\s*(.+?)\s*\n+"
    r"\s*(?:\*\*)?(?:A(?:nswer)?\s*\d*)(?:\*\*)?\s*[:.)-]\s*(?:\*\*)?\s*(.+?)(?=\n\s*(?:\*\*)?Q(?:uestion)?\s*\d*"
    r"(?:\*\*)?\s*[:.)-]|\Z)",
    re.S | re.I,
)


def _decode_any(text: str):
    """The first JSON value found at any '[' or '{' position of ``text`` (None when none decodes)."""
    dec = json.JSONDecoder()
    for m in re.finditer(r"[\[{]", text):
        try:
            obj, _ = dec.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(obj, (list, dict)):
            return obj
    return None


def extract_json(reply: str):
    """The JSON list/object in an LLM reply, or ReplyError('unparseable' / 'too_long' / 'empty')."""
    if not reply or not reply.strip():
        raise ReplyError("empty")
    if len(reply) > MAX_REPLY_CHARS:
        raise ReplyError("too_long", f"{len(reply)} characters")
    candidates = [m.group(2) for m in _FENCE.finditer(reply)] + [reply]
    for text in candidates:
        t = text.strip()
        try:
            obj = json.loads(t)
            if isinstance(obj, (list, dict)):
                return obj
        except ValueError:
            pass
        obj = _decode_any(t)
        if obj is not None:
            return obj
        fixed = _TRAILING_COMMA.sub(r"\1", t)
        obj = _decode_any(fixed)
        if obj is not None:
            return obj
        start = min([i for i in (fixed.find("["), fixed.find("{")) if i >= 0], default=-1)
        if start >= 0:
            end = max(fixed.rfind("]"), fixed.rfind("}"))
            try:
                obj = ast.literal_eval(fixed[start : end + 1])
                if isinstance(obj, (list, dict)):
                    return obj
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
    raise ReplyError("unparseable", reply.strip()[:80])


def _unwrap(obj):
    """``{"pairs": [...]}`` -> the list; ``{"question": ..}`` -> [that]; a single-key dict -> its value."""
    for _ in range(3):
        if isinstance(obj, dict) and not _get(obj, "question") and len(obj) == 1:
            obj = next(iter(obj.values()))
        elif isinstance(obj, dict) and not _get(obj, "question"):
            lists = [v for v in obj.values() if isinstance(v, list)]
            if len(lists) == 1:
                obj = lists[0]
            else:
                break
        else:
            break
    if isinstance(obj, dict):
        obj = [obj]
    return obj


def _get(d: dict, key: str):
    for k in (key, key.capitalize(), key[0], key[0].upper(), key.upper()):
        if k in d:
            return d[k]
    return None


def parse_qa(reply: str, max_pairs: int = 8) -> list[tuple[str, str]]:
    """[(question, answer)] from an LLM reply; ReplyError('unparseable' | 'no_qa' | ...) when none is usable."""
    try:
        obj = _unwrap(extract_json(reply))
        items = obj if isinstance(obj, list) else []
    except ReplyError as e:
        if e.reason != "unparseable":
            raise
        items = [{"question": q, "answer": a} for q, a in _QA_LINES.findall(reply)]
        if not items:
            raise
    pairs = []
    for it in items:
        if not isinstance(it, dict):
            continue
        q, a = _get(it, "question"), _get(it, "answer")
        if not isinstance(q, str) or not isinstance(a, (str, int, float)) or isinstance(a, bool):
            continue
        q, a = _clean(q), _clean(str(a))
        if q and a and len(q) <= MAX_QUESTION_CHARS and len(a) <= MAX_ANSWER_CHARS and "<image>" not in q + a:
            pairs.append((q, a))
    if not pairs:
        raise ReplyError("no_qa", reply.strip()[:80])
    return pairs[:max_pairs]


def _clean(s: str) -> str:
    return re.sub(r"^\*\*|\*\*$", "", s.strip()).strip()


def parse_topics(reply: str, subfields: list[str], n: int) -> dict[str, list[str]]:
    """{subfield: [topics]} from an LLM reply (official post-processing: a single-key wrapper is unwrapped and
    "/" in a topic becomes " or "); subfields the reply lacks are left out (the caller counts them)."""
    obj = extract_json(reply)
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))  # {"Field": {...}}
    if isinstance(obj, list) and len(subfields) == 1:
        obj = {subfields[0]: obj}
    if not isinstance(obj, dict):
        raise ReplyError("unparseable", "expected an object of subfield -> topics")
    by_lower = {k.strip().lower(): v for k, v in obj.items() if isinstance(k, str)}
    out = {}
    for sf in subfields:
        v = by_lower.get(sf.lower())
        if not isinstance(v, list):
            continue
        topics = []
        for t in v:
            if isinstance(t, dict):
                t = _get(t, "topic") or _get(t, "name") or _get(t, "title")
            if isinstance(t, str) and t.strip():
                t = " ".join(t.replace("/", " or ").split())[:120]
                if t not in topics:
                    topics.append(t)
        if topics:
            out[sf] = topics[:n]
    return out


def parse_fields(text: str) -> list[tuple[str, list[str]]]:
    """Lines ``"Field: Subfield 1, Subfield 2"`` (docs/official-code.md#data-engine step 1); blank lines and ``#`` comments ignored."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            raise InputError(f"line {i}: expected 'Field: Subfield, Subfield, ...', got {line[:60]!r}")
        field, subs = line.split(":", 1)
        subfields = [s.strip() for s in subs.split(",") if s.strip()]
        if not field.strip() or not subfields:
            raise InputError(f"line {i}: needs a field name and at least one subfield")
        out.append((field.strip(), subfields))
    return out


def qa_user_message(
    field: str, subfield: str, topic: str, page_title: str, section: str, caption: str, text: str
) -> str:
    words = text.split()
    if len(words) > MAX_CONTEXT_WORDS:
        text = " ".join(words[:MAX_CONTEXT_WORDS]) + " ..."
    return json.dumps(
        {
            "field": field,
            "subfield": subfield,
            "topic": topic,
            "article": page_title,
            "section": section,
            "image_caption": caption,
            "section_text": text,
        },
        ensure_ascii=False,
        indent=1,
    )
