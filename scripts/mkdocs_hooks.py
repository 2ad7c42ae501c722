"""mkdocs hook: the pages other parts of the project add join the site's nav when their file exists (before the
architecture page), so `make docs` never points at a missing page and never leaves one out."""

from __future__ import annotations

from pathlib import Path

OPTIONAL = [
    ("Encoder study", "study.md"),
    ("Guided visual search", "search.md"),
    ("Security", "security.md"),
]


def on_config(config, **kwargs):
    docs = Path(config["docs_dir"])
    nav = config["nav"]
    listed = {page for item in nav for page in item.values()}
    at = next((i for i, item in enumerate(nav) if "ARCHITECTURE.md" in item.values()), len(nav))
    for title, page in OPTIONAL:
        if (docs / page).is_file() and page not in listed:
            nav.insert(at, {title: page})
            at += 1
    return config
