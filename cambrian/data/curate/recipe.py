"""The curation recipe: a YAML file, typed and checked (unknown keys get a did-you-mean; every error names the field).

```yaml
sources:                      # LLaVA-format JSON / JSONL files; paths relative to this file's folder
  - {name: vqav2, path: vqav2.jsonl, images: images/coco, category: general}
  - {name: chartqa, path: chartqa.jsonl, images: images/chartqa, category: ocr, system_prompt: number_or_phrase}
  - {name: mathinstruct, path: mathinstruct.jsonl, category: language,
     system_prompt: {prompt: reasoning, when: always}}
cap: 350000                   # per-source cap t (null: no cap); default 350000
ratios: cambrian-7m           # or {general: 34.52, ocr: 27.22, ...}; optional
total: null                   # records to keep at those ratios (default: as many as the capped pool allows)
system_prompts: true          # response-format instructions for short answers (default true)
short_answer_words: 3         # "short" = at most this many words
dedup: content                # content (conversation + image bytes) | path (conversation + image path) | off
image_root: images            # the output's image paths are relative to this folder (default: the sources'
                              # common image folder)
seed: 0
```

A source's ``system_prompt``: ``auto`` (default: by question type), ``off``, a ``RESPONSE_FORMATS`` name (that
instruction for every short answer of the source), or ``{prompt: NAME, when: short|always}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...registry import Registry
from ...typed import (
    Bool,
    Choice,
    ConfigError,
    Int,
    OptInt,
    OptStr,
    Str,
    build,
    did_you_mean,
    read_mapping,
    typed_config,
)
from ..mixing import CAMBRIAN_7M_RATIOS, DEFAULT_CAP
from .prompts import RESPONSE_FORMATS

DEDUP_MODES = ("content", "path", "off")
PROMPT_WHEN = ("short", "always")

# named category-ratio tables (percent or any scale)
RATIO_PRESETS: Registry[dict] = Registry("ratio preset")
RATIO_PRESETS.register(
    "cambrian-7m", dict(CAMBRIAN_7M_RATIOS)
)  # official README "optimal ratio" (docs/official-code.md#data-mix)


# ---- the file's schema (cambrian.typed: types, ranges, unknown keys with a did-you-mean) -------------------------
@typed_config
class SourceEntry:
    path: Str
    name: OptStr = None
    images: OptStr = None
    category: Str = "general"
    system_prompt: Any = "auto"  # auto | off | a RESPONSE_FORMATS name | {prompt, when}: checked below
    allow_outside_root: Bool = False


@typed_config
class PromptEntry:
    prompt: Str
    when: Choice(*PROMPT_WHEN) = "short"


@typed_config
class CurationRecipe:
    sources: list[SourceEntry]
    cap: OptInt(ge=1, none_means="no cap") = DEFAULT_CAP
    ratios: Any = None  # a RATIO_PRESETS name or {category: weight}: checked below
    total: OptInt(ge=1) = None
    system_prompts: Bool = True
    short_answer_words: Int(ge=1) = 3
    dedup: Choice(*DEDUP_MODES, False) = "content"
    image_root: OptStr = None
    seed: Int(ge=0) = 0


@dataclass(frozen=True)
class PromptRule:
    mode: str = "auto"  # auto | off | fixed
    prompt: str | None = None  # RESPONSE_FORMATS key (fixed mode)
    when: str = "short"  # short | always (fixed mode)

    def to_dict(self):
        if self.mode == "fixed":
            return {"prompt": self.prompt, "when": self.when}
        return self.mode


@dataclass
class SourceRecipe:
    name: str
    path: Path
    images: Path  # folder the record's relative image paths resolve against (default: the file's folder)
    category: str = "general"
    system_prompt: PromptRule = field(default_factory=PromptRule)
    allow_outside_root: bool = False


@dataclass
class CurateRecipe:
    sources: list[SourceRecipe]
    cap: int | None = DEFAULT_CAP
    ratios: dict[str, float] | None = None
    ratios_name: str | None = None
    total: int | None = None
    system_prompts: bool = True
    short_answer_words: int = 3
    dedup: str = "content"
    image_root: Path | None = None
    seed: int = 0
    path: Path | None = None  # the recipe file (None: built in Python)

    def to_dict(self) -> dict:
        return {
            "sources": [
                {
                    "name": s.name,
                    "path": str(s.path),
                    "images": str(s.images),
                    "category": s.category,
                    "system_prompt": s.system_prompt.to_dict(),
                    "allow_outside_root": s.allow_outside_root,
                }
                for s in self.sources
            ],
            "cap": self.cap,
            "ratios": self.ratios_name or self.ratios,
            "total": self.total,
            "system_prompts": self.system_prompts,
            "short_answer_words": self.short_answer_words,
            "dedup": self.dedup,
            "image_root": str(self.image_root) if self.image_root else None,
            "seed": self.seed,
        }

    def output_image_root(self) -> Path:
        """The folder the output's image paths are relative to: ``image_root`` or the sources' common folder."""
        if self.image_root is not None:
            return self.image_root
        roots = [os.path.abspath(s.images) for s in self.sources]
        return Path(os.path.commonpath(roots)) if roots else Path(".")


def _prompt_rule(name: str, value) -> PromptRule:
    if value is None or value is True or value == "auto":
        return PromptRule("auto")
    if value is False or value == "off":
        return PromptRule("off")
    if isinstance(value, str):
        value = {"prompt": value}
    try:
        e = build(PromptEntry, value)
    except ConfigError as err:
        raise ConfigError(f"{name}: {err}") from None
    if e.prompt not in RESPONSE_FORMATS:
        raise ConfigError(
            f"{name}: unknown response format {e.prompt!r}{did_you_mean(e.prompt, RESPONSE_FORMATS)}; or auto / off"
        )
    return PromptRule("fixed", e.prompt, e.when)


def _resolve(p: str, folder: Path | None) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() or folder is None else folder / q


def _ratios(r) -> tuple[dict | None, str | None]:
    if r is None:
        return None, None
    if isinstance(r, str):
        if r not in RATIO_PRESETS:
            raise ConfigError(
                f"ratios: unknown preset {r!r}{did_you_mean(r, RATIO_PRESETS.names())}; or a {{category: weight}} map"
            )
        return dict(RATIO_PRESETS.get(r)), r
    if not isinstance(r, dict) or not r:
        raise ConfigError(
            f"ratios must be a preset name ({', '.join(RATIO_PRESETS.names())}) or a non-empty "
            f"{{category: weight}} map, got {r!r}"
        )
    from ...typed import Num, check_value

    ratios = {str(k): check_value(Num(ge=0), v, f"ratios.{k}") for k, v in r.items()}
    if sum(ratios.values()) <= 0:
        raise ConfigError("ratios must give some category a positive weight")
    return ratios, None


def recipe_from_dict(data: dict, folder: Path | None = None, where: str = "recipe") -> CurateRecipe:
    """Check a recipe mapping; relative paths resolve against ``folder`` (the recipe file's folder)."""
    try:
        return _from_dict(data, folder)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _from_dict(data: dict, folder: Path | None) -> CurateRecipe:
    if isinstance(data, dict) and isinstance(data.get("sources"), list):  # "sources: [a.jsonl]" shorthand
        data = dict(data, sources=[{"path": e} if isinstance(e, str) else e for e in data["sources"]])
    f = build(CurationRecipe, data)
    if not f.sources:
        raise ConfigError("sources must be a non-empty list of {name, path, images, category} entries")
    sources: list[SourceRecipe] = []
    for i, e in enumerate(f.sources):
        path = _resolve(e.path, folder)
        if not path.is_file():
            raise ConfigError(f"sources[{i}].path: no such file: {path}")
        name = e.name or path.stem
        if any(s.name == name for s in sources):
            raise ConfigError(f"sources[{i}].name: {name!r} is used twice (names must be unique)")
        sources.append(
            SourceRecipe(
                name=name,
                path=path,
                images=_resolve(e.images, folder) if e.images is not None else path.parent,
                category=e.category,
                system_prompt=_prompt_rule(f"sources[{i}].system_prompt", e.system_prompt),
                allow_outside_root=e.allow_outside_root,
            )
        )
    ratios, ratios_name = _ratios(f.ratios)
    if ratios is not None:
        for i, s in enumerate(sources):
            if s.category not in ratios:
                raise ConfigError(
                    f"sources[{i}].category {s.category!r} has no ratio, so the source would be "
                    f"dropped whole{did_you_mean(s.category, ratios)}"
                )
        cats = {s.category for s in sources}
        empty = sorted(c for c, w in ratios.items() if w > 0 and c not in cats)
        if empty:
            raise ConfigError(
                f"ratios give weight to categories without a source: {', '.join(empty)} (sources' "
                f"categories: {', '.join(sorted(cats))}); write a ratios map for the categories you have"
            )
    if f.total is not None and ratios is None:
        raise ConfigError("total needs ratios (without ratios every source keeps min(size, cap))")
    image_root = None
    if f.image_root is not None:
        image_root = _resolve(f.image_root, folder)
        root = os.path.abspath(image_root)
        for i, s in enumerate(sources):
            if not Path(os.path.abspath(s.images)).is_relative_to(root):
                raise ConfigError(
                    f"sources[{i}].images ({s.images}) is outside image_root ({image_root}); the "
                    "output's image paths must stay under one folder"
                )
    return CurateRecipe(
        sources=sources,
        cap=f.cap,
        ratios=ratios,
        ratios_name=ratios_name,
        total=f.total,
        system_prompts=f.system_prompts,
        short_answer_words=f.short_answer_words,
        dedup="off" if f.dedup is False else f.dedup,
        image_root=image_root,
        seed=f.seed,
    )


def load_recipe(path: str | os.PathLike) -> CurateRecipe:
    """Read and check a recipe file; its relative paths resolve against the file's folder."""
    path = Path(path)
    rec = recipe_from_dict(read_mapping(path), folder=path.parent, where=str(path))
    rec.path = path
    return rec
