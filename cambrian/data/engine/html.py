"""Article HTML -> sections with text and captioned images (docs/official-code.md#data-engine step 3, the official ``wikiflow.py`` rules).

* Sections start at ``h2``-``h6`` headings. The title comes from the heading's ``.mw-headline`` span in the
  pre-2024 MediaWiki markup and from the heading text itself in the current markup (``div.mw-heading > h2``),
  which the official parser does not understand (it yields empty sections on today's pages). Text
  before the first heading is the lead section (title ``""``).
* A section whose title contains "history" is skipped, and so is everything after it until the next ``h2``.
* Text: the section's ``<p>`` paragraphs (citation markers like ``[12]`` removed). Images: ``<figure>`` (caption
  from ``figcaption``) and ``div.thumb`` (caption from ``.thumbcaption``) blocks with an ``<img>``.
* A section is kept when it has at least one image and at least ``min_words`` words (official: more than 50).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_CITATION = re.compile(r"\[(?:\d+|[a-z]|citation needed|note \d+)\]")
_SPACE = re.compile(r"\s+")
HEADINGS = ("h2", "h3", "h4", "h5", "h6")


@dataclass
class ImageRef:
    url: str  # as written in the page (src); resolved by the page source
    caption: str
    alt: str = ""


@dataclass
class Section:
    title: str
    text: str = ""
    images: list[ImageRef] = field(default_factory=list)
    level: int = 2

    @property
    def words(self) -> int:
        return len(self.text.split())


def clean_text(s: str) -> str:
    return _SPACE.sub(" ", _CITATION.sub("", s)).strip()


def page_title(html: str) -> str:
    """``<title>`` (minus a " - Wikipedia"-style suffix), else the first ``<h1>``, else ""."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    t = soup.find("title")
    if t and t.get_text(strip=True):
        return re.split(r"\s+[-–—|]\s+", t.get_text(" ", strip=True))[0]
    h = soup.find("h1")
    return h.get_text(" ", strip=True) if h else ""


def _heading_title(h) -> str:
    span = h.find(class_="mw-headline")
    node = span if span is not None else h
    for junk in node.find_all(class_="mw-editsection"):
        junk.decompose()
    return clean_text(node.get_text(" ", strip=True))


def _image_block(el) -> ImageRef | None:
    img = el.find("img")
    if img is None or not img.get("src"):
        return None
    cap = el.find("figcaption") or el.find(class_="thumbcaption")
    caption = clean_text(cap.get_text(" ", strip=True)) if cap is not None else ""
    return ImageRef(url=str(img["src"]), caption=caption, alt=str(img.get("alt") or ""))


def parse_sections(html: str, min_words: int = 50) -> tuple[list[Section], dict]:
    """(kept sections, counts: sections, skipped_history, too_short, no_images, kept)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for bad in soup(["script", "style", "noscript", "sup"]):
        if bad.name != "sup" or "reference" in (bad.get("class") or []):
            bad.decompose()
    sections = [Section("", level=1)]
    skipping = False
    texts: list[list[str]] = [[]]
    for el in soup.find_all(["h2", "h3", "h4", "h5", "h6", "p", "figure", "div"]):
        name = el.name
        if name in HEADINGS:
            level = int(name[1])
            title = _heading_title(el)
            if level == 2:
                skipping = False
            if "history" in title.lower():
                skipping = True
            sections.append(Section(title, level=level))
            texts.append([])
            if skipping:
                sections[-1].title = None  # marked skipped
            continue
        if sections[-1].title is None:
            continue
        if name == "p":
            if el.find_parent(["figure", "figcaption"]) is not None or el.find_parent(class_="thumb") is not None:
                continue
            texts[-1].append(el.get_text(" ", strip=True))
        elif name == "figure" or (name == "div" and "thumb" in (el.get("class") or [])):
            if name == "div" and el.find_parent(class_="thumb") is not None:
                continue
            ref = _image_block(el)
            if ref is not None:
                sections[-1].images.append(ref)
    counts = {"sections": 0, "skipped_history": 0, "too_short": 0, "no_images": 0, "kept": 0}
    kept = []
    for s, t in zip(sections, texts):
        if s.title is None:
            counts["sections"] += 1
            counts["skipped_history"] += 1
            continue
        s.text = clean_text(" ".join(t))
        if not s.text and not s.images and s.level == 1:
            continue  # no lead
        counts["sections"] += 1
        if not s.images:
            counts["no_images"] += 1
        elif s.words < min_words:
            counts["too_short"] += 1
        else:
            counts["kept"] += 1
            kept.append(s)
    return kept, counts
