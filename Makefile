# The two commands of the README. Both create or reuse .venv first (scripts/setup_env.sh).
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo demo-quick test test-fast lint format docs

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) -m cambrian.cli.main demo $(ARGS)

demo-quick: setup
	$(PY) -m cambrian.cli.main demo --quick $(ARGS)

test: setup lint
	$(PY) -m pytest -n 2 --dist loadgroup --durations=15 $(PYTEST_ARGS)

# ruff: lint rules and formatting from pyproject.toml ([tool.ruff]); `make format` applies both
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

test-fast: setup
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

# the documentation site (mkdocs-material, the `docs` extra, installed on first use) into site/; not part of `make test`
docs: setup
	@$(PY) -c "import mkdocs, material" 2>/dev/null || .venv/bin/pip install -q -c constraints.txt -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
