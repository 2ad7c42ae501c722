"""Adapters (CambrianEvalModel prompt building; OpenAIChatModel against a stub HTTP server on 127.0.0.1) and the
`cambrian eval` CLI end to end (run through the OpenAI adapter, score, report)."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image
from test_eval_benchmarks import pope

from cambrian.cli.main import main
from cambrian.eval.adapters import CambrianEvalModel, OpenAIChatModel, apply_stop, load_eval_model
from cambrian.eval.api import GenerationOptions, GenerationRequest, list_benchmarks


class _Handler(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *a):  # quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        content = body["messages"][-1]["content"]
        images = [c for c in content if c["type"] == "image_url"]
        for c in images:
            url = c["image_url"]["url"]
            assert url.startswith("data:image/png;base64,")
            Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).verify()
        text = [c for c in content if c["type"] == "text"][0]["text"]
        assert content[-1]["type"] == "text"  # images first, then the text
        answer = ("Yes" if "dog" in text or "bus" in text else "No") + f" ({len(images)} img) STOP tail"
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def stub_server():
    _Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)


def test_openai_adapter_against_stub(stub_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    m = OpenAIChatModel(stub_server + "/v1", "stub-model", timeout=10, retries=0)
    im = Image.new("RGB", (5, 4), (9, 9, 9))
    reqs = [
        GenerationRequest("Is there a dog?", [im]),
        GenerationRequest("Is there a cat?", []),
        GenerationRequest("Is there a bus?", [im, im]),
    ]
    outs = m.generate(reqs, GenerationOptions(max_new_tokens=7, stop=[" STOP"]))
    assert outs == ["Yes (1 img)", "No (0 img)", "Yes (2 img)"]  # request order kept, stop applied
    assert {s["path"] for s in _Handler.seen} == {"/v1/chat/completions"}
    body = _Handler.seen[0]["body"]
    assert body["model"] == "stub-model" and body["max_tokens"] == 7 and body["temperature"] == 0.0
    assert body["stop"] == [" STOP"] and _Handler.seen[0]["auth"] == "Bearer sk-test"
    assert OpenAIChatModel("http://h:1", "m").url == "http://h:1/v1/chat/completions"


def test_openai_adapter_reports_unreachable_server():
    m = OpenAIChatModel("http://127.0.0.1:9", "m", timeout=2, retries=0)
    with pytest.raises(RuntimeError, match="failed"):
        m.generate([GenerationRequest("hi")], GenerationOptions())


def test_cambrian_adapter_builds_image_first_prompts():
    class Fake:
        def generate_text(self, texts, images, max_new_tokens=128, system=None):
            self.args = (texts, images, max_new_tokens, system)
            return [f" out{k}\n\nUSER: more" for k in range(len(texts))]

    fake = Fake()
    em = CambrianEvalModel(fake, name="x")
    im = Image.new("RGB", (2, 2))
    outs = em.generate(
        [GenerationRequest("Q1", [im]), GenerationRequest("Q2", []), GenerationRequest("Q3", [im, im])],
        GenerationOptions(max_new_tokens=9, stop=["USER:"]),
    )
    assert fake.args[0] == ["<image>\nQ1", "Q2", "<image>\n<image>\nQ3"]
    assert [len(x) for x in fake.args[1]] == [1, 0, 2] and fake.args[2] == 9
    assert outs == ["out0", "out1", "out2"]
    with pytest.raises(ValueError):
        em.generate([GenerationRequest("Q")], GenerationOptions(temperature=0.7))
    assert apply_stop("abc", ["x"]) == "abc"


def test_model_spec_parsing():
    m = load_eval_model("openai:http://127.0.0.1:8000/v1#cambrian-8b")
    assert isinstance(m, OpenAIChatModel) and m.name == "cambrian-8b"
    assert m.url == "http://127.0.0.1:8000/v1/chat/completions"
    with pytest.raises(ValueError):
        load_eval_model("openai:http://x")


def test_cli_run_score_report_end_to_end(stub_server, tmp_path, capsys):
    data = tmp_path / "data"
    pope(data)
    spec = f"openai:{stub_server}#stub"
    for vision, out in (("enabled", "on"), ("disabled", "off")):
        rc = main(
            [
                "eval",
                "run",
                "--model",
                spec,
                "--bench",
                "pope",
                "--data-root",
                str(data),
                "--out",
                str(tmp_path / out),
                "--vision",
                vision,
                "--batch-size",
                "3",
                "--no-progress",
            ]
        )
        assert rc == 0
    # the stub says yes to dog/bus questions: rows are yes,no,no,yes -> all correct
    on = json.loads((tmp_path / "on" / "pope" / "metrics.json").read_text())
    assert on["metrics"]["accuracy"] == 1.0
    preds = [
        json.loads(ln)["prediction"]
        for ln in (tmp_path / "off" / "pope" / "predictions.jsonl").read_text().splitlines()
    ]
    assert all("(0 img)" in p for p in preds)  # vision disabled: no image sent
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "score",
                "--bench",
                "pope",
                "--data",
                str(data / "pope"),
                "--predictions",
                str(tmp_path / "on" / "pope" / "predictions.jsonl"),
                "--json",
            ]
        )
        == 0
    )
    scored = json.loads(capsys.readouterr().out)
    assert scored["metrics"]["accuracy"] == 1.0 and scored["primary_metric"] == "accuracy"
    assert main(["eval", "report", str(tmp_path / "on"), str(tmp_path / "off"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "| stub | " in out and "| stub (vision disabled) |" in out and "POPE" in out
    assert (tmp_path / "rep" / "table.csv").exists() and (tmp_path / "rep" / "vision.png").exists()


def test_cli_list_and_bad_args(capsys):
    assert main(["eval", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_benchmarks():
        assert name in out
    assert main(["eval", "score", "--bench", "nope", "--data", "x", "--predictions", "y"]) == 2
    assert "valid benchmark ids" in capsys.readouterr().err
