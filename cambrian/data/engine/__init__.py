"""The data engine (docs/official-code.md#data-engine): topics -> pages -> sections with images -> VQA pairs from an LLM.

Pluggable parts: page sources (``PAGE_SOURCES``: ``local`` HTML folder offline, ``mediawiki`` online), any
OpenAI-compatible chat endpoint for topic and question generation (:class:`OpenAIChat`, key from an environment
variable), image normalisation to bounded PNGs (SVG through resvg when installed). Output: LLaVA JSONL with
provenance, resumable, rate-limited, failures counted by reason.

Python API::

    from cambrian.data.engine import LocalHTMLSource, OpenAIChat, EngineOptions, run_engine
    llm = OpenAIChat("http://127.0.0.1:8000/v1", model="cambrian-nano")
    run_engine({"Geology": {"Volcanology": ["volcano types"]}}, LocalHTMLSource("pages/"), llm, "runs/engine")
"""

from __future__ import annotations

from .html import ImageRef, Section, parse_sections
from .images import ImageSkip, normalize_image, original_image_url
from .llm import LLMAuthError, LLMError, OpenAIChat
from .pipeline import EngineOptions, generate_topics, run_engine
from .ratelimit import RateLimiter
from .replies import ReplyError, extract_json, parse_fields, parse_qa, parse_topics
from .sources import PAGE_SOURCES, FetchError, LocalHTMLSource, MediaWikiSource, PageRef, PageSource

__all__ = [
    "PAGE_SOURCES",
    "EngineOptions",
    "FetchError",
    "ImageRef",
    "ImageSkip",
    "LLMAuthError",
    "LLMError",
    "LocalHTMLSource",
    "MediaWikiSource",
    "OpenAIChat",
    "PageRef",
    "PageSource",
    "RateLimiter",
    "ReplyError",
    "Section",
    "extract_json",
    "generate_topics",
    "normalize_image",
    "original_image_url",
    "parse_fields",
    "parse_qa",
    "parse_sections",
    "parse_topics",
    "run_engine",
]
