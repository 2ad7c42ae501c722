"""The documentation's commands stay valid against the CLI's own argparse, in-process: every ``cambrian ...`` shell
line in a code block of README.md and docs/*.md parses (``--help`` included), and every ``--flag`` an inline code
span names exists for its command."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from cambrian.cli.main import COMMANDS, command_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_ENTRY = re.compile(r"^(?:\$ )?(?:\S*/)?(?:cambrian|.*-m cambrian\.cli\.main)\s+(.*)$")


def commands(text: str) -> list[tuple[int, str, bool]]:
    """(line number, arguments after ``cambrian``, whether it is a whole command line) of each use on a page: shell
    lines in code blocks are whole commands, inline code spans may only mention some of a command's flags."""
    out, lines, in_block = [], text.splitlines(), False
    i = 0
    while i < len(lines):
        line, start = lines[i], i + 1
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif in_block:
            while line.rstrip().endswith("\\") and i + 1 < len(lines):  # continued: the shell drops "\\\n" only
                i += 1
                line = line.rstrip()[:-1] + lines[i]
            m = _ENTRY.match(line.strip())
            if m:
                out.append((start, m.group(1), True))
        else:
            for span in re.findall(r"`([^`]+)`", line):
                m = _ENTRY.match(span)
                if m and span.startswith("cambrian "):
                    out.append((start, m.group(1), False))
        i += 1
    return out


def _sub(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)parser the leading words select (``data validate`` -> its parser), and the words after them."""
    while words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or words[0] not in subs[0].choices:
            break
        parser, words = subs[0].choices[words[0]], words[1:]
    return parser, words


def check(args: str, whole: bool) -> str | None:
    """None when ``cambrian ARGS`` is valid (a whole command parses; a mention's flags exist), else the problem."""
    argv = shlex.split(args, comments=True)
    if argv[:1] in (["--help"], ["-h"]):
        return None
    if argv[:1] == ["--debug"]:  # the one option before the command
        argv = argv[1:]
    if not argv or argv[0] not in COMMANDS:
        return f"unknown command {argv[:1]}"
    if not whole:
        parser, rest = _sub(command_parser(argv[0]), argv[1:])
        known = {o for a in parser._actions for o in a.option_strings}
        unknown = [w.split("=")[0] for w in rest if w.startswith("--") and w.split("=")[0] not in known]
        return f"{parser.prog}: no option {unknown}" if unknown else None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            command_parser(argv[0]).parse_args(argv[1:])
    except SystemExit as e:
        return None if e.code == 0 else err.getvalue().strip().splitlines()[-1]
    return None


CASES = [(page, *case) for page in PAGES for case in commands(page.read_text(encoding="utf-8"))]


def test_the_pages_hold_commands():
    assert sum(whole for *_, whole in CASES) > 40 and sum(not whole for *_, whole in CASES) > 20


@pytest.mark.parametrize("page, line, args, whole", CASES, ids=[f"{p.name}:{ln}" for p, ln, _, _ in CASES])
def test_documented_command_is_valid(page, line, args, whole):
    err = check(args, whole)
    assert err is None, f"{page.relative_to(ROOT)}:{line}: cambrian {args}\n  {err}"


def test_the_checker_sees_a_wrong_command():
    assert check("train --no-such-flag x", True) is not None
    assert check("eval run --bench", True) is not None
    assert check("nonsense", True) == "unknown command ['nonsense']"
    assert check("data validate --allow-outside-root", False) is None
    assert "no option ['--allow-inside']" in check("data validate --allow-inside", False)
    page = "```bash\n$ cambrian info tiny \\\n    --json  # a comment\n```\nrun `cambrian chat --model x`.\n"
    assert commands(page) == [(2, "info tiny     --json  # a comment", True), (5, "chat --model x", False)]


def test_relative_links_point_at_files_that_exist():
    """Links between the pages (README -> docs/, docs -> docs) name files of the repository."""
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_site_lists_optional_pages_only_when_they_exist(tmp_path):
    """mkdocs.yml's hook: study / search / security pages (other parts of the project) join the nav when present."""
    import importlib.util

    import yaml

    spec = importlib.util.spec_from_file_location("hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    pages = {p for item in nav for p in item.values()}
    assert pages <= {p.name for p in (ROOT / "docs").glob("*.md")}  # every listed page exists
    (tmp_path / "search.md").write_text("# search\n")
    out = hooks.on_config({"docs_dir": str(tmp_path), "nav": [dict(i) for i in nav]})["nav"]
    titles = [next(iter(i)) for i in out]
    assert "Guided visual search" in titles and "Encoder study" not in titles
    assert titles.index("Guided visual search") == titles.index("Architecture") - 1
