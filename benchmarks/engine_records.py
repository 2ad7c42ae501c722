"""The data engine through this project's server with a local model: the share of work units that give a valid
record, without a response format and with the engine's reply schema, measured in one run.

    python benchmarks/engine_records.py --model runs/demo/checkpoint [--temperature 0]

Builds the engine's test corpus (tests/fixtures/engine_corpus with its images: 2 topics, 2 pages, 6 usable images
and 5 the engine must refuse), serves ``--model`` with the real app (the one ``cambrian serve`` runs, in this
process) and runs ``run_engine`` on it once per ``--llm-response-format`` setting (none, json_object, json_schema)
into fresh folders. A unit is one usable image sent to the LLM; its record is valid when the reply parsed into a
question and an answer. Prints records / units and the failures by reason for each setting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the corpus builder shared with tests/test_data_engine.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = {"Geology": {"Volcanology": ["volcano types"], "Mineralogy": ["quartz mineral"]}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory or preset")
    ap.add_argument("--formats", default="none,json_object,json_schema")
    ap.add_argument("--temperature", type=float, default=0.0, help="the engine's sampling temperature (0 = greedy)")
    ap.add_argument("--max-tokens", type=int, default=512, help="the engine's max_tokens per reply (its default)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch
    from helpers import build_engine_corpus

    from cambrian.cli.chat import load_model
    from cambrian.data.engine import EngineOptions, LocalHTMLSource, OpenAIChat, run_engine
    from cambrian.serve.server import ServerThread
    from cambrian.serve.settings import ServeSettings

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    model = load_model(args.model, "cpu")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_engine_corpus(Path(tmp) / "corpus")
        settings = ServeSettings(model_name="local", max_tokens_cap=args.max_tokens)
        with ServerThread(model, settings) as srv:
            for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
                os.environ.pop("OPENAI_API_KEY", None)
                llm = OpenAIChat(
                    srv.base_url,
                    "local",
                    temperature=args.temperature,
                    max_tokens=args.max_tokens,
                    rpm=0,
                    max_retries=0,
                    timeout=600,
                    response_format=fmt,
                )
                t0 = time.perf_counter()
                out = Path(tmp) / f"out-{fmt}"
                stats = run_engine(
                    TOPICS,
                    LocalHTMLSource(corpus),
                    llm,
                    out,
                    EngineOptions(max_pixels=50_000, max_images_per_section=6),
                    model_name=args.model,
                    progress=False,
                )
                units, records = stats["run"]["images_ok"], stats["run"]["records"]
                llm_fails = {k: v for k, v in stats["failures"].items() if k.startswith(("reply_", "llm_"))}
                sample = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()[:2]]
                results[fmt] = {
                    "units": units,
                    "records": records,
                    "share": records / units if units else 0.0,
                    "llm_failures": llm_fails,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "examples": [r["conversations"] for r in sample],
                }
                print(
                    f"--llm-response-format {fmt:<12} {records}/{units} units gave a valid record "
                    f"({100 * results[fmt]['share']:.0f}%) in {results[fmt]['seconds']:.0f} s; "
                    f"LLM failures: {llm_fails or 'none'}",
                    flush=True,
                )
                for conv in results[fmt]["examples"]:
                    print(f"    e.g. Q: {conv[0]['value'][8:][:100]!r} A: {conv[1]['value'][:100]!r}")
    load1 = os.getloadavg()[0]
    print(f"model {args.model}; temperature {args.temperature}; load average {load0:.2f} before, {load1:.2f} after")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
