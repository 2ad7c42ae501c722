"""Server hardening (issue 25): the aspect-ratio image bomb, admission control against idle connections, huge prompts,
malformed bodies, and a client that leaves a non-streaming request. Every server binds to 127.0.0.1 (a free port);
memory bounds are this process's own peak RSS during the request (the server runs in a thread of it)."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import pytest
from PIL import Image

pytest.importorskip("fastapi")

from helpers import sensitive_tiny_model
from peak_memory import PeakRSS

from cambrian.serve.server import ServerThread
from cambrian.serve.settings import ServeSettings

KEY = "sk-limits"


def _settings(**kw) -> ServeSettings:
    base = dict(model_name="tiny", api_key=KEY, max_tokens_cap=16, max_body_bytes=256 * 1024, batch_window_ms=0.0)
    base.update(kw)
    return ServeSettings(**base)


@pytest.fixture(scope="module")
def model():
    return sensitive_tiny_model()


def png_url(w: int, h: int, mode: str = "RGB") -> str:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 1).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def post(url: str, body, key: str | None = KEY, timeout: float = 60.0) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def image_request(url: str, text: str = "what is it?", **kw) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **kw}


# ---- item 1: the aspect-ratio image bomb ------------------------------------------------------------------------


def test_an_aspect_ratio_bomb_is_a_400_before_decoding(model):
    bomb = png_url(100_000, 1, mode="1")
    assert len(bomb) < 160  # a 93-byte PNG
    with ServerThread(model, _settings(max_image_pixels=4096 * 4096)) as srv:
        assert post(srv.url, image_request(png_url(40, 30)))[0] == 200  # warm
        with PeakRSS() as peak:
            status, body = post(srv.url, image_request(bomb))
        assert status == 400, body
        err = body["error"]
        assert err["code"] == "image_aspect_ratio" and err["param"] == "messages[0].content[0]"
        assert "100000x1" in err["message"] and "100000:1" in err["message"] and "64:1" in err["message"]
        assert peak.delta < 32 << 20, f"{peak.delta / 2**20:.0f} MiB"


def test_a_wide_image_allowed_by_the_operator_is_letterboxed_in_bounded_memory(model):
    """With the aspect limit lifted, a 20000 x 1 image is answered; the official letterbox would build a 20000^2
    canvas (1.2 GB); ours stays within a few MB."""
    settings = _settings(max_image_pixels=4096 * 4096, max_image_aspect=1e6)
    with ServerThread(model, settings) as srv:
        assert post(srv.url, image_request(png_url(40, 30)))[0] == 200  # warm
        with PeakRSS() as peak:
            status, body = post(srv.url, image_request(png_url(20_000, 1)))
        assert status == 200, body
        assert peak.delta < 160 << 20, f"{peak.delta / 2**20:.0f} MiB"


def test_the_pixel_budget_counts_the_letterbox(model):
    from cambrian.serve.images import image_cost

    side = max(e.config.image_size for e in model.encoders)
    assert image_cost(640, 480, side) == 640 * 480 + 640 * 640 + side * side  # the square canvas is built
    assert image_cost(20_000, 1, 384) < 2 * 20_000 * 24 + 384 * 384 + (1 << 22) + 3 * 384  # never 20000^2


# ---- item 2: idle and slow connections, admission ---------------------------------------------------------------
import contextlib  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402


def _connect(srv) -> socket.socket:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def _closed_by_server(s: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``s`` (None: still open after ``within`` seconds)."""
    s.settimeout(within)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return data


def test_idle_sockets_do_not_lock_out_authorised_clients(model):
    """60 sockets that send nothing (no key) used to make every client get 503 (uvicorn counted them against
    2 * 2 + 8); now a client is answered while they are open, and they are closed after the header timeout."""
    with ServerThread(model, _settings(max_concurrency=2, header_timeout_s=1.0)) as srv:
        idle = [_connect(srv) for _ in range(60)]
        try:
            assert (
                post(srv.url, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})[0]
                == 200
            )
            t0 = time.monotonic()
            assert all(_closed_by_server(s, 10.0) == b"" for s in idle)  # closed by the server, nothing sent
            assert time.monotonic() - t0 < 10.0
        finally:
            for s in idle:
                s.close()


def test_a_slowloris_connection_is_closed_after_the_header_timeout(model):
    with ServerThread(model, _settings(header_timeout_s=1.0)) as srv:
        s = _connect(srv)
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
        closed = False
        t0 = time.monotonic()
        with contextlib.closing(s):
            for i in range(len(head)):  # one byte every 50 ms: never a complete header
                try:
                    s.sendall(head[i : i + 1])
                except OSError:
                    closed = True
                    break
                s.settimeout(0.05)
                try:
                    if s.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
        assert closed and time.monotonic() - t0 < 5.0


def test_connections_over_the_cap_get_an_openai_503(model):
    with ServerThread(model, _settings(max_concurrency=2, max_connections=10, header_timeout_s=30.0)) as srv:
        socks = [_connect(srv) for _ in range(14)]
        try:
            time.sleep(0.3)
            answers = [_closed_by_server(s, 0.2) for s in socks]
            refused = [a for a in answers if a is not None]
            assert len(refused) == 4, [a[:40] if a else a for a in answers]
            assert all(a.startswith(b"HTTP/1.1 503") for a in refused)
            err = json.loads(refused[0].split(b"\r\n\r\n", 1)[1])["error"]
            assert err["code"] == "too_many_connections" and err["type"] == "server_error"
        finally:
            for s in socks:
                s.close()
        time.sleep(0.3)
        assert (
            post(srv.url, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})[0] == 200
        )


def test_admission_is_a_429_before_the_body_and_a_slow_body_times_out(model):
    with ServerThread(model, _settings(max_concurrency=1, body_timeout_s=1.0)) as srv:
        slow = _connect(srv)
        with contextlib.closing(slow):
            slow.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\""
            )  # fmt: skip
            time.sleep(0.3)  # admitted, reading its body
            req = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            status, body = post(srv.url, req)
            assert status == 429 and body["error"]["code"] == "rate_limit_exceeded", body
            answer = _closed_by_server(slow, 10.0) or b""
            assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
        assert post(srv.url, req)[0] == 200
        assert srv.app.state.admission.admitted == 0
        assert post(srv.url, req, key="wrong")[0] == 401  # the key is checked before admission


# ---- item 3: a huge prompt ---------------------------------------------------------------------------------------
def test_a_huge_prompt_is_refused_before_tokenising_and_prompts_are_tokenised_off_the_generation_thread(
    model, monkeypatch
):
    calls = []
    real = model.prompt_ids

    def spy(messages, *a, **k):
        if not isinstance(messages, str) and messages and isinstance(messages[0], dict):
            calls.append((sum(len(m["content"]) for m in messages), threading.current_thread().name))
        return real(messages, *a, **k)

    monkeypatch.setattr(model, "prompt_ids", spy)
    with ServerThread(model, _settings(max_body_bytes=16 << 20)) as srv:
        huge = "lorem ipsum " * 500_000  # 6 MB of text
        with PeakRSS() as peak:
            status, body = post(srv.url, {"model": "tiny", "messages": [{"role": "user", "content": huge}]})
        assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
        assert "characters" in body["error"]["message"]
        assert calls == []  # refused without tokenising
        assert peak.delta < 400 << 20  # the body and its JSON, nothing more
        bound = srv.app.state.admission  # the server is still answering at once
        status, body = post(
            srv.url, {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        )
        assert status == 200 and bound.admitted == 0
        long = "word " * 1500  # under the character bound, over the 512-token context once tokenised
        status, body = post(srv.url, {"model": "tiny", "messages": [{"role": "user", "content": long}]})
        assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert calls and all(name.startswith("cambrian-tokenize") for _, name in calls), calls


# ---- item 8: malformed bodies, bad paths, a client that leaves ----------------------------------------------------
def test_malformed_json_and_bad_local_paths_are_400(model, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "loop").symlink_to(root / "loop")
    with ServerThread(model, _settings(local_image_root=root)) as srv:
        nested = b'{"model": "tiny", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        digits = b'{"model": "tiny", "max_tokens": ' + b"9" * 5000 + b', "messages": []}'
        for raw in (nested, digits):
            status, body = post(srv.url, raw)
            assert status == 400 and "not valid JSON" in body["error"]["message"], body
        for path in ("a\x00b.png", "x" * 5000 + ".png", "loop", "loop/x.png", "/" + "d/" * 3000):
            status, body = post(srv.url, image_request(path))
            assert status == 400 and body["error"]["code"] == "invalid_image", (path[:20], body)


class SlowModel:
    """The model, but every decode step takes 50 ms and row cancellations are recorded."""

    def __init__(self, model):
        self.model = model
        self.cancelled: list[int] = []
        self.steps = 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate_events(self, *a, **kw):
        run = self.model.generate_events(*a, **kw)
        outer = self

        class Slow:
            def __iter__(self):
                for ev in run:
                    outer.steps += 1
                    time.sleep(0.05)
                    yield ev

            def cancel(self, row):
                outer.cancelled.append(row)
                run.cancel(row)

            def __getattr__(self, name):
                return getattr(run, name)

        return Slow()


def test_a_non_streaming_client_that_leaves_stops_its_generation(model):
    slow = SlowModel(model)
    with ServerThread(slow, _settings(max_tokens_cap=400)) as srv:
        req = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400, "temperature": 0}
        s = _connect(srv)
        data = json.dumps(req).encode()
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
        )  # fmt: skip
        t0 = time.monotonic()
        while slow.steps < 3:
            assert time.monotonic() - t0 < 30
            time.sleep(0.01)
        s.close()  # the client leaves
        while srv.app.state.scheduler.inflight:
            assert time.monotonic() - t0 < 15, "the generation went on after the client left"
            time.sleep(0.02)
        assert slow.cancelled == [0] and slow.steps < 200
        assert srv.app.state.admission.admitted == 0


# ---- a small fuzz of request bodies and image headers --------------------------------------------------------------
def _png_with_header(w: int, h: int, rng: random.Random) -> bytes:
    """A PNG signature and an IHDR claiming ``w`` x ``h`` (valid CRC), then a truncated or garbage IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, rng.choice([0, 2, 3, 6]), 0, 0, 0)
    idat = zlib.compress(b"\x00" * rng.randint(0, 64))[: rng.randint(0, 40)]
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", idat)
        + (chunk(b"IEND", b"") if rng.random() < 0.5 else b"")
    )


def test_fuzzed_request_bodies_and_image_headers_are_answered_without_a_500(model):
    rng = random.Random(2525)
    valid = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0}
    raw = json.dumps(valid).encode()
    values = [None, True, -1, 0, 1e308, 10**40, "", "x" * 1000, [], {}, [[[]]], {"a": {"b": {}}}, "\x00", "\ud800"]
    keys = ["model", "messages", "max_tokens", "temperature", "top_p", "stop", "seed", "stream", "n", "top_k"]
    with ServerThread(model, _settings(max_image_pixels=4096 * 4096)) as srv:
        statuses = []
        with PeakRSS() as peak:
            for _ in range(40):  # byte-level mutations of a valid body
                b = bytearray(raw)
                for _ in range(rng.randint(1, 6)):
                    op = rng.random()
                    i = rng.randrange(len(b))
                    if op < 0.4:
                        b[i] = rng.randrange(256)
                    elif op < 0.7:
                        del b[i : i + rng.randint(1, 8)]
                    else:
                        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
                statuses.append(post(srv.url, bytes(b))[0])
            for _ in range(40):  # field-level mutations
                body = json.loads(raw)
                body[rng.choice(keys)] = rng.choice(values)
                if rng.random() < 0.3:
                    body["messages"] = [{"role": rng.choice(["user", "x", None]), "content": rng.choice(values)}]
                statuses.append(post(srv.url, json.dumps(body).encode())[0])
            sizes = [(2**31 - 1, 1), (1, 2**31 - 1), (100_000, 1), (65535, 65535), (0, 5), (5000, 4000), (64, 64)]
            for _ in range(30):  # image headers: huge, flat, empty, truncated data
                w, h = rng.choice(sizes)
                url = "data:image/png;base64," + base64.b64encode(_png_with_header(w, h, rng)).decode()
                statuses.append(post(srv.url, image_request(url))[0])
        assert 500 not in statuses and all(s in (200, 400, 404, 413, 422, 429) for s in statuses), statuses
        assert statuses.count(400) > 50
        assert peak.delta < 256 << 20, f"{peak.delta / 2**20:.0f} MiB"
        assert post(srv.url, valid)[0] == 200 and srv.app.state.admission.admitted == 0


def test_the_api_key_can_come_from_a_file_or_the_environment(tmp_path, monkeypatch):
    """``--api-key KEY`` is visible to every user in ``ps``; the file and the variable are not."""
    import argparse

    from cambrian.cli.serve import add_arguments, api_key_from_args
    from cambrian.errors import UserError

    p = argparse.ArgumentParser()
    add_arguments(p)
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    monkeypatch.setenv("CAMBRIAN_API_KEY", "sk-from-env")
    assert api_key_from_args(p.parse_args(["--model", "tiny", "--api-key-file", str(key_file)])) == "sk-from-file"
    assert api_key_from_args(p.parse_args(["--model", "tiny"])) == "sk-from-env"
    assert api_key_from_args(p.parse_args(["--model", "tiny", "--api-key", "sk-flag"])) == "sk-flag"
    monkeypatch.delenv("CAMBRIAN_API_KEY")
    assert api_key_from_args(p.parse_args(["--model", "tiny"])) is None
    key_file.write_text("\n")
    with pytest.raises(UserError, match="holds no key"):
        api_key_from_args(p.parse_args(["--model", "tiny", "--api-key-file", str(key_file)]))
    with pytest.raises(SystemExit):  # one or the other
        p.parse_args(["--model", "tiny", "--api-key", "a", "--api-key-file", str(key_file)])


def test_serve_raises_the_open_file_limit_for_its_connection_cap():
    resource = pytest.importorskip("resource")
    from cambrian.cli.serve import ensure_file_descriptors

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 600:
        pytest.skip(f"the hard open-file limit is {hard}")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
        ensure_file_descriptors(200)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 456
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
