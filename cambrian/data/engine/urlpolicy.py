"""Which URLs a page's ``<img src>`` may make the data engine fetch (server-side request forgery: a page must not make
it read an internal service, the cloud metadata endpoint or a loopback port).

An image URL is fetched only when

1. its scheme is http or https;
2. its host is the wiki's own, or on the allow-list: by default ``upload.wikimedia.org`` for a Wikimedia
   wiki (where every Wikipedia image lives), plus what ``--image-host`` adds (``*.example.org`` matches subdomains);
3. every address the host resolves to is public: loopback, private (RFC 1918, fc00::/7), link-local (169.254/16,
   the metadata endpoint), multicast, reserved and unspecified addresses are refused. The wiki's own host is exempt
   (it is the one the user chose; a wiki on a private network serves its images from there). The connection goes to
   the address that was checked (no second DNS lookup an attacker could answer differently), and a redirect is
   checked by the same rules before it is followed.

Through an HTTP(S) proxy (``http_proxy`` / ``https_proxy``), rules 1-3 still run on the URL, but the proxy makes
the connection.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable

WIKIMEDIA_UPLOAD = "upload.wikimedia.org"
_WIKIMEDIA = ("wikipedia.org", "wikimedia.org", "wiktionary.org", "wikibooks.org", "wikivoyage.org", "mediawiki.org")


class URLRefused(Exception):
    """A URL the policy does not fetch; ``reason`` is counted (``image_host_not_allowed``, ...)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _host(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    try:
        u.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise URLRefused("image_bad_url", url[:120]) from None
    return (u.hostname or "").lower().rstrip(".")


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def default_allowed_hosts(source_url: str) -> list[str]:
    host = _host(source_url)
    return [WIKIMEDIA_UPLOAD] if any(host == d or host.endswith("." + d) for d in _WIKIMEDIA) else []


class URLPolicy:
    """Rules 1-3 of the module docstring for one source; ``opener()`` fetches through them."""

    def __init__(self, source_url: str, allow_hosts: Iterable[str] = ()):
        self.source = _host(source_url)
        self.allow = [h.strip().lower().rstrip(".") for h in allow_hosts if h and h.strip()]

    def _allowed_host(self, host: str) -> bool:
        return any(host == a or (a.startswith("*.") and host.endswith(a[1:])) for a in self.allow)

    def check(self, url: str) -> None:
        """Rules 1 and 2 (no network); raises :class:`URLRefused`."""
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise URLRefused("image_unsupported_url", url[:120])
        host = _host(url)
        if not host:
            raise URLRefused("image_bad_url", url[:120])
        if host != self.source and not self._allowed_host(host):
            raise URLRefused(
                "image_host_not_allowed",
                f"{host} is neither the wiki's host nor allowed (--image-host; allowed: {', '.join(self.allow) or 'none'})",
            )

    def address(self, host: str, port: int) -> str | None:
        """Rule 3: the vetted address to connect to (None: the wiki's own host, connect as usual)."""
        if host.lower().rstrip(".") == self.source:
            return None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise URLRefused("image_dns_failed", f"{host}: {e}") from None
        addrs = [info[4][0] for info in infos]
        bad = [a for a in addrs if not is_public(a)]
        if bad or not addrs:
            raise URLRefused("image_private_address", f"{host} resolves to {', '.join(bad) or 'nothing'}")
        return addrs[0]

    def opener(self) -> urllib.request.OpenerDirector:
        """An opener whose connections go to vetted addresses and whose redirects pass :meth:`check` first."""
        policy = self

        def pinned(cls):
            class Pinned(cls):
                def __init__(self, host, *a, **kw):
                    super().__init__(host, *a, **kw)
                    self._create_connection = self._pinned_connection

                def _pinned_connection(self, address, *a, **kw):
                    host, port = address
                    vetted = policy.address(host, port)
                    return socket.create_connection((vetted or host, port), *a, **kw)

            return Pinned

        http_conn, https_conn = pinned(http.client.HTTPConnection), pinned(http.client.HTTPSConnection)

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):  # through a proxy, the proxy connects
                return self.do_open(http.client.HTTPConnection if req.has_proxy() else http_conn, req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):
                cls = http.client.HTTPSConnection if req.has_proxy() else https_conn
                return self.do_open(cls, req, context=self._context)

        class Redirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req, fp, code, msg, headers, newurl):
                policy.check(urllib.parse.urljoin(req.full_url, newurl))
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        return urllib.request.build_opener(HTTP, HTTPS, Redirect)
