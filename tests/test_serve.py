"""`cambrian serve` for real: the server runs on 127.0.0.1 (random free port) in a background thread with a tiny random
model, and the official `openai` client talks to it: plain, streamed, images, limits, auth, errors, concurrency and
batching, graceful shutdown; the eval harness's OpenAI adapter pointed at it agrees with the in-process adapter."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from helpers import sensitive_tiny_model, sensitive_toy_model  # noqa: E402

from cambrian.eval.adapters import CambrianEvalModel, image_to_data_url, load_eval_model  # noqa: E402
from cambrian.models.generate import NotGenerativeError, SamplingParams  # noqa: E402
from cambrian.serve.images import image_cost  # noqa: E402
from cambrian.serve.server import ServerThread  # noqa: E402
from cambrian.serve.settings import ServeSettings  # noqa: E402

KEY = "sk-test-key"
COLOURS = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255), (0, 255, 0)]


def _settings(**kw) -> ServeSettings:
    base = dict(
        model_name="tiny",
        api_key=KEY,
        max_tokens_cap=64,
        max_image_pixels=100 * 100,
        max_body_bytes=256 * 1024,
        max_concurrency=32,
        batch_window_ms=20.0,
    )
    base.update(kw)
    return ServeSettings(**base)


@pytest.fixture(scope="module")
def model():
    return sensitive_tiny_model()


@pytest.fixture(scope="module")
def server(model):
    with ServerThread(model, _settings()) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


def _ask(client, content, **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 12)
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}], **kw)


def _image_content(img, text="What is it?"):
    return [{"type": "image_url", "image_url": {"url": image_to_data_url(img)}}, {"type": "text", "text": text}]


def _png_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def _wait_for(cond, timeout=30.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.01)


class GatedModel:
    """The model, but each batch waits for ``gate`` (so a test can hold requests in flight)."""

    def __init__(self, model):
        self.model = model
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate_events(self, *a, **kw):
        self.entered.set()
        assert self.gate.wait(60)
        return self.model.generate_events(*a, **kw)


# ---- answers ----------------------------------------------------------------------------------------------


def test_plain_request_equals_in_process_greedy(client, model):
    r = _ask(client, "hello there")
    assert r.choices[0].message.content == model.generate_text(["hello there"], max_new_tokens=12)[0]
    assert r.choices[0].finish_reason == "length" and r.model == "tiny" and r.object == "chat.completion"
    assert r.usage.completion_tokens == 12 and r.usage.prompt_tokens == len(model.prompt_ids("hello there"))
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_streamed_chunks_add_up_to_the_plain_answer(client):
    plain = _ask(client, "tell me more", max_tokens=20).choices[0].message.content
    chunks = list(_ask(client, "tell me more", max_tokens=20, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20


def test_image_reaches_the_model(client, model):
    answers = []
    for c in COLOURS:
        img = Image.new("RGB", (40, 30), c)
        r = _ask(client, _image_content(img))
        assert (
            r.choices[0].message.content == model.generate_text(["<image>\nWhat is it?"], [[img]], max_new_tokens=12)[0]
        )
        answers.append(r.choices[0].message.content)
    assert len(set(answers)) >= 3, "different images should give different answers"
    assert r.usage.prompt_tokens == len(model.prompt_ids("<image>\nWhat is it?")) - 1 + model.visual_token_count(
        (40, 30)
    )


def test_multi_turn_with_system_and_image_in_the_first_turn(client, model):
    img = Image.new("RGB", (40, 30), (255, 0, 0))
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": _image_content(img, "What is it?")},
        {"role": "assistant", "content": "A red square."},
        {"role": "user", "content": "And the colour?"},
    ]
    r = client.chat.completions.create(model="tiny", messages=msgs, temperature=0, max_tokens=10)
    ours = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image>\nWhat is it?"},
        {"role": "assistant", "content": "A red square."},
        {"role": "user", "content": "And the colour?"},
    ]
    assert r.choices[0].message.content == model.generate_text([ours], [[img]], max_new_tokens=10)[0]


def test_sampling_seed_and_stop_over_the_api(client, model):
    a = _ask(client, "hello there", temperature=1.0, seed=7, max_tokens=15).choices[0].message.content
    b = _ask(client, "hello there", temperature=1.0, seed=7, max_tokens=15).choices[0].message.content
    assert (
        a
        == b
        == model.generate_text(["hello there"], sampling=SamplingParams(temperature=1.0, seed=7, max_new_tokens=15))[0]
    )
    full = _ask(client, "hello there", max_tokens=30).choices[0].message.content
    stop = full[5:8]
    r = _ask(client, "hello there", max_tokens=30, stop=[stop])
    assert r.choices[0].message.content == full[: full.find(stop)].strip() and r.choices[0].finish_reason == "stop"


def test_concurrent_requests_are_all_answered_in_batches(server, client, model):
    prompts = [f"question number {i}" for i in range(12)]
    want = [model.generate_text([p], max_new_tokens=10)[0] for p in prompts]
    sched = server.app.state.scheduler
    n_admitted, n_steps = len(sched.admitted), len(sched.step_sizes)
    slow = model.llm.register_forward_pre_hook(lambda m, a: time.sleep(0.01))  # requests overlap even under load
    try:
        with ThreadPoolExecutor(12) as ex:
            got = list(ex.map(lambda p: _ask(client, p, max_tokens=10).choices[0].message.content, prompts))
    finally:
        slow.remove()
    assert got == want
    admitted, steps = sched.admitted[n_admitted:], sched.step_sizes[n_steps:]
    assert sum(admitted) == 12 and max(steps) > 1, f"requests arriving together should share a batch: {steps}"


def test_a_request_joins_the_running_batch(server, client, model):
    sched = server.app.state.scheduler
    slow = model.llm.register_forward_pre_hook(lambda m, a: time.sleep(0.02))  # ~20 ms per decode step
    try:
        n_steps = len(sched.step_sizes)
        stream = _ask(client, "a long answer please", max_tokens=60, stream=True)
        it = iter(stream)
        next(it)
        short = _ask(client, "quick one", max_tokens=3)  # answered while the long one is still decoding
        rest = "".join(c.choices[0].delta.content or "" for c in it if c.choices)
    finally:
        slow.remove()
    assert short.choices[0].message.content == model.generate_text(["quick one"], max_new_tokens=3)[0]
    assert rest and max(sched.step_sizes[n_steps:]) == 2  # two rows in one step: it joined, it did not wait


def test_a_second_model_implementation_is_served():
    """The server depends only on the generation contract: the test suite's ToyVLM (its own tokenizer and chat format,
    no KV cache) is served plain, streamed, with an image and in concurrent batches, and answers as in process."""
    toy = sensitive_toy_model()
    red = Image.new("RGB", (20, 20), (255, 0, 0))
    prompts = [f"question {i}?" for i in range(6)]
    want = [toy.generate_text([p], max_new_tokens=8)[0] for p in prompts]
    assert len(set(want)) > 2, "the toy should answer different prompts differently"
    with ServerThread(toy, _settings(model_name="toy", batch_window_ms=50.0)) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=60)

        def ask(content, **kw):
            return c.chat.completions.create(
                model="toy", messages=[{"role": "user", "content": content}], temperature=0, **kw
            )

        with ThreadPoolExecutor(6) as ex:
            got = list(ex.map(lambda p: ask(p, max_tokens=8).choices[0].message.content, prompts))
        assert got == want
        r = ask(_image_content(red), max_tokens=8)
        assert r.choices[0].message.content == toy.generate_text(["<image>\nWhat is it?"], [[red]], max_new_tokens=8)[0]
        assert r.usage.prompt_tokens == len(toy.prompt_ids("<image>\nWhat is it?")) - 1 + toy.visual_token_count(
            (20, 20)
        )
        chunks = list(ask(prompts[0], max_tokens=8, stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == want[0]
        assert max(srv.app.state.scheduler.step_sizes) > 1, "concurrent requests should share decode steps"


def test_a_model_without_the_generation_contract_is_refused():
    with pytest.raises(NotGenerativeError, match="cannot be used for serving: it lacks tokenizer, context_length"):
        ServerThread(object(), _settings())


def test_listening_socket_is_tcp_so_connections_get_nodelay(server):
    # regression: a socket made with proto 0 left TCP_NODELAY off on accepted connections (asyncio sets it only for
    # IPPROTO_TCP sockets), and each kept-alive request of the openai client waited ~40 ms
    import socket

    from cambrian.serve.server import bind_socket

    s = bind_socket("127.0.0.1", 0)
    try:
        assert s.proto == socket.IPPROTO_TCP
    finally:
        s.close()
    assert server._sock.proto == socket.IPPROTO_TCP


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    with urllib.request.urlopen(server.url + "/health") as resp:  # no key needed
        assert json.loads(resp.read())["status"] == "ok"


# ---- errors -----------------------------------------------------------------------------------------------


def _error(excinfo, status):
    e = excinfo.value
    assert e.status_code == status
    body = e.body if isinstance(e.body, dict) else {}
    assert set(body) >= {"message", "type", "param", "code"}, body  # openai unwraps {"error": {...}}
    return body


def test_wrong_or_missing_api_key_is_401(server):
    for key in ("sk-wrong", ""):
        c = openai.OpenAI(
            base_url=server.base_url,
            api_key=key or "x",
            max_retries=0,
            default_headers={} if key else {"Authorization": ""},
        )
        with pytest.raises(openai.AuthenticationError) as ei:
            _ask(c, "hi")
        assert _error(ei, 401)["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            c.models.list()


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    body = _error(ei, 404)
    assert body["code"] == "model_not_found" and "tiny" in body["message"]


def test_max_tokens_over_the_cap_is_400(client):
    with pytest.raises(openai.BadRequestError) as ei:
        _ask(client, "hi", max_tokens=65)
    body = _error(ei, 400)
    assert body["param"] == "max_tokens" and "64" in body["message"]
    assert _ask(client, "hi", max_tokens=64).usage.completion_tokens <= 64


def test_bad_images_are_400(client):
    cases = {
        "data:image/png;base64,%%%not-base64%%%": "base64",
        _png_url(b"this is not a png at all"): "not a readable image",
        "https://example.com/cat.png": "does not fetch remote",
        "/etc/hostname": "local file paths are off",
        "data:image/png,rawbytes": "base64 data URL",
    }
    for url, words in cases.items():
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what?"}]
        with pytest.raises(openai.BadRequestError) as ei:
            _ask(client, content)
        body = _error(ei, 400)
        assert words in body["message"] and body["param"] == "messages[0].content[0]", body
    buf = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buf, format="PNG")
    truncated = buf.getvalue()[:60]
    with pytest.raises(openai.BadRequestError):
        _ask(client, [{"type": "image_url", "image_url": {"url": _png_url(truncated)}}, {"type": "text", "text": "?"}])


def test_oversized_image_is_refused_before_decoding(client):
    big = Image.new("RGB", (101, 100))  # 10,100 pixels > 100 x 100
    with pytest.raises(openai.BadRequestError) as ei:
        _ask(client, _image_content(big))
    body = _error(ei, 400)
    assert body["code"] == "image_too_large" and "10100" in body["message"]
    # PNGs whose header claims 9000 x 9000 / 30000 x 30000 pixels (a few hundred bytes): refused from the header
    for n, words in ((9000, "81000000 pixels"), (30000, "too large")):
        with pytest.raises(openai.BadRequestError) as ei:
            _ask(client, [{"type": "image_url", "image_url": {"url": _png_url(_png_header_only(n, n))}}])
        body = _error(ei, 400)
        assert body["code"] == "image_too_large" and words in body["message"], body


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_body_over_the_limit_is_413(server, client):
    with pytest.raises(openai.APIStatusError) as ei:
        _ask(client, "x" * (300 * 1024))
    assert _error(ei, 413)["code"] == "request_too_large"
    # chunked upload without Content-Length: counted while read
    data = iter([b'{"model": "tiny", "messages": [{"role": "user", "content": "', b"y" * (300 * 1024), b'"}]}'])
    req = urllib.request.Request(
        server.base_url + "/chat/completions",
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=30)
    assert ei.value.code == 413 and json.loads(ei.value.read())["error"]["code"] == "request_too_large"
    # a body declared far over the limit is refused from its header, before anything is read
    host, port = server.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10**9}\r\n\r\n".encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_read_body_counts_chunks_and_stops_reading_far_over_the_limit():
    import asyncio

    from cambrian.serve.app import read_body
    from cambrian.serve.errors import APIError

    class FakeRequest:
        def __init__(self, chunks, length=None):
            self.chunks, self.read = chunks, 0
            self.headers = {} if length is None else {"content-length": str(length)}

        async def stream(self):
            for c in self.chunks:
                self.read += 1
                yield c

    ok = FakeRequest([b"ab", b"cd"])
    assert asyncio.run(read_body(ok, 4)) == b"abcd"
    for chunks, reads in (([b"abc", b"de"], 2), ([b"abcdefghij", b"k", b"l"], 1)):  # 5 > 4: read to the end;
        r = FakeRequest(chunks)  # 10 > 2 x 4: stop at once
        with pytest.raises(APIError) as ei:
            asyncio.run(read_body(r, 4))
        assert ei.value.status == 413 and r.read == reads
    r = FakeRequest([b"x"], length=9)
    with pytest.raises(APIError):
        asyncio.run(read_body(r, 4))
    assert r.read == 0


@pytest.mark.parametrize(
    "messages,kw,param,words",
    [
        ([{"role": "assistant", "content": "hi"}], {}, "messages", "end with a user turn"),
        ([{"role": "user", "content": "a <image> tag"}], {}, "messages[0].content", "reserved tag"),
        ([{"role": "user", "content": "hi"}], {"n": 2}, "n", "n=1"),
        ([{"role": "user", "content": "hi"}], {"presence_penalty": 0.5}, "presence_penalty", "not supported"),
        ([{"role": "user", "content": "hi"}], {"temperature": 3}, "temperature", "less than or equal to 2"),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "late"},
                {"role": "user", "content": "?"},
            ],
            {},
            "messages",
            "only allowed first",
        ),
        ([{"role": "user", "content": "word " * 600}], {}, "messages", "context"),
    ],
)
def test_bad_requests_are_400_naming_the_field(client, messages, kw, param, words):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=5, **kw)
    body = _error(ei, 400)
    assert body["param"] == param and words in body["message"], body


def test_image_in_an_assistant_turn_and_bad_json_are_400(server, client):
    img = Image.new("RGB", (20, 20))
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(
            model="tiny",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": _image_content(img)},
                {"role": "user", "content": "and?"},
            ],
            max_tokens=5,
        )
    assert "user messages only" in _error(ei, 400)["message"]
    req = urllib.request.Request(
        server.base_url + "/chat/completions",
        data=b"{not json",
        method="POST",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=30)
    assert ei.value.code == 400 and "not valid JSON" in json.loads(ei.value.read())["error"]["message"]
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(server.url + "/v1/nothing-here", timeout=30)
    assert ei.value.code == 404 and "error" in json.loads(ei.value.read())


# ---- local images, concurrency limit, shutdown --------------------------------------------------------------


def test_local_images_only_under_the_root(model, tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    img = Image.new("RGB", (40, 30), (0, 0, 255))
    img.save(root / "blue.png")
    img.save(tmp_path / "outside.png")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    with ServerThread(model, _settings(api_key=None, local_image_root=root)) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)
        want = model.generate_text(["<image>\nWhat is it?"], [[img]], max_new_tokens=12)[0]
        for url in ("blue.png", str(root / "blue.png"), f"file://{root / 'blue.png'}"):
            content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is it?"}]
            assert _ask(c, content).choices[0].message.content == want
        for url, words in (
            ("../outside.png", "outside"),
            (str(tmp_path / "outside.png"), "outside"),
            ("link.png", "outside"),
            ("missing.png", "no such file"),
        ):
            with pytest.raises(openai.BadRequestError) as ei:
                _ask(c, [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "?"}])
            assert words in _error(ei, 400)["message"]


def test_over_the_concurrency_limit_is_429(model):
    gated = GatedModel(model)
    with ServerThread(gated, _settings(max_concurrency=1)) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=60)
        with ThreadPoolExecutor(1) as ex:
            first = ex.submit(_ask, c, "first")
            assert gated.entered.wait(30)
            with pytest.raises(openai.RateLimitError) as ei:
                _ask(c, "second")
            assert _error(ei, 429)["code"] == "rate_limit_exceeded"
            gated.gate.set()
            assert first.result(timeout=60).choices[0].message.content
        assert _ask(c, "third").choices[0].message.content  # a slot is free again


def test_decoded_pixels_in_flight_are_bounded(model):
    gated = GatedModel(model)
    img = Image.new("RGB", (60, 50), (9, 90, 200))  # 3000 pixels; the budget holds two such images
    cost = image_cost(60, 50, max(e.config.image_size for e in model.encoders))  # decoded + letterboxed
    with ServerThread(gated, _settings(max_image_pixels=3000, max_pixels_in_flight=2 * cost)) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=60)
        two = [{"type": "image_url", "image_url": {"url": image_to_data_url(img)}}] * 2 + [
            {"type": "text", "text": "?"}
        ]
        with ThreadPoolExecutor(2) as ex:
            first = ex.submit(_ask, c, two)
            assert gated.entered.wait(30)
            with pytest.raises(openai.RateLimitError) as ei:
                _ask(c, _image_content(img))
            assert "decoded-pixel budget" in _error(ei, 429)["message"]
            text_only = ex.submit(_ask, c, "text only still goes")  # needs no pixels: queued, not refused
            _wait_for(lambda: srv.app.state.scheduler.inflight == 2)
            gated.gate.set()
            assert first.result(timeout=60).choices and text_only.result(timeout=60).choices
        assert _ask(c, _image_content(img)).choices  # released when the first one finished
        with urllib.request.urlopen(srv.url + "/health") as resp:
            assert json.loads(resp.read())["image_pixels_in_flight"] == 0


def test_graceful_shutdown_finishes_requests_in_flight(model):
    gated = GatedModel(model)
    srv = ServerThread(gated, _settings()).start()
    c = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=60)
    with ThreadPoolExecutor(2) as ex:
        plain = ex.submit(_ask, c, "in flight", max_tokens=8)
        streamed = ex.submit(
            lambda: "".join(
                ch.choices[0].delta.content or ""
                for ch in _ask(c, "in flight too", max_tokens=8, stream=True)
                if ch.choices
            )
        )
        assert gated.entered.wait(30)
        _wait_for(lambda: srv.app.state.scheduler.inflight == 2)  # both requests queued or running
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        time.sleep(0.3)  # the server is shutting down while the requests wait for the model
        gated.gate.set()
        assert (
            plain.result(timeout=60).choices[0].message.content
            == model.generate_text(["in flight"], max_new_tokens=8)[0]
        )
        assert streamed.result(timeout=60) == model.generate_text(["in flight too"], max_new_tokens=8)[0]
    stopper.join(60)
    assert not srv._thread.is_alive()
    with pytest.raises(openai.APIConnectionError):
        _ask(c, "after")


def test_client_disconnect_frees_its_slot(server, client):
    sched = server.app.state.scheduler
    stream = _ask(client, "a long answer please", max_tokens=64, stream=True)
    next(iter(stream))
    stream.close()
    t0 = time.monotonic()
    while sched.inflight and time.monotonic() - t0 < 30:
        time.sleep(0.02)
    assert sched.inflight == 0


# ---- closing the loop: the eval harness through the server --------------------------------------------------


def test_eval_openai_adapter_through_the_server_equals_in_process(server, model, tmp_path, monkeypatch):
    from test_eval_benchmarks import mmstar, pope

    from cambrian.eval.api import get_benchmark
    from cambrian.eval.runner import run_benchmarks

    data = tmp_path / "data"
    pope(data)
    mmstar(data)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    remote = load_eval_model(f"openai:{server.base_url}#tiny")
    local = CambrianEvalModel(model, name="tiny")
    preds = {}
    for label, m, bs in (("local", local, 3), ("remote", remote, 3)):
        benches = [get_benchmark("pope"), get_benchmark("mmstar")]
        run_benchmarks(m, benches, str(data), tmp_path / label, batch_size=bs, max_new_tokens=16, progress=False)
        preds[label] = {
            b: [json.loads(x) for x in (tmp_path / label / b / "predictions.jsonl").read_text().splitlines()]
            for b in ("pope", "mmstar")
        }
    assert preds["remote"] == preds["local"]
    assert len(preds["local"]["pope"]) == 4 and len(preds["local"]["mmstar"]) == 3
    assert len({p["prediction"] for b in preds["local"].values() for p in b}) > 1
