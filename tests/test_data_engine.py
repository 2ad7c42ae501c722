"""`cambrian data engine`: a small HTML corpus (tests/fixtures/engine_corpus, images generated here), a fixed-reply
OpenAI-compatible server on 127.0.0.1 serving messy replies, resumability, failure reasons, image normalisation,
reply parsing, and the MediaWiki source against a local fake wiki."""

from __future__ import annotations

import io
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from cambrian.data.engine import (
    EngineOptions,
    FetchError,
    ImageSkip,
    LocalHTMLSource,
    MediaWikiSource,
    OpenAIChat,
    RateLimiter,
    ReplyError,
    extract_json,
    generate_topics,
    normalize_image,
    original_image_url,
    parse_fields,
    parse_qa,
    parse_sections,
    parse_topics,
    run_engine,
)

pytest.importorskip("openai")
pytest.importorskip("bs4")
FIXTURE = Path(__file__).parent / "fixtures" / "engine_corpus"
KEY = "sk-test-secret-4242"


# ---- a fixed-reply OpenAI-compatible server -----------------------------------------------------------------
class FixedReplies:
    """Chat replies chosen by a substring of the request's messages; ``None`` answers HTTP 500."""

    def __init__(self, rules: list[tuple[str, str | None]], default: str = '[{"question": "Q?", "answer": "A."}]'):
        self.rules = rules
        self.default = default
        self.requests: list[dict] = []

    def reply(self, body: dict) -> str | None:
        text = json.dumps(body["messages"])
        for needle, rep in self.rules:
            if needle in text:
                return rep
        return self.default


def _completion(content: str, model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


@pytest.fixture
def llm_server():
    replies = FixedReplies([])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            replies.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            content = replies.reply(body)
            if content is None:
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                data = b'{"error": {"message": "boom", "type": "server_error"}}'
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                data = _completion(content, body.get("model", "?"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1", replies
    finally:
        srv.shutdown()
        srv.server_close()


# ---- the corpus ------------------------------------------------------------------------------------------------
def _img(path: Path, size, color, fmt=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt, **kw)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(FIXTURE, root)
    img = root / "geology" / "img"
    _img(img / "stratovolcano.png", (64, 48), (120, 90, 60))
    _img(img / "old.png", (40, 40), (1, 1, 1))
    _img(img / "tiny.png", (8, 8), (0, 0, 0))
    _img(img / "huge.png", (300, 300), (9, 9, 9))
    _img(img / "refuse.png", (40, 40), (50, 0, 50))
    _img(img / "server-error.png", (30, 30), (0, 50, 50))
    _img(img / "quartz.jpg", (50, 40), (200, 200, 210), fmt="JPEG")
    gif = Image.new("P", (40, 40), 0)
    gif.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    gif.paste(1, (10, 10, 30, 30))  # red square on a transparent background
    gif.save(img / "eruption.gif", transparency=0)
    (img / "diagram.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">'
        '<rect x="10" y="10" width="50" height="30" fill="#ff0000"/></svg>'
    )
    return root


REPLIES = [
    (
        "stratovolcano with layered slopes",
        'Sure! Here is the pair:\n```json\n[{"question": "What kind of volcano is '
        'shown?", "answer": "A stratovolcano."}]\n```\nLet me know if you need more.',
    ),
    ("Cross-section diagram", "Question: What does the diagram show?\nAnswer: The inside of a stratovolcano."),
    (
        "Lava fountain",
        'Here you go: {"question": "What is happening in the picture?", "answer": "Lava is erupting.",} Hope it helps!',
    ),
    ("Quartz crystal cluster", "{'qa_pairs': [{'question': 'Which mineral is this?', 'answer': 'Quartz'}]}"),
    ("model refuses", "I'm sorry, I cannot help with that."),
    ("server fails here", None),
]
TOPICS = {"Geology": {"Volcanology": ["volcano types"], "Mineralogy": ["quartz mineral"]}}


def _opts(**kw):
    base = dict(max_pixels=50_000, max_images_per_section=6)
    base.update(kw)
    return EngineOptions(**base)


def _llm(url, monkeypatch, **kw):
    monkeypatch.setenv("CAMBRIAN_TEST_KEY", KEY)
    return OpenAIChat(url, "fixed-model", api_key_env="CAMBRIAN_TEST_KEY", max_retries=0, rpm=0, **kw)


def test_engine_on_local_corpus_counts_resumes_and_hides_the_key(corpus, llm_server, tmp_path, monkeypatch, capsys):
    url, replies = llm_server
    replies.rules = list(REPLIES)
    out = tmp_path / "out"
    stats = run_engine(
        TOPICS, LocalHTMLSource(corpus), _llm(url, monkeypatch), out, _opts(), model_name="fixed-model", progress=False
    )
    recs = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    qa = {r["provenance"]["caption"]: [t["value"] for t in r["conversations"]] for r in recs}
    assert qa == {
        "A stratovolcano with layered slopes.": ["<image>\nWhat kind of volcano is shown?", "A stratovolcano."],
        "Cross-section diagram of a stratovolcano.": [
            "<image>\nWhat does the diagram show?",
            "The inside of a stratovolcano.",
        ],
        "Lava fountain during an eruption.": ["<image>\nWhat is happening in the picture?", "Lava is erupting."],
        "Quartz crystal cluster from Brazil.": ["<image>\nWhich mineral is this?", "Quartz"],
    }
    assert stats["failures"] == {
        "image_too_small": 1,
        "image_too_many_pixels": 1,
        "reply_unparseable": 1,
        "image_fetch_failed": 1,
        "image_outside_root": 1,
        "image_remote_url": 1,
        "llm_http_500": 1,
    }
    r = stats["run"]
    assert (
        r["pages_fetched"],
        r["sections_kept"],
        r["sections_skipped_history"],
        r["sections_too_short"],
        r["sections_no_images"],
    ) == (2, 3, 2, 1, 3)
    assert (r["images_ok"], r["records"], r["units_already_done"]) == (6, 4, 1)  # the repeated stratovolcano figure
    assert (r["images_from_svg"], r["images_from_gif"], r["images_from_jpeg"], r["images_from_png"]) == (1, 1, 1, 3)
    prov = next(x["provenance"] for x in recs if x["provenance"]["caption"].startswith("Quartz"))
    assert prov | {"key": None} == {
        "key": None,
        "source": "local",
        "page": "geology/mineral.html",
        "page_title": "Mineral",
        "section": "Quartz crystals",
        "caption": "Quartz crystal cluster from Brazil.",
        "image_url": "geology/img/quartz.jpg",
        "image_size": [50, 40],
        "image_format": "jpeg",
        "field": "Geology",
        "subfield": "Mineralogy",
        "topic": "quartz mineral",
        "model": "fixed-model",
    }
    # images are PNGs in OUT/images; the GIF's transparent background became white
    for x in recs:
        im = Image.open(out / x["image"])
        assert im.format == "PNG" and im.mode == "RGB"
    gif = next(x for x in recs if x["provenance"]["image_format"] == "gif")
    im = Image.open(out / gif["image"])
    assert im.getpixel((0, 0)) == (255, 255, 255) and im.getpixel((20, 20)) == (255, 0, 0)
    svg = next(x for x in recs if x["provenance"]["image_format"] == "svg")
    im = Image.open(out / svg["image"])
    assert im.size == (120, 80) and im.getpixel((100, 70)) == (255, 255, 255) and im.getpixel((30, 20)) == (255, 0, 0)
    # the LLM got the caption and the section text; the key went only into the Authorization header
    assert all(q["auth"] == f"Bearer {KEY}" for q in replies.requests)
    user = json.loads(replies.requests[0]["body"]["messages"][1]["content"])
    assert (
        user["image_caption"] == "A stratovolcano with layered slopes."
        and "Stratovolcanoes are tall" in user["section_text"]
    )
    assert "[2]" not in user["section_text"]  # citation markers removed
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in capsys.readouterr().out

    # rerun: permanent failures and done units are skipped, the transient one (HTTP 500) is retried
    replies.rules = [(k, v if v is not None else '[{"question": "Why?", "answer": "Because."}]') for k, v in REPLIES]
    with open(out / "data.jsonl", "a") as f:
        f.write('{"id": "cut-by-a-crash", "conversa')  # an interrupted write
    n_requests = len(replies.requests)
    stats2 = run_engine(TOPICS, LocalHTMLSource(corpus), _llm(url, monkeypatch), out, _opts(), progress=False)
    assert stats2["run"]["records"] == 1 and stats2["failures"] == {}
    assert len(replies.requests) == n_requests + 1
    lines = (out / "data.jsonl").read_text().splitlines()
    assert len(lines) == 5 and len({json.loads(x)["provenance"]["key"] for x in lines}) == 5
    assert stats2["totals"]["records"] == 5
    assert stats2["totals"]["failed_units"] == {
        "image_too_small": 1,
        "image_too_many_pixels": 1,
        "reply_unparseable": 1,
        "image_fetch_failed": 1,
        "image_outside_root": 1,
        "image_remote_url": 1,
    }
    # --retry-failed also retries the permanent ones (the model refuses again: still one failure, counted once)
    stats3 = run_engine(
        TOPICS, LocalHTMLSource(corpus), _llm(url, monkeypatch), out, _opts(retry_failed=True), progress=False
    )
    assert stats3["run"]["records"] == 0 and stats3["failures"]["reply_unparseable"] == 1
    assert stats3["totals"]["failed_units"] == stats2["totals"]["failed_units"]


def test_engine_max_samples_and_cli(corpus, llm_server, tmp_path, monkeypatch, capsys):
    from cambrian.cli.main import main

    url, replies = llm_server
    replies.rules = [("sub-topics", '```json\n{"Geology": {"Volcanology": ["Volcano types", "Lava/magma"]}}\n```')]
    (tmp_path / "fields.txt").write_text("# field lines\nGeology: Volcanology, Petrology\n")
    monkeypatch.setenv("CAMBRIAN_TEST_KEY", KEY)
    rc = main(
        [
            "data",
            "engine",
            "--out",
            str(tmp_path / "o"),
            "--fields",
            str(tmp_path / "fields.txt"),
            "--source",
            "local",
            "--pages",
            str(corpus),
            "--llm-base-url",
            url,
            "--llm-model",
            "m",
            "--llm-api-key-env",
            "CAMBRIAN_TEST_KEY",
            "--llm-rpm",
            "0",
            "--max-samples",
            "2",
            "--no-progress",
            "--llm-max-retries",
            "0",
        ]
    )
    assert rc == 0
    assert json.loads((tmp_path / "o" / "topics.json").read_text()) == {
        "Geology": {"Volcanology": ["Volcano types", "Lava or magma"]}
    }
    assert len((tmp_path / "o" / "data.jsonl").read_text().splitlines()) == 2
    out = capsys.readouterr().out
    assert "API key: $CAMBRIAN_TEST_KEY" in out and KEY not in out
    assert (
        main(
            [
                "data",
                "engine",
                "--out",
                str(tmp_path / "o2"),
                "--topic",
                "x",
                "--source",
                "local",
                "--llm-base-url",
                url,
                "--llm-model",
                "m",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == "error: --source local needs --pages FOLDER"


def test_engine_stops_on_a_refused_key(corpus, tmp_path, monkeypatch):
    from cambrian.data.engine import LLMAuthError

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            data = json.dumps(
                {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
            ).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        llm = _llm(f"http://127.0.0.1:{srv.server_address[1]}/v1", monkeypatch)
        with pytest.raises(LLMAuthError) as e:
            run_engine(TOPICS, LocalHTMLSource(corpus), llm, tmp_path / "o", _opts(), progress=False)
        assert KEY not in str(e.value) and "***" in str(e.value)
        assert (tmp_path / "o" / "stats.json").exists()  # stats written on the way out
    finally:
        srv.shutdown()
        srv.server_close()


def test_generate_topics_counts_bad_replies(llm_server, monkeypatch):
    url, replies = llm_server
    replies.rules = [
        ("Geology", '{"Volcanology": ["Lava domes", {"topic": "Calderas"}, "Lava domes"]}'),
        ("Energy", "no idea"),
    ]
    from collections import Counter

    c = Counter()
    got = generate_topics(
        _llm(url, monkeypatch), [("Geology", ["Volcanology", "Petrology"]), ("Energy", ["Solar"])], 5, c
    )
    assert got == {"Geology": {"Volcanology": ["Lava domes", "Calderas"]}}
    assert c == {"topics": 2, "topics_subfields_missing": 1, "topics_reply_unparseable": 1}


# ---- parsing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply, pairs",
    [
        (
            '[{"question": "Q1?", "answer": "A1."}, {"question": "Q2?", "answer": "A2."}]',
            [("Q1?", "A1."), ("Q2?", "A2.")],
        ),
        ('```\n{"question": "Q?", "answer": 42}\n```', [("Q?", "42")]),
        ('Text first. ```json\n{"pairs": [{"Question": "Q?", "Answer": "A."}]}\n``` and after', [("Q?", "A.")]),
        ('{"q": "Q?", "a": "A."} {"unrelated": 1}', [("Q?", "A.")]),
        ("[{'question': 'Q?', 'answer': 'A.'},]", [("Q?", "A.")]),
        (
            "**Question 1:** What is it?\n**Answer 1:** A rock.\n\nQuestion 2: Where?\nAnswer 2: Brazil.",
            [("What is it?", "A rock."), ("Where?", "Brazil.")],
        ),
        (
            '[{"question": "", "answer": "A"}, {"question": "Q?", "answer": "A."}, "junk", {"question": "Q2?"}]',
            [("Q?", "A.")],
        ),
    ],
)
def test_parse_qa_messy_replies(reply, pairs):
    assert parse_qa(reply) == pairs


@pytest.mark.parametrize(
    "reply, reason",
    [
        ("", "empty"),
        ("I cannot do that.", "unparseable"),
        ('{"question": "Q?"', "unparseable"),
        ('[{"question": "Q?", "answer": ""}]', "no_qa"),
        ("x" * 60_000, "too_long"),
        ('[{"question": "<image> Q?", "answer": "A"}]', "no_qa"),
    ],
)
def test_parse_qa_failures_have_reasons(reply, reason):
    with pytest.raises(ReplyError) as e:
        parse_qa(reply)
    assert e.value.reason == reason


def test_extract_json_and_topics_and_fields():
    assert extract_json('noise {"a": [1, 2,],} tail') == {"a": [1, 2]}
    assert parse_topics('["Lava / ash", "  Domes  "]', ["Volcanology"], 5) == {"Volcanology": ["Lava or ash", "Domes"]}
    assert parse_topics('{"Field": {"volcanology": ["A", "B", "C"]}}', ["Volcanology"], 2) == {
        "Volcanology": ["A", "B"]
    }
    assert parse_fields("Geology: Petrology, Mineralogy\n\n# c\nEnergy: Solar Power") == [
        ("Geology", ["Petrology", "Mineralogy"]),
        ("Energy", ["Solar Power"]),
    ]
    with pytest.raises(ValueError, match="line 1: expected 'Field: Subfield"):
        parse_fields("no colon here")


def test_parse_sections_rules():
    html = (FIXTURE / "geology" / "volcano.html").read_text()
    kept, counts = parse_sections(html)
    assert [s.title for s in kept] == ["Types of volcanoes", "Eruptions"]
    assert counts == {"sections": 7, "skipped_history": 2, "too_short": 1, "no_images": 2, "kept": 2}
    assert [i.url for i in kept[1].images] == ["img/eruption.gif", "img/tiny.png", "img/huge.png", "img/refuse.png"]
    assert kept[1].images[0].caption == "Lava fountain during an eruption."
    kept, _ = parse_sections((FIXTURE / "geology" / "mineral.html").read_text())
    assert kept[0].title == "Quartz crystals" and len(kept[0].images) == 5  # old markup: .mw-headline, [edit] dropped
    kept, counts = parse_sections(html, min_words=0)
    assert "Short section" in [s.title for s in kept]


# ---- images ----------------------------------------------------------------------------------------------------
def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, format=fmt, **kw)
    return b.getvalue()


def test_normalize_image_formats_and_limits():
    rgba = Image.new("RGBA", (40, 30), (0, 0, 255, 0))
    rgba.paste((0, 255, 0, 255), (0, 0, 10, 10))
    png, size, fmt = normalize_image(_bytes(rgba, "PNG"))
    im = Image.open(io.BytesIO(png))
    assert (size, fmt, im.mode, im.getpixel((5, 5)), im.getpixel((30, 20))) == (
        (40, 30),
        "png",
        "RGB",
        (0, 255, 0),
        (255, 255, 255),
    )
    png, size, fmt = normalize_image(_bytes(Image.new("RGB", (400, 100), "red"), "JPEG"), max_side=200)
    assert (size, fmt) == ((200, 50), "jpeg")
    png, size, fmt = normalize_image(_bytes(Image.new("RGB", (40, 40), "red"), "WEBP"))
    assert fmt == "webp" and Image.open(io.BytesIO(png)).format == "PNG"
    for data, reason in (
        (_bytes(Image.new("RGB", (300, 300)), "PNG"), "image_too_many_pixels"),
        (b"\x89PNG\r\n\x1a\n garbage", "image_undecodable"),
        (b"<html>not an image</html>", "image_undecodable"),
        (_bytes(Image.new("RGB", (10, 40)), "PNG"), "image_too_small"),
    ):
        with pytest.raises(ImageSkip) as e:
            normalize_image(data, max_pixels=50_000)
        assert e.value.reason == reason


def test_svg_rasterised_bounded_and_confined(monkeypatch):
    pytest.importorskip("resvg_py")
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4000 2000"><circle cx="2000" cy="1000" r="500" fill="blue"/></svg>'
    png, size, fmt = normalize_image(svg, max_side=400)
    im = Image.open(io.BytesIO(png))
    assert (
        (size, fmt) == ((400, 200), "svg")
        and im.getpixel((200, 100)) == (0, 0, 255)
        and im.getpixel((5, 5)) == (255, 255, 255)
    )
    for bad in (
        b'<svg xmlns="http://www.w3.org/2000/svg"><image href="/etc/passwd"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="file:///x.png"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(http://x/y.css);</style></svg>',
    ):
        with pytest.raises(ImageSkip) as e:
            normalize_image(bad)
        assert e.value.reason == "svg_external_reference"
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(
        builtins,
        "__import__",
        lambda n, *a, **k: (_ for _ in ()).throw(ImportError(n)) if n == "resvg_py" else real(n, *a, **k),
    )
    with pytest.raises(ImageSkip) as e:
        normalize_image(svg)
    assert e.value.reason == "svg_no_rasteriser"


def test_original_image_url():
    t = "//upload.wikimedia.org/wikipedia/commons/thumb/a/ab/Mount_Fuji.jpg/220px-Mount_Fuji.jpg"
    assert original_image_url(t) == "https://upload.wikimedia.org/wikipedia/commons/a/ab/Mount_Fuji.jpg"
    t = "https://upload.wikimedia.org/wikipedia/commons/thumb/1/1c/Layers.svg/330px-Layers.svg.png"
    assert original_image_url(t) == "https://upload.wikimedia.org/wikipedia/commons/1/1c/Layers.svg"
    assert original_image_url("https://example.org/a/thumb/b.png") == "https://example.org/a/thumb/b.png"


def test_rate_limiter_spaces_calls():
    now = [0.0]
    slept = []
    lim = RateLimiter.per_minute(
        30, clock=lambda: now[0], sleep=lambda d: (slept.append(d), now.__setitem__(0, now[0] + d))
    )
    lim.wait()
    now[0] += 0.5
    lim.wait()
    now[0] += 5.0
    lim.wait()
    assert slept == [1.5] and lim.waited == 1.5  # 2 s apart: the second call waited 1.5 s, the third none
    RateLimiter.per_minute(0).wait()  # unlimited


# ---- the MediaWiki source against a local fake wiki ------------------------------------------------------------
def test_mediawiki_source_against_a_local_wiki(tmp_path):
    png_bytes = _bytes(Image.new("RGB", (64, 64), "green"), "PNG")
    seen = []

    class Wiki(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            u = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            seen.append((u.path, q, self.headers.get("User-Agent")))
            status, ctype, data = 200, "application/json", b""
            if u.path == "/w/api.php" and q.get("list") == "search":
                data = json.dumps({"query": {"search": [{"title": "Mount Fuji"}, {"title": "Gone"}]}}).encode()
            elif u.path == "/w/api.php" and q.get("action") == "parse" and q["page"] == "Mount Fuji":
                html = (
                    '<div class="mw-heading mw-heading2"><h2>Geology</h2></div><figure><img src="//'
                    + self.headers["Host"]
                    + '/img/thumb/a/ab/Fuji.png/220px-Fuji.png"><figcaption>Fuji.</figcaption>'
                    "</figure><p>" + "word " * 60 + "</p>"
                )
                data = json.dumps({"parse": {"title": "Mount Fuji", "text": html}}).encode()
            elif u.path == "/w/api.php":
                data = json.dumps({"error": {"code": "missingtitle", "info": "The page does not exist."}}).encode()
            elif u.path == "/img/a/ab/Fuji.png":
                ctype, data = "image/png", png_bytes
            elif u.path == "/img/busy.png":
                status = 503
            else:
                status = 404
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Wiki)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{srv.server_address[1]}"
    try:
        src = MediaWikiSource(f"http://{host}/w/api.php", user_agent="cambrian-test (t@example.org)", fetch_interval=0)
        refs = src.search("Mount Fuji volcano", 5)
        assert [r.url for r in refs] == [f"http://{host}/wiki/Mount_Fuji", f"http://{host}/wiki/Gone"]
        html = src.fetch_page(refs[0])
        with pytest.raises(FetchError) as e:
            src.fetch_page(refs[1])
        assert e.value.reason == "api_error"
        kept, _ = parse_sections(html)
        url = src.image_url(refs[0], kept[0].images[0].url)
        assert url == f"http://{host}/img/a/ab/Fuji.png"  # the original, not the 220px thumbnail
        assert src.fetch_image(url) == png_bytes
        with pytest.raises(FetchError) as e:
            src.fetch_image(url, max_bytes=10)
        assert (e.value.reason, e.value.permanent) == ("too_large", True)
        with pytest.raises(FetchError) as e:
            src.fetch_image(f"http://{host}/img/none.png")
        assert (e.value.reason, e.value.permanent) == ("http_404", True)
        with pytest.raises(FetchError) as e:
            src.fetch_image(f"http://{host}/img/busy.png")
        assert (e.value.reason, e.value.permanent) == ("http_503", False)
        with pytest.raises(FetchError) as e:
            src.fetch_image("file:///etc/passwd")
        assert e.value.reason == "image_unsupported_url"
        assert {ua for _, _, ua in seen} == {"cambrian-test (t@example.org)"}
        assert seen[0][1]["srsearch"] == "Mount Fuji volcano" and seen[0][1]["formatversion"] == "2"
    finally:
        srv.shutdown()
        srv.server_close()


def test_engine_through_cambrian_serve(corpus, tmp_path, monkeypatch):
    """The whole loop offline: the engine's QA generation through this project's own OpenAI-compatible server
    (`cambrian serve`, a tiny random model here). The model's text is no JSON, so no record comes out, but every
    image unit is accounted for: records + LLM failures by reason == images sent, and the image failures are the
    corpus's own."""
    pytest.importorskip("fastapi")
    from cambrian.models.cambrian_model import CambrianModel
    from cambrian.presets.models import load_preset
    from cambrian.serve.server import ServerThread
    from cambrian.serve.settings import ServeSettings

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = ServeSettings(model_name="tiny", max_tokens_cap=16, default_temperature=0.0)
    cfg = load_preset("tiny")
    cfg.llm.max_length = 4096  # the engine's prompt (section text + caption) is longer than the preset's 512
    with ServerThread(CambrianModel.from_config(cfg).eval(), settings) as srv:
        llm = OpenAIChat(srv.base_url, "tiny", temperature=0.0, max_tokens=16, max_retries=0, rpm=0)
        stats = run_engine(
            TOPICS, LocalHTMLSource(corpus), llm, tmp_path / "o", _opts(), model_name="tiny", progress=False
        )
    r, fails = stats["run"], stats["failures"]
    from_llm = sum(v for k, v in fails.items() if k.startswith(("reply_", "llm_")))
    assert r["images_ok"] == 6 and r["records"] + from_llm == 6, stats
    assert {k: v for k, v in fails.items() if k.startswith("image_")} == {
        "image_too_small": 1,
        "image_too_many_pixels": 1,
        "image_fetch_failed": 1,
        "image_outside_root": 1,
        "image_remote_url": 1,
    }
    assert not any(k.startswith("llm_http") for k in fails), fails  # the server answered every request
