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

from helpers import sensitive_tiny_model  # noqa: E402
from peak_memory import PeakRSS  # noqa: E402

from cambrian.serve.app import ServerThread  # noqa: E402
from cambrian.serve.settings import ServeSettings  # noqa: E402

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
