"""The data engine run: topics -> pages -> sections with images -> VQA records (docs/official-code.md#data-engine).

Output folder::

    topics.json      {field: {subfield: [topics]}} (generated once by the LLM from --fields, or given)
    data.jsonl       LLaVA records, image paths relative to this folder, each with a ``provenance`` object
                     (key, source, page, page_title, section, caption, image_url, field, subfield, topic, model)
    images/          <sha256 of the PNG, 20 hex>.png (identical images stored once)
    failures.jsonl   one line per failed work unit: key, stage, reason, detail, permanent
    stats.json       counts of this run (pages, sections, images, records, failures by reason) and totals

A work unit is one (page, section, image). It is done when its record is in ``data.jsonl`` or it failed for a
reason that will not change (404, undecodable image, an LLM reply without a usable question); a rerun skips done
units and retries the rest (timeouts, 429/5xx, an unreachable LLM), or everything with ``retry_failed``.
Records are appended and flushed one at a time; a line cut by a crash is removed on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from ...utils.io import atomic_write_json, repair_jsonl, temp_file_beside
from ...utils.log import get_logger
from ...utils.progress import progress_bar
from .html import page_title, parse_sections
from .images import MAX_PIXELS, MAX_SIDE, ImageSkip, normalize_image
from .llm import LLMError
from .replies import QA_SYSTEM, TOPIC_SYSTEM, ReplyError, parse_qa, parse_topics, qa_user_message
from .sources import MAX_IMAGE_BYTES, FetchError, PageSource

log = get_logger("engine")


@dataclass
class EngineOptions:
    pages_per_topic: int = 10  # official: 10 search results per topic
    qa_per_image: int = 1  # official: one question-answer pair per image
    min_words: int = 50  # sections with fewer words are skipped (official: > 50)
    max_images_per_section: int = 4
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_side: int = MAX_SIDE
    max_pixels: int = MAX_PIXELS
    max_samples: int | None = None  # stop after this many new records
    retry_failed: bool = False
    topics_per_subfield: int = 20  # official: 20


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = temp_file_beside(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def unit_key(page_url: str, section: str, image_url: str) -> str:
    return hashlib.sha1(f"{page_url}\n{section}\n{image_url}".encode()).hexdigest()[:20]


def _read_keys(path: Path, permanent_only: bool = False) -> set[str]:
    keys: set[str] = set()
    if not path.exists():
        return keys
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if permanent_only:
                if rec.get("permanent") and rec.get("key"):
                    keys.add(rec["key"])
            else:
                k = (rec.get("provenance") or {}).get("key")
                if k:
                    keys.add(k)
    return keys


def generate_topics(llm, fields: list[tuple[str, list[str]]], n: int, stats: Counter | None = None) -> dict:
    """{field: {subfield: [topics]}}: one LLM call per field line (docs/official-code.md#data-engine step 2)."""
    stats = stats if stats is not None else Counter()
    out: dict[str, dict[str, list[str]]] = {}
    for field, subfields in fields:
        try:
            reply = llm.chat(TOPIC_SYSTEM.format(n=n), f"{field}: {', '.join(subfields)}")
            got = parse_topics(reply, subfields, n)
        except LLMError as e:
            stats[f"topics_{e.reason}"] += 1
            continue
        except ReplyError as e:
            stats[f"topics_reply_{e.reason}"] += 1
            continue
        missing = [s for s in subfields if s not in got]
        stats["topics_subfields_missing"] += len(missing)
        if got:
            out[field] = got
            stats["topics"] += sum(len(v) for v in got.values())
    return out


def run_engine(
    topics: dict,
    source: PageSource,
    llm,
    out_dir: str | os.PathLike,
    options: EngineOptions | None = None,
    *,
    model_name: str = "",
    progress: bool = True,
) -> dict:
    """Work through ``topics`` ({field: {subfield: [topic]}}); returns (and writes) the run's stats."""
    opt = options or EngineOptions()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    data_path, fail_path = out / "data.jsonl", out / "failures.jsonl"
    cut = repair_jsonl(data_path) + repair_jsonl(fail_path)
    if cut:
        log.warning(f"{data_path.parent}: removed an incomplete last line ({cut} bytes) left by an interrupted run")
    done = _read_keys(data_path)
    if not opt.retry_failed:
        done |= _read_keys(fail_path, permanent_only=True)
    c: Counter = Counter()
    fails: Counter = Counter()
    t0 = time.perf_counter()
    units = [(f, sf, t) for f, subs in topics.items() for sf, ts in subs.items() for t in ts]
    seen_pages: set[str] = set()
    bar = progress_bar(total=len(units), desc="engine topics", unit="topic", enabled=progress)
    stop = False
    try:
        with open(data_path, "a", encoding="utf-8") as data_f, open(fail_path, "a", encoding="utf-8") as fail_f:

            def fail(key, stage, reason, detail, permanent, **where):
                fails[reason] += 1
                fail_f.write(
                    json.dumps(
                        {
                            "key": key,
                            "stage": stage,
                            "reason": reason,
                            "detail": detail[:200],
                            "permanent": permanent,
                            **where,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                fail_f.flush()

            for field, subfield, topic in units:
                if stop:
                    break
                bar.update(1)
                c["topics"] += 1
                try:
                    refs = source.search(topic, opt.pages_per_topic)
                except FetchError as e:
                    fails["search_" + e.reason] += 1
                    continue
                c["pages_found"] += len(refs)
                for ref in refs:
                    if stop:
                        break
                    if ref.url in seen_pages:
                        c["pages_repeated"] += 1
                        continue
                    seen_pages.add(ref.url)
                    try:
                        html = source.fetch_page(ref)
                    except FetchError as e:
                        fails["page_" + e.reason] += 1
                        continue
                    c["pages_fetched"] += 1
                    title = ref.title or page_title(html)
                    sections, sc = parse_sections(html, opt.min_words)
                    for k, v in sc.items():
                        c["sections_" + k] += v
                    for sec in sections:
                        if stop:
                            break
                        for img in sec.images[: opt.max_images_per_section]:
                            url = source.image_url(ref, img.url)
                            key = unit_key(ref.url, sec.title, url)
                            where = {"page": ref.url, "section": sec.title, "image_url": url}
                            if key in done:
                                c["units_already_done"] += 1
                                continue
                            done.add(key)  # the same image twice in a section / page: once
                            c["images_seen"] += 1
                            try:
                                raw = source.fetch_image(url, opt.max_image_bytes)
                                png, size, fmt = normalize_image(raw, opt.max_pixels, opt.max_side)
                            except FetchError as e:
                                fail(
                                    key,
                                    "image",
                                    "image_" + e.reason if not e.reason.startswith("image_") else e.reason,
                                    e.detail,
                                    e.permanent,
                                    **where,
                                )
                                continue
                            except ImageSkip as e:
                                fail(key, "image", e.reason, e.detail, True, **where)
                                continue
                            c["images_ok"] += 1
                            c[f"images_from_{fmt}"] += 1
                            name = hashlib.sha256(png).hexdigest()[:20] + ".png"
                            if not (out / "images" / name).exists():
                                _write_bytes(out / "images" / name, png)
                            try:
                                reply = llm.chat(
                                    QA_SYSTEM.format(n=opt.qa_per_image),
                                    qa_user_message(
                                        field, subfield, topic, title, sec.title, img.caption or img.alt, sec.text
                                    ),
                                )
                                pairs = parse_qa(reply, max_pairs=opt.qa_per_image)
                            except LLMError as e:
                                fail(key, "llm", e.reason, e.detail, e.permanent, **where)
                                continue
                            except ReplyError as e:
                                fail(key, "llm", "reply_" + e.reason, e.detail, True, **where)
                                continue
                            conv = []
                            for i, (q, a) in enumerate(pairs):
                                conv += [
                                    {"from": "human", "value": ("<image>\n" if i == 0 else "") + q},
                                    {"from": "gpt", "value": a},
                                ]
                            rec = {
                                "id": f"engine-{key}",
                                "image": f"images/{name}",
                                "conversations": conv,
                                "provenance": {
                                    "key": key,
                                    "source": source.name,
                                    "page": ref.url,
                                    "page_title": title,
                                    "section": sec.title,
                                    "caption": img.caption,
                                    "image_url": url,
                                    "image_size": list(size),
                                    "image_format": fmt,
                                    "field": field,
                                    "subfield": subfield,
                                    "topic": topic,
                                    "model": model_name,
                                },
                            }
                            data_f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                            data_f.flush()
                            c["records"] += 1
                            if opt.max_samples is not None and c["records"] >= opt.max_samples:
                                stop = True
                                break
    finally:
        bar.close()
        stats = _write_stats(out, c, fails, opt, time.perf_counter() - t0)
    log.info(
        f"{c['records']} new records ({stats['totals']['records']} in data.jsonl), {c['pages_fetched']} pages, "
        f"{c['sections_kept']} sections kept, {sum(fails.values())} failures this run "
        f"({', '.join(f'{k} {v}' for k, v in fails.most_common(6)) or 'none'}); {out / 'data.jsonl'}"
    )
    return stats


RUN_COUNTERS = (
    "topics",
    "pages_found",
    "pages_fetched",
    "sections_kept",
    "images_seen",
    "images_ok",
    "records",
    "units_already_done",
)


def _write_stats(out: Path, c: Counter, fails: Counter, opt: EngineOptions, seconds: float) -> dict:
    """This run's counts, plus totals over the folder: records, and units still failed (latest reason per unit)."""
    done = _read_keys(out / "data.jsonl")
    last: dict[str, tuple[str, bool]] = {}
    if (out / "failures.jsonl").exists():
        with open(out / "failures.jsonl", encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                last[r.get("key")] = (r.get("reason", "?"), bool(r.get("permanent")))
    still = [v for k, v in last.items() if k not in done]
    run = {k: 0 for k in RUN_COUNTERS} | dict(c)
    stats = {
        "run": dict(sorted(run.items())),
        "failures": dict(fails.most_common()),
        "seconds": round(seconds, 2),
        "options": asdict(opt),
        "totals": {
            "records": len(done),
            "failed_units": dict(Counter(r for r, _ in still).most_common()),
            "permanent_failures": sum(p for _, p in still),
        },
    }
    atomic_write_json(out / "stats.json", stats)
    return stats
