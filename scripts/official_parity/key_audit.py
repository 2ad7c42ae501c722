"""Write docs/release-keys.md: the key audit of every released family's config (run with this project's .venv).

.venv/bin/python scripts/official_parity/key_audit.py
"""

from __future__ import annotations

import json
from pathlib import Path

from cambrian.models.official.config import CAMBRIAN_KEYS
from cambrian.models.official.llm_keys import audit_markdown

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ["cambrian-8b", "cambrian-13b", "cambrian-34b", "cambrian-phi3-3b"]


def configs() -> dict:
    d = ROOT / "tests" / "fixtures" / "official_configs"
    return {name: json.loads((d / f"{name}.json").read_text(encoding="utf-8")) for name in FAMILIES}


def main() -> None:
    out = ROOT / "docs" / "release-keys.md"
    out.write_text(audit_markdown(configs(), CAMBRIAN_KEYS), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
