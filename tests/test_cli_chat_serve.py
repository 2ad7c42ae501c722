"""`cambrian chat` as a multi-turn loop (history, /image, /reset, streaming, sampling flags, --system), the
Conversation it is built on, and `cambrian serve` from the command line (flag errors before the model loads, a busy
port, a real process answering the openai client and stopping on Ctrl-C)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import sensitive_tiny_model
from PIL import Image

import cambrian.cli.chat as chat_cli
from cambrian.cli.main import main
from cambrian.models.conversation import Conversation
from cambrian.models.generate import SamplingParams


@pytest.fixture(scope="module")
def model():
    return sensitive_tiny_model()


class Recorder:
    """The model, recording what each streamed answer was asked."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def stream_text(self, messages, images=(), **kw):
        self.calls.append(([dict(m) for m in messages], list(images), kw))
        yield from self.model.stream_text(messages, images, **kw)


def test_conversation_keeps_history_and_images_in_their_turns(model):
    red, blue = Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 255))
    conv = Conversation(system="Be brief.")
    conv.attach(red)
    a1 = "".join(conv.stream_reply(model, "What is it?", sampling=SamplingParams(max_new_tokens=6)))
    a2 = "".join(conv.stream_reply(model, "Compare.", images=[blue], sampling=SamplingParams(max_new_tokens=6)))
    msgs, ims = conv.prompt()
    assert msgs == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image>\nWhat is it?"},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": "<image>\nCompare."},
        {"role": "assistant", "content": a2},
    ]
    assert ims == [red, blue]
    assert a2 == model.generate_text([msgs[:4]], [[red, blue]], max_new_tokens=6)[0]
    # stopping early drops the question again
    g = conv.stream_reply(model, "More?", images=[red], sampling=SamplingParams(max_new_tokens=6))
    next(g, None)
    g.close()
    assert conv.prompt() == (msgs, [red, blue])
    with pytest.raises(ValueError, match="2 <image> tags but 1 images"):
        conv.add_user("<image><image> x", [red])
    conv.reset()
    assert conv.prompt() == ([{"role": "system", "content": "Be brief."}], [])


def test_chat_loop_history_image_reset_and_streaming(model, tmp_path, monkeypatch, capsys):
    rec = Recorder(model)
    monkeypatch.setattr(chat_cli, "load_model", lambda name, device=None, towers=None: rec)
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(first)
    Image.new("RGB", (40, 30), (0, 255, 0)).save(second)
    lines = [
        "What is it?",
        f"/image {second}",
        "/image missing.png",
        "And this one?",
        "",
        "/reset",
        "again",
        "/bogus",
        "/quit",
        "never asked",
    ]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert (
        main(
            [
                "chat",
                "--model",
                "tiny",
                "--image",
                str(first),
                "--max-new-tokens",
                "6",
                "--system",
                "S",
                "--temperature",
                "0.7",
                "--top-k",
                "5",
                "--seed",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert [len(c[0]) for c in rec.calls] == [2, 4, 2]  # system + turns: history kept, then reset
    (m1, i1, kw1), (m2, i2, _), (m3, i3, _) = rec.calls
    assert m1[0] == {"role": "system", "content": "S"} and m1[1]["content"] == "<image>\nWhat is it?" and len(i1) == 1
    assert m2[3]["content"] == "<image>\nAnd this one?" and len(i2) == 2  # the first image is not re-sent as new
    assert m3[1]["content"] == "again" and i3 == []
    sp = kw1["sampling"]
    assert (sp.temperature, sp.top_k, sp.seed, sp.max_new_tokens) == (0.7, 5, 3, 6)
    answers = out.splitlines()
    assert len(answers) == 3 and answers[0] == model.generate_text([m1], [i1], sampling=sp)[0]
    assert m2[2] == {"role": "assistant", "content": answers[0]}
    assert "error: image file not found: missing.png" in err and "error: unknown command /bogus" in err
    assert err.count("warning:") == 1  # the bare preset


def test_chat_prompt_once_streams_and_bad_sampling_is_one_error_line(model, monkeypatch, capsys):
    monkeypatch.setattr(chat_cli, "load_model", lambda name, device=None, towers=None: model)
    assert main(["chat", "--model", "tiny", "--prompt", "hello there", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out == model.generate_text(["hello there"], max_new_tokens=8)[0] + "\n"
    assert main(["chat", "--model", "tiny", "--prompt", "hi", "--top-p", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: sampling: top_p must be > 0 and <= 1, got 0.0"]


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--port", "70000"], "--port must be in 0..65535"),
        (["--max-batch-size", "0"], "serve: max_batch_size must be a whole number >= 1, got 0"),
        (["--allow-local-images", "/no/such/dir"], "is not a directory"),
        (["--default-temperature", "5"], "serve: default_temperature must be >= 0 and <= 2, got 5.0"),
    ],
)
def test_serve_flag_errors_are_one_line_before_loading(flags, words, monkeypatch, capsys):
    monkeypatch.setattr(chat_cli, "load_model", lambda *a, **k: pytest.fail("the model must not load"))
    assert main(["serve", "--model", "tiny", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err


def test_serve_busy_port_fails_before_loading(monkeypatch, capsys):
    monkeypatch.setattr(chat_cli, "load_model", lambda *a, **k: pytest.fail("the model must not load"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--model", "tiny", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "in use" in err


def test_serve_process_answers_and_stops_on_ctrl_c(tmp_path):
    openai = pytest.importorskip("openai")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }  # this checkout's cambrian
    err_path = tmp_path / "err.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cambrian.cli.main",
                "serve",
                "--model",
                "tiny",
                "--port",
                "0",
                "--default-temperature",
                "0",
                "--max-tokens",
                "8",
            ],
            stderr=err,
            env=env,
        )
    try:
        url = None
        t0 = time.monotonic()
        while url is None and time.monotonic() - t0 < 120 and proc.poll() is None:
            for line in err_path.read_text().splitlines():
                if line.startswith("serving "):
                    url = line.split(" on ")[1].split()[0]
            time.sleep(0.1)
        assert url, err_path.read_text()
        c = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=60)
        r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
        assert r.usage.completion_tokens == 8  # the cap is the default max_tokens
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err_path.read_text()
    assert "stopped" in text and "Traceback" not in text and "warning: tiny is a bare preset" in text
