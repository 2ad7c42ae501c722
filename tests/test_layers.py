"""The import layers of docs/ARCHITECTURE.md, checked on the source: a module may import its own layer and the
layers below it, never one above (function-level imports count too: a lazy import is still a dependency); train/ and
serve/ use the model contracts only; the config layer loads no torch; nothing unpickles, prints or cites documents
outside the repository."""

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
    {"study"},
    {"cli"},
]
# study sits above demo (it builds its nano data with the demo's builders, so it follows the demo recipe) and
# drives train/ and eval/ in-process; only cli/ is above it.
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
    pkg_parts = ["cambrian", *path.relative_to(PKG).with_suffix("").parts][:-1]  # the package holding the module
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


# What train/ and serve/ may import from the model layer: the contracts (the trainer asks the model what trains, its
# lr groups and FSDP units; the server uses the generation contract), never a concrete model. models.builder: the
# memory guard (check_memory) only.
MAY_IMPORT = {
    "train": {"cambrian.models.vlm", "cambrian.models.training", "cambrian.models.builder"},
    "serve": {"cambrian.models.vlm", "cambrian.models.generate"},
}
CONCRETE_MODELS = {"CambrianModel", "ToyVLM"}


def parameter_name_parts() -> set[str]:
    """Every part of a parameter or module name of the two VLM implementations (``connector``, ``vision_sampler``,
    ``mm_projector``, ``bridge``, ``layers``, ...; numbered suffixes dropped) and peft's adapter names."""
    import re

    from helpers import make_vlm

    parts = {"lora_A", "lora_B", "lora"}
    for kind in ("cambrian", "toy"):
        model = make_vlm(kind)
        for name, _ in [*model.named_parameters(), *model.named_modules()]:
            parts |= {re.sub(r"_\d+$", "", p) for p in name.split(".") if p and not p.isdigit()}
    return parts


def _name_parts(text: str) -> list[str]:
    import re

    return [re.sub(r"_\d+$", "", p) for p in text.strip("*").strip(".").split(".") if p]


def _mentions_class_name(node) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "__name__" for n in ast.walk(node))


def contract_violations(parts: set[str]) -> list[str]:
    """train/ and serve/ use a model through its contracts: they import no concrete model and do not name one, and
    they select nothing by parameter name (a literal name part tested with ``startswith`` / ``endswith`` / ``in``)
    or by class name (``__name__`` compared or tested)."""
    bad = []
    for top_name, allowed in MAY_IMPORT.items():
        for path in sorted((PKG / top_name).rglob("*.py")):
            rel = path.relative_to(PKG)
            for ln, mod in imported(path):
                if mod.startswith("cambrian.models") and mod not in allowed:
                    bad.append(f"{rel}:{ln} imports {mod} ({top_name}/ may use only {sorted(allowed)} of the models)")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                lit: list[str] = []
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    if node.func.attr in ("startswith", "endswith"):
                        if _mentions_class_name(node.func.value):
                            bad.append(f"{rel}:{node.lineno} selects by class name")
                        for a in node.args:
                            elts = a.elts if isinstance(a, ast.Tuple) else [a]
                            lit += [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                elif isinstance(node, ast.Compare):
                    if any(_mentions_class_name(x) for x in (node.left, *node.comparators)):
                        bad.append(f"{rel}:{node.lineno} selects by class name")
                    if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                        if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                            lit.append(node.left.value)
                elif isinstance(node, ast.Name) and node.id in CONCRETE_MODELS:
                    bad.append(f"{rel}:{node.lineno} names the concrete model {node.id}")
                for text in lit:
                    if any(p in parts for p in _name_parts(text)):
                        bad.append(f"{rel}:{node.lineno} reads the parameter name part {text!r}")
    return bad


@pytest.fixture(scope="module")
def name_parts():
    return parameter_name_parts()


def test_train_and_serve_use_the_model_contracts_only(name_parts):
    bad = contract_violations(name_parts)
    assert not bad, "\n".join(bad)


def test_the_contract_checker_sees_planted_lines(tmp_path, monkeypatch, name_parts):
    """Each kind of guess the model's declarations replaced, planted in a fake train/ and serve/, is reported."""
    fake = tmp_path / "cambrian"
    (fake / "train").mkdir(parents=True)
    (fake / "serve").mkdir()
    (fake / "train" / "freeze.py").write_text(
        "def policy(model):\n"
        "    return [p for n, p in model.named_parameters() if n.startswith(('connector.', 'llm.'))]\n"
        "def lr(name):\n"
        "    return 'sva' if 'vision_sampler' in name else 'lr'\n"
        "def units(model):\n"
        "    return {type(m) for m in model.modules() if type(m).__name__.endswith('DecoderLayer')}\n"
    )
    (fake / "serve" / "app.py").write_text(
        "from ..models.cambrian_model import CambrianModel\n"
        "def limit(model):\n"
        "    assert isinstance(model, CambrianModel)\n"
    )
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    found = contract_violations(name_parts)
    assert sorted(found) == sorted(
        [
            "train/freeze.py:2 reads the parameter name part 'connector.'",
            "train/freeze.py:2 reads the parameter name part 'llm.'",
            "train/freeze.py:4 reads the parameter name part 'vision_sampler'",
            "train/freeze.py:6 selects by class name",
            "serve/app.py:1 imports cambrian.models.cambrian_model (serve/ may use only "
            "['cambrian.models.generate', 'cambrian.models.vlm'] of the models)",
            "serve/app.py:3 names the concrete model CambrianModel",
        ]
    ), found


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


def test_low_layers_do_not_import_torch():
    """The config layer (configs, presets, prompts) is data: importing all of it and resolving a preset loads no
    torch (one interpreter; when it does, each module is tried alone to name the culprit)."""
    import subprocess
    import sys

    missing = [n for n in sorted(TORCH_FREE) if not (PKG / f"{n}.py").exists() and not (PKG / n).is_dir()]
    assert not missing, f"listed as torch-free but missing: {missing}"

    def heavy_modules_after(names) -> str:
        code = (
            f"import sys, importlib; [importlib.import_module('cambrian.' + n) for n in {sorted(names)!r}]; "
            "from cambrian.presets.models import resolve_model_config; resolve_model_config('cambrian-8b'); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    if heavy_modules_after(TORCH_FREE) != "[]":
        culprits = {n: heavy_modules_after([n]) for n in sorted(TORCH_FREE)}
        pytest.fail(f"the config layer imports torch / transformers: {culprits}")


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
    """Comments cite docs/official-code.md (in the repository), not section numbers of reference files that are not:
    in the code and in the preset and recipe YAMLs."""
    files = sorted([*PKG.rglob("*.py"), *(PKG / "presets").rglob("*.yaml")])
    found = [
        f"{p.relative_to(PKG)}:{i}"
        for p in files
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "§" in line or "the issue's" in line
    ]
    assert not found, found


def test_citations_of_the_official_code_notes_name_existing_sections():
    """Every ``docs/official-code.md#anchor`` in the code, the presets and the docs names a section of that page."""
    import re

    docs = PKG.parent / "docs"
    headings = re.findall(r"^#+ (.+)$", (docs / "official-code.md").read_text(encoding="utf-8"), re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    files = [*PKG.rglob("*.py"), *(PKG / "presets").rglob("*.yaml"), *docs.rglob("*.md"), PKG.parent / "README.md"]
    cited = {
        (f"{p.relative_to(PKG.parent)}", a)
        for p in files
        for a in re.findall(r"official-code\.md#([\w-]+)", p.read_text(encoding="utf-8"))
    }
    assert cited and not [c for c in cited if c[1] not in anchors], sorted(c for c in cited if c[1] not in anchors)
