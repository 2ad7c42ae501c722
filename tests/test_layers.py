"""The import layers of docs/ARCHITECTURE.md, checked on the source: a module may import its own layer and the
layers below it, never one above (function-level imports count too: a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "cambrian"

# lowest first; a package not listed here is an error (new packages must be placed)
LAYERS = [
    {"constants", "errors", "registry", "paths", "utils", "typed", "config", "prompts", "hub", "presets"},
    {"models"},
    {"data"},
    {"train"},
    {"eval", "cvbench"},
    {"search"},
    {"serve"},
    {"demo"},
    {"cli"},
]
# eval and cvbench share a layer: cvbench registers its benchmark with eval's registry and eval's report reads
# CV-Bench's scorer; neither may import train/demo/cli.
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
TORCH_FREE = {"constants", "errors", "registry", "paths", "typed", "config", "prompts", "presets", "hub"}


def top(module: Path) -> str:
    rel = module.relative_to(PKG)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted module) for every import in ``path`` that targets the cambrian package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg_parts = ["cambrian", *path.relative_to(PKG).with_suffix("").parts]
    if path.name == "__init__.py":
        pkg_parts = pkg_parts[:-1]
    else:
        pkg_parts = pkg_parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] if node.module or node.level == 0 else [f"{mod}.{a.name}" for a in node.names]
            if not node.module and node.level:
                names = [f"{mod}.{a.name}" for a in node.names]
            out += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return [(ln, m) for ln, m in out if m == "cambrian" or m.startswith("cambrian.")]


def violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        src_top = top(path)
        if src_top in ("__init__", "__main__"):
            continue
        if src_top not in RANK:
            bad.append(f"{path.relative_to(PKG)}: package {src_top!r} is not placed in a layer (tests/test_layers.py)")
            continue
        for ln, mod in imported(path):
            parts = mod.split(".")
            if len(parts) < 2:
                continue
            dst = parts[1]
            if dst not in RANK:
                bad.append(f"{path.relative_to(PKG)}:{ln} imports {mod}: {dst!r} is not placed in a layer")
            elif RANK[dst] > RANK[src_top]:
                bad.append(f"{path.relative_to(PKG)}:{ln} ({src_top}) imports {mod} ({dst}, a higher layer)")
    return bad


def test_no_module_imports_a_higher_layer():
    bad = violations()
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """A planted upward import (models -> train) is reported: the test above can fail."""
    fake = tmp_path / "cambrian"
    (fake / "models").mkdir(parents=True)
    (fake / "train").mkdir()
    (fake / "models" / "m.py").write_text("def f():\n    from ..train.trainer import Trainer\n")
    (fake / "train" / "trainer.py").write_text("from ..models.m import f\n")
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    found = violations()
    assert found == ["models/m.py:2 (models) imports cambrian.train.trainer (train, a higher layer)"]


@pytest.mark.parametrize("name", sorted(TORCH_FREE))
def test_low_layers_do_not_import_torch(name):
    """The config layer (configs, presets, prompts) is data: importing it and resolving a preset loads no torch."""
    import subprocess
    import sys

    code = (
        f"import sys, importlib; importlib.import_module('cambrian.{name}'); "
        "from cambrian.presets.models import resolve_model_config; resolve_model_config('cambrian-8b'); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    if not (PKG / f"{name}.py").exists() and not (PKG / name).is_dir():
        pytest.fail(f"cambrian.{name} is listed as torch-free but does not exist")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "hf, tf, off",
    [
        (None, None, False),
        ("1", None, True),
        ("TRUE", None, True),
        ("0", "1", False),
        (None, "yes", True),
        ("", "on", True),
        ("no", None, False),
    ],
)
def test_one_offline_rule_the_same_as_huggingface_hub(monkeypatch, hf, tf, off):
    """``cambrian.hub.offline`` is the single hub switch; it reads the variables the way huggingface_hub does."""
    from cambrian import hub

    for var, val in (("HF_HUB_OFFLINE", hf), ("TRANSFORMERS_OFFLINE", tf)):
        if val is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, val)
    assert hub.offline() is off
    assert hub.hub_kwargs() == {"local_files_only": off, "trust_remote_code": False}


def test_nothing_else_reads_the_offline_variables():
    """No second, disagreeing offline check: only cambrian/hub.py reads HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE."""
    readers = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if "OFFLINE" in p.read_text(encoding="utf-8")
        and p.name != "hub.py"
        and any(v in p.read_text(encoding="utf-8") for v in ('"HF_HUB_OFFLINE"', '"TRANSFORMERS_OFFLINE"'))
    ]
    assert readers == []


def test_library_code_does_not_print():
    """Only the command line prints; library modules log (``cambrian.utils.log``), so embedding programs decide."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "cli" or rel == Path("utils/log.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{rel}:{node.lineno}")
    assert not found, found


@pytest.mark.slow
def test_a_wheel_ships_the_presets_and_recipes(tmp_path):
    """``pip install cambrian`` (a wheel, no checkout) has every model preset and recipe, and no test code."""
    import subprocess
    import sys
    import zipfile

    root = PKG.parent
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(root),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("cambrian-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"cambrian/presets/{p.parent.name}/{p.name}" for p in (PKG / "presets").glob("*/*.yaml")}
    assert len(shipped) >= 15 and shipped <= names
    assert not any(n.startswith(("tests/", ".cache/")) for n in names)


def test_no_citations_of_documents_outside_the_repository():
    """Comments cite docs/official-code.md (in the repository), not section numbers of reference files that are not."""
    found = [
        f"{p.relative_to(PKG)}:{i}"
        for p in sorted(PKG.rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "§" in line
    ]
    assert not found, found
