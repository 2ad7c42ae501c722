"""``<image>``-aware tokenisation for training samples and inference prompts.

Every ``<image>`` tag becomes one ``IMAGE_TOKEN_INDEX`` (-200) id; the model later replaces it by the image's
block of visual tokens. Text around the tags is tokenised without special-token insertion and **nothing is
dropped**.

FIX (docs/official-code.md#tokens / docs/official-code.md#bugs B3): the official inference helper ``tokenizer_image_token`` drops the first token of
every chunk after an image when the tokenizer does not auto-prepend BOS, i.e. the ``"\\n"`` after ``<image>``,
while training (``tokenizer_image_token_llama3``) kept it. Here inference and training tokenise identically,
so the ``"\\n"`` after ``<image>`` is kept in both.

Conversation text is data: control strings inside a system prompt, a user turn or a reply (``<|im_end|>\\n
<|im_start|>assistant`` typed by a user) are tokenised as the plain text they are, never as control tokens; only
the template's own pieces produce control-token ids (no role injection through the data).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from ...utils.quiet import quiet_length_warning
from .templates import ChatTemplate, get_template


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` (default special-token handling) prepends ``bos_token_id``."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return len(with_special) > len(plain) and with_special[0] == bos


def _encode(tokenizer, text: str) -> list[int]:
    if not text:
        return []
    quiet_length_warning(tokenizer)  # no truncation here on purpose: the caller cuts image-aware
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class _Controls:
    """A tokenizer's control tokens for one template: special added tokens, plus added tokens that the template's
    own text uses (in case a tokenizer did not flag them special)."""

    ids: frozenset
    by_content: dict
    pattern: re.Pattern | None  # matches any control string (longest first)


_CONTROLS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _controls(tokenizer, tmpl: ChatTemplate) -> _Controls:
    try:
        key = (tmpl.name, tmpl.control_strings(), len(tokenizer))
    except TypeError:
        key = None
    try:
        cached = _CONTROLS_CACHE.get(tokenizer, {})
    except TypeError:  # not weak-referenceable
        cached = {}
    if key is not None and key in cached:
        return cached[key]
    literals = tmpl.control_strings()
    by_content: dict[str, int] = {}
    for i, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        content = getattr(tok, "content", None) or str(tok)
        if getattr(tok, "special", True) or any(content in lit for lit in literals):
            by_content[content] = int(i)
    names = getattr(tokenizer, "all_special_tokens", None) or []
    ids = getattr(tokenizer, "all_special_ids", None) or []
    for content, i in zip(names, ids):
        if content and i is not None:
            by_content.setdefault(str(content), int(i))
    by_content.pop("", None)
    pattern = None
    if by_content:
        pattern = re.compile("|".join(re.escape(c) for c in sorted(by_content, key=len, reverse=True)))
    out = _Controls(frozenset(by_content.values()), by_content, pattern)
    if key is not None:
        try:
            _CONTROLS_CACHE.setdefault(tokenizer, {})[key] = out
        except TypeError:
            pass
    return out


def _encode_plain(tokenizer, text: str, ctl: _Controls) -> list[int]:
    """``text`` as plain text: control strings inside it are not matched as control tokens."""
    if not text:
        return []
    quiet_length_warning(tokenizer)
    try:
        ids = list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    except TypeError:  # a tokenizer without split_special_tokens
        ids = _encode(tokenizer, text)
    if ctl.ids.isdisjoint(ids):
        return ids
    # the tokenizer matched a control string anyway: cut the first one after its first character and go on
    m = ctl.pattern.search(text) if ctl.pattern is not None else None
    if m is None or len(text) == 1:
        raise ValueError(f"cannot tokenise {text[:40]!r} without control tokens")
    cut = m.start() + 1
    return _encode_plain(tokenizer, text[:cut], ctl) + _encode_plain(tokenizer, text[cut:], ctl)


def _encode_segment(pieces: Sequence[tuple[str, bool]], tokenizer, ctl: _Controls) -> list[int]:
    """One segment given as ``(text, is_data)`` pieces. Without control strings in the data this is exactly
    ``tokenize_with_images(concatenated text)``; otherwise the template's control strings become their ids and
    all other text (template text and data, joined) is tokenised as plain text."""
    text = "".join(t for t, _ in pieces)
    if ctl.pattern is None or not any(is_data and ctl.pattern.search(t) for t, is_data in pieces):
        return tokenize_with_images(text, tokenizer, add_bos=False)
    runs: list[str | int] = [""]  # literal text runs and control ids
    for t, is_data in pieces:
        pos = 0
        if not is_data:
            for m in ctl.pattern.finditer(t):
                runs[-1] += t[pos : m.start()]
                runs += [ctl.by_content[m.group(0)], ""]
                pos = m.end()
        runs[-1] += t[pos:]
    ids: list[int] = []
    for run in runs:
        if isinstance(run, int):
            ids.append(run)
            continue
        for i, chunk in enumerate(run.split(IMAGE_TOKEN)):
            if i:
                ids.append(IMAGE_TOKEN_INDEX)
            ids.extend(_encode_plain(tokenizer, chunk, ctl))
    return ids


def _want_bos(tokenizer, add_bos: bool | None) -> bool:
    if add_bos is None:
        return tokenizer_adds_bos(tokenizer)
    return bool(add_bos) and getattr(tokenizer, "bos_token_id", None) is not None


def tokenize_with_images(text: str, tokenizer, add_bos: bool | None = None) -> list[int]:
    """Token ids of ``text`` with one ``IMAGE_TOKEN_INDEX`` per ``<image>`` tag.

    ``add_bos``: True prepends ``bos_token_id``, False never does, None follows the tokenizer (prepends BOS
    when ``tokenizer(text)`` would). BOS appears at most once: it is not added when the text already starts
    with it (e.g. the literal ``<|begin_of_text|>`` of the llama_3 template on the Llama-3 tokenizer).
    """
    ids: list[int] = []
    for i, chunk in enumerate(text.split(IMAGE_TOKEN)):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(_encode(tokenizer, chunk))
    if _want_bos(tokenizer, add_bos):
        bos = tokenizer.bos_token_id
        if not ids or ids[0] != bos:
            ids.insert(0, bos)
    return ids


def _image_lens(image_token_len: int | Sequence[int], n_images: int) -> list[int]:
    if isinstance(image_token_len, int):
        lens = [image_token_len] * n_images
    else:
        lens = [int(x) for x in image_token_len]
        if len(lens) != n_images:
            raise ValueError(f"image_token_len has {len(lens)} entries but the sample has {n_images} images")
    if any(n < 0 for n in lens):
        raise ValueError(f"image_token_len must be >= 0, got {lens}")
    return lens


def sequence_length(input_ids: Sequence[int], image_token_len: int | Sequence[int] = 1) -> int:
    """Number of LLM positions once each image placeholder is expanded to its block."""
    n_images = sum(1 for t in input_ids if t == IMAGE_TOKEN_INDEX)
    return len(input_ids) - n_images + sum(_image_lens(image_token_len, n_images))


def _truncate(ids: list[int], labels: list[int], max_length: int, lens: list[int]) -> tuple[list[int], list[int]]:
    pos = 0
    img = 0
    for k, t in enumerate(ids):
        size = lens[img] if t == IMAGE_TOKEN_INDEX else 1
        if pos + size > max_length:
            remaining = sum(1 for x in ids[k:] if x == IMAGE_TOKEN_INDEX)
            if remaining:
                needed = len(ids) - len(lens) + sum(lens)
                raise ValueError(
                    f"sample needs {needed} > max_length={max_length} positions and truncating it would "
                    f"{'cut through' if t == IMAGE_TOKEN_INDEX and pos < max_length else 'drop'} image {img} "
                    f"({remaining} image(s) at or after position {pos}); skip this sample or raise max_length"
                )
            return ids[:k], labels[:k]
        pos += size
        if t == IMAGE_TOKEN_INDEX:
            img += 1
    return ids, labels


def tokenize_conversation(
    messages: Sequence[dict[str, Any]],
    template: str | ChatTemplate,
    tokenizer,
    max_length: int | None = None,
    image_token_len: int | Sequence[int] = 1,
    *,
    system: str | None = None,
) -> dict[str, list[int]]:
    """Training sample: ``{"input_ids": [...], "labels": [...]}`` (python lists of equal length).

    Each rendered segment is tokenised on its own and the ids are concatenated, so labels always align.
    Labels are ``IGNORE_INDEX`` on non-trainable segments, on BOS and on image placeholders; assistant replies
    and their end-of-turn token keep their ids.

    ``image_token_len``: LLM positions each image will occupy (an int for all, or one per image in order), so
    ``max_length`` is checked against the real sequence length. Truncation cuts text tokens at the end; if it
    would cut into an image block or drop an image placeholder, a ``ValueError`` is raised instead (the data
    pipeline can skip and count such samples).
    """
    tmpl = get_template(template)
    parts = tmpl.render_parts(messages, system=system, add_generation_prompt=False)
    ids, labels = _tokenize_parts(parts, tmpl, tokenizer)
    if max_length is not None:
        n_images = sum(1 for t in ids if t == IMAGE_TOKEN_INDEX)
        ids, labels = _truncate(ids, labels, max_length, _image_lens(image_token_len, n_images))
    return {"input_ids": ids, "labels": labels}


class PromptIds(tuple):
    """A prompt tokenised already (``tokenize_prompt``'s ids): generation takes it where it takes a prompt and does
    not tokenise again (the server tokenises off its generation thread)."""

    @property
    def num_images(self) -> int:
        return sum(1 for t in self if t == IMAGE_TOKEN_INDEX)


def tokenize_prompt(
    messages: Sequence[dict[str, Any]] | str,
    template: str | ChatTemplate,
    tokenizer,
    system: str | None = None,
) -> list[int]:
    """Inference prompt ids (ending with the template's generation prompt), tokenised segment by segment
    exactly like training. ``messages`` may be a plain string: one user turn."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    tmpl = get_template(template)
    parts = tmpl.render_parts(messages, system=system, add_generation_prompt=True)
    ids, _ = _tokenize_parts(parts, tmpl, tokenizer)
    return ids


def _tokenize_parts(parts, tmpl: ChatTemplate, tokenizer) -> tuple[list[int], list[int]]:
    # the segments of ``render_segments`` (adjacent parts with the same trainable flag), each tokenised on its own
    segments: list[tuple[list[tuple[str, bool]], bool]] = []
    for text, trainable, is_data in parts:
        if segments and segments[-1][1] == trainable:
            segments[-1][0].append((text, is_data))
        else:
            segments.append(([(text, is_data)], trainable))
    ctl = _controls(tokenizer, tmpl)
    ids: list[int] = []
    labels: list[int] = []
    for pieces, trainable in segments:
        seg = _encode_segment(pieces, tokenizer, ctl)
        ids.extend(seg)
        if trainable:
            labels.extend(IGNORE_INDEX if t == IMAGE_TOKEN_INDEX else t for t in seg)
        else:
            labels.extend([IGNORE_INDEX] * len(seg))
    if _want_bos(tokenizer, tmpl.add_bos):
        bos = tokenizer.bos_token_id
        if not ids or ids[0] != bos:
            ids.insert(0, bos)
            labels.insert(0, IGNORE_INDEX)
    return ids, labels
