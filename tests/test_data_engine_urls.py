"""The data engine's URL policy (issue 25, item 7): a page of a MediaWiki source cannot make the engine fetch an
internal URL. Images come only from the wiki's own host or an allowed one, never from a loopback, private or
link-local address, connections go to the address that was checked, and redirects are checked too. Plus the local
source skipping a page over the size limit instead of crashing (item 8)."""

from __future__ import annotations

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from cambrian.data.engine import EngineOptions, FetchError, LocalHTMLSource, MediaWikiSource, run_engine
from cambrian.data.engine.sources import MAX_PAGE_BYTES
from cambrian.data.engine.urlpolicy import URLPolicy, URLRefused, default_allowed_hosts, is_public

pytest.importorskip("bs4")


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(buf, format="PNG")
    return buf.getvalue()


class _Server:
    """A threaded HTTP server on 127.0.0.1 with ``routes`` {path: (status, headers, body)}; records the paths asked."""

    def __init__(self, routes=None, page=None):
        self.routes = routes or {}
        self.page = page
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.seen.append(self.path)
                u = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                if u.path == "/w/api.php" and q.get("list") == "search":
                    status, headers, body = 200, {}, json.dumps({"query": {"search": [{"title": "Page"}]}}).encode()
                elif u.path == "/w/api.php" and q.get("action") == "parse":
                    status, headers, body = 200, {}, json.dumps({"parse": {"text": outer.page}}).encode()
                else:
                    status, headers, body = outer.routes.get(u.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def internal():
    """An "internal service" a page should never reach (an admin port on this machine)."""
    s = _Server({"/secret.png": (200, {"Content-Type": "image/png"}, _png()), "/admin": (200, {}, b"secret")})
    yield s
    s.close()


def _figure(src: str) -> str:
    return f'<figure><img src="{src}"><figcaption>c</figcaption></figure>'


class _QA:
    def chat(self, system, user):
        return '[{"question": "What is shown?", "answer": "A green square."}]'


def test_a_page_cannot_make_the_engine_fetch_internal_urls(tmp_path, internal):
    """The wiki is "localhost"; its page points at the same host (fetched), at 127.0.0.1 (another host: an internal
    port), at the cloud metadata address and at a file URL. Only the first is fetched."""
    wiki = _Server({"/img/ok.png": (200, {"Content-Type": "image/png"}, _png())})
    try:
        page = (
            "<h2>Geology</h2>"
            + _figure(f"http://localhost:{wiki.port}/img/ok.png")
            + _figure(f"http://127.0.0.1:{internal.port}/secret.png")
            + _figure("http://169.254.169.254/latest/meta-data/iam.png")
            + _figure("file:///etc/passwd")
            + "<p>"
            + "word " * 60
            + "</p>"
        )
        wiki.page = page
        src = MediaWikiSource(f"http://localhost:{wiki.port}/w/api.php", user_agent="t (t@x.org)", fetch_interval=0)
        stats = run_engine(
            {"f": {"s": ["topic"]}},
            src,
            _QA(),
            tmp_path / "out",
            EngineOptions(max_images_per_section=8),
            progress=False,
        )
        assert stats["run"]["records"] == 1
        assert stats["failures"] == {"image_host_not_allowed": 2, "image_unsupported_url": 1}
        assert internal.seen == []  # never contacted
        fails = [json.loads(x) for x in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
        assert {f["image_url"] for f in fails if f["reason"] == "image_host_not_allowed"} == {
            f"http://127.0.0.1:{internal.port}/secret.png",
            "http://169.254.169.254/latest/meta-data/iam.png",
        }
    finally:
        wiki.close()


def test_a_redirect_to_an_internal_url_is_not_followed(internal):
    wiki = _Server({"/img/r.png": (302, {"Location": f"http://127.0.0.1:{internal.port}/secret.png"}, b"")})
    try:
        src = MediaWikiSource(f"http://localhost:{wiki.port}/w/api.php", fetch_interval=0)
        with pytest.raises(FetchError) as e:
            src.fetch_image(f"http://localhost:{wiki.port}/img/r.png")
        assert e.value.reason == "image_host_not_allowed" and internal.seen == []
    finally:
        wiki.close()


def test_allowed_hosts_must_still_resolve_to_public_addresses(monkeypatch, internal):
    """``--image-host`` allows a name, not an address: a name that resolves (or is re-pointed) to loopback, a private
    range or link-local is refused, and the connection goes to the address that was checked."""
    real = socket.getaddrinfo
    answers = {
        "images.test": ["127.0.0.1"],
        "mixed.test": ["93.184.216.34", "10.0.0.7"],
        "meta.test": ["169.254.169.254"],
        "v6.test": ["::1"],
        "mapped.test": ["::ffff:127.0.0.1"],
    }

    def fake(host, port, *a, **k):
        if host in answers:
            fam = lambda ip: socket.AF_INET6 if ":" in ip else socket.AF_INET
            return [(fam(ip), socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]
        return real(host, port, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    src = MediaWikiSource("http://localhost:1/w/api.php", fetch_interval=0, image_hosts=["*.test"])
    for host in answers:
        with pytest.raises(FetchError) as e:
            src.fetch_image(f"http://{host}:{internal.port}/secret.png")
        assert e.value.reason == "image_private_address", host
    assert internal.seen == []
    with pytest.raises(FetchError) as e:
        src.fetch_image(f"http://other.example:{internal.port}/secret.png")
    assert e.value.reason == "image_host_not_allowed"


def test_the_policy_rules():
    p = URLPolicy("https://en.wikipedia.org/w/api.php", default_allowed_hosts("https://en.wikipedia.org/w/api.php"))
    p.check("https://upload.wikimedia.org/wikipedia/commons/a/ab/Fuji.png")  # where Wikipedia's images are
    p.check("https://en.wikipedia.org/static/x.png")
    for url, reason in [
        ("https://evil.example/x.png", "image_host_not_allowed"),
        ("http://127.0.0.1:8080/x.png", "image_host_not_allowed"),
        ("gopher://en.wikipedia.org/x", "image_unsupported_url"),
        ("http://en.wikipedia.org:99999999/x", "image_bad_url"),
    ]:
        with pytest.raises(URLRefused) as e:
            p.check(url)
        assert e.value.reason == reason, url
    assert default_allowed_hosts("https://wiki.corp.example/w/api.php") == []
    assert [is_public(a) for a in ("93.184.216.34", "10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1")] == [
        True,
        False,
        False,
        False,
        False,
    ]
    assert not any(is_public(a) for a in ("169.254.169.254", "::1", "fc00::1", "fe80::1", "0.0.0.0", "224.0.0.1"))


def test_the_local_source_skips_a_page_over_the_limit(tmp_path):
    (tmp_path / "ok.html").write_text("<title>Volcano</title><p>fine</p>")
    with open(tmp_path / "huge.html", "wb") as f:
        f.truncate(MAX_PAGE_BYTES + 1)  # sparse
    src = LocalHTMLSource(tmp_path)
    assert [p[0] for p in src.pages] == ["ok.html"] and len(src.skipped) == 1 and "huge.html" in src.skipped[0]
