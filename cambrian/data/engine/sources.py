"""Page sources for the data engine (registry ``PAGE_SOURCES``): where pages and their images come from.

* ``local``: a folder of ``.html`` files (offline). ``search(topic)`` ranks pages by how many of the topic's
  words appear in the page title; images are files referenced relative to the page, confined to the folder.
* ``mediawiki``: a MediaWiki API (default English Wikipedia). ``search`` uses the wiki's own search
  (``list=search``; the official code used Google Programmable Search for "Wikipedia <topic>", which needs two API
  keys), pages come from ``action=parse``, images are downloaded from their original URLs with a user agent, a
  size limit and a minimum interval between requests (official: 1 s). Only URLs the :mod:`.urlpolicy` allows are
  fetched: the wiki's own host, ``upload.wikimedia.org`` for a Wikimedia wiki, hosts given with ``image_hosts``,
  and never a loopback, private or link-local address (a page cannot make the engine read an internal service).

A source raises :class:`FetchError` with ``permanent`` True for answers that will not change (404, too large)
and False for ones worth retrying in a later run (timeouts, 429, 5xx).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...registry import Registry
from ...utils.log import get_logger
from ..llava import inside_root
from .ratelimit import RateLimiter
from .urlpolicy import URLPolicy, URLRefused, default_allowed_hosts

log = get_logger("engine")

MAX_PAGE_BYTES = 8 << 20
MAX_IMAGE_BYTES = 25 << 20
# Wikimedia asks bots for a user agent with contact details: pass --user-agent or set USER_AGENT
DEFAULT_USER_AGENT = "cambrian-data-engine/0.1 (research data collection; no contact given)"
_STOP = frozenset("a an and the of in on for to with by from at as is are or its into about over under".split())
_WORD = re.compile(r"[a-z0-9]+")


class FetchError(Exception):
    def __init__(self, reason: str, detail: str = "", permanent: bool = True):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.permanent = permanent


@dataclass(frozen=True)
class PageRef:
    title: str
    url: str  # provenance: where the page is (file path relative to the corpus, or its wiki URL)


class PageSource:
    name = "?"

    def search(self, topic: str, limit: int) -> list[PageRef]:
        raise NotImplementedError

    def fetch_page(self, ref: PageRef) -> str:
        raise NotImplementedError

    def image_url(self, ref: PageRef, src: str) -> str:
        """The address an ``<img src>`` of page ``ref`` is fetched from (and recorded as)."""
        raise NotImplementedError

    def fetch_image(self, url: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
        raise NotImplementedError


PAGE_SOURCES: Registry[Callable[..., PageSource]] = Registry("page source")


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


@PAGE_SOURCES.register("local")
class LocalHTMLSource(PageSource):
    """``root``: a folder of ``*.html`` / ``*.htm`` pages (searched recursively)."""

    name = "local"

    def __init__(self, root: str | os.PathLike, **_):
        from .html import page_title

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"page folder {self.root} does not exist")
        self.pages: list[tuple[str, str, set[str]]] = []  # (relative path, title, title words)
        self.skipped: list[str] = []  # pages that cannot be read (too large, unreadable)
        for p in sorted(self.root.rglob("*")):
            if p.suffix.lower() in (".html", ".htm") and p.is_file():
                try:
                    html = _read_limited(p, MAX_PAGE_BYTES).decode("utf-8", "replace")
                except (FetchError, OSError) as e:
                    self.skipped.append(f"{p.relative_to(self.root)}: {e}")
                    continue
                title = page_title(html) or p.stem.replace("_", " ")
                self.pages.append((p.relative_to(self.root).as_posix(), title, words(title) | words(p.stem)))
        if self.skipped:
            log.warning(f"{len(self.skipped)} page(s) skipped under {self.root}, e.g. {self.skipped[0]}")
        if not self.pages:
            raise FileNotFoundError(f"no readable .html pages under {self.root}")

    def search(self, topic: str, limit: int) -> list[PageRef]:
        tw = words(topic)
        scored = [(len(tw & w), rel, title) for rel, title, w in self.pages]
        scored = [s for s in scored if s[0] > 0]
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [PageRef(title, rel) for _, rel, title in scored[:limit]]

    def fetch_page(self, ref: PageRef) -> str:
        p = self.root / ref.url
        if not inside_root(p, self.root):
            raise FetchError("page_outside_root", ref.url)
        try:
            return _read_limited(p, MAX_PAGE_BYTES).decode("utf-8", "replace")
        except OSError as e:
            raise FetchError("page_fetch_failed", str(e)) from None

    def image_url(self, ref: PageRef, src: str) -> str:
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I) or src.startswith("//"):
            return src  # a URL: not fetched by the offline source
        path = urllib.parse.unquote(src.split("?")[0].split("#")[0])
        if path.startswith("/"):  # site-root relative: the corpus folder is the site root
            return os.path.normpath(path.lstrip("/")).replace(os.sep, "/")
        rel = (Path(ref.url).parent / path).as_posix()
        return os.path.normpath(rel).replace(os.sep, "/")

    def fetch_image(self, url: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
        if re.match(r"^[a-z][a-z0-9+.-]*:", url, re.I) or url.startswith("//"):
            raise FetchError("image_remote_url", f"{url[:80]} (the local source reads files only)")
        p = self.root / url
        if not inside_root(p, self.root):
            raise FetchError("image_outside_root", url)
        try:
            return _read_limited(p, max_bytes)
        except FetchError:
            raise
        except OSError as e:
            raise FetchError("image_fetch_failed", f"{url}: {e.strerror or e}") from None


def _read_limited(path: Path, max_bytes: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FetchError("too_large", f"{path.name} > {max_bytes} bytes")
    return data


@PAGE_SOURCES.register("mediawiki")
class MediaWikiSource(PageSource):
    """``api``: the wiki's ``api.php`` URL. Every request goes through ``limiter`` (minimum interval). ``image_hosts``:
    more hosts images may come from (``*.example.org`` for subdomains), see :mod:`.urlpolicy`."""

    name = "mediawiki"

    def __init__(
        self,
        api: str = "https://en.wikipedia.org/w/api.php",
        user_agent: str | None = None,
        fetch_interval: float = 1.0,
        timeout: float = 30.0,
        limiter: RateLimiter | None = None,
        image_hosts=(),
        **_,
    ):
        self.api = api
        self.policy = URLPolicy(api, [*default_allowed_hosts(api), *(image_hosts or ())])
        self._opener = self.policy.opener()
        self.user_agent = user_agent or os.environ.get("USER_AGENT") or DEFAULT_USER_AGENT
        self.timeout = timeout
        self.limiter = limiter or RateLimiter(fetch_interval)
        parsed = urllib.parse.urlsplit(api)
        path = parsed.path.rsplit("/w/api.php", 1)[0] if parsed.path.endswith("/w/api.php") else ""
        self.wiki_base = f"{parsed.scheme}://{parsed.netloc}{path}/wiki/"

    def _get(self, url: str, max_bytes: int) -> bytes:
        self.limiter.wait()
        req = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        try:
            with self._opener.open(req, timeout=self.timeout) as r:  # the URL policy: vetted addresses, redirects
                data = r.read(max_bytes + 1)
        except URLRefused as e:
            raise FetchError(e.reason, e.detail) from None
        except urllib.error.HTTPError as e:
            transient = e.code == 429 or e.code >= 500
            raise FetchError("http_" + str(e.code), url[:120], permanent=not transient) from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise FetchError("network_error", f"{url[:120]}: {getattr(e, 'reason', e)}", permanent=False) from None
        if len(data) > max_bytes:
            raise FetchError("too_large", f"{url[:120]} > {max_bytes} bytes")
        return data

    def _api(self, **params) -> dict:
        params = {"format": "json", "formatversion": "2", **params}
        data = self._get(self.api + "?" + urllib.parse.urlencode(params), MAX_PAGE_BYTES)
        try:
            out = json.loads(data)
        except ValueError:
            raise FetchError("bad_api_reply", "not JSON") from None
        if "error" in out:
            raise FetchError("api_error", str(out["error"].get("info", out["error"]))[:120])
        return out

    def search(self, topic: str, limit: int) -> list[PageRef]:
        out = self._api(action="query", list="search", srsearch=topic, srlimit=str(limit), srnamespace="0")
        hits = out.get("query", {}).get("search", [])
        return [
            PageRef(h["title"], self.wiki_base + urllib.parse.quote(h["title"].replace(" ", "_")))
            for h in hits
            if isinstance(h, dict) and h.get("title")
        ][:limit]

    def fetch_page(self, ref: PageRef) -> str:
        out = self._api(action="parse", page=ref.title, prop="text", redirects="1")
        text = out.get("parse", {}).get("text")
        if isinstance(text, dict):  # formatversion 1
            text = text.get("*")
        if not isinstance(text, str):
            raise FetchError("page_fetch_failed", f"no text for {ref.title!r}")
        return text

    def image_url(self, ref: PageRef, src: str) -> str:
        from .images import original_image_url

        return original_image_url(urllib.parse.urljoin(ref.url, src))

    def fetch_image(self, url: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
        try:
            self.policy.check(url)
        except URLRefused as e:
            raise FetchError(e.reason, e.detail) from None
        return self._get(url, max_bytes)
