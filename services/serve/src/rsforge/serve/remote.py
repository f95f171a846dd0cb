"""Reading remote images for `image_url` parts, only from hosts an operator allowed.

Without an allow-list the server makes no outgoing request at all: a client could otherwise make it
reach internal addresses (cloud metadata endpoints, admin ports). With one, only `http(s)` URLs whose
host is listed exactly are read, redirects are not followed (one could lead anywhere), and the body
is read with a size limit and a timeout.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

from rsforge.serve.errors import APIError

DEFAULT_FETCH_TIMEOUT_S = 10.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} not followed", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirects)


class ImageFetcher:
    """`fetch(url, where)` for the request parsers (`images.Fetch`): the image bytes at `url`, or an
    `APIError` naming `where` (the request field) and what went wrong."""

    def __init__(self, allowed_hosts: list[str], *, max_bytes: int, timeout_s: float = DEFAULT_FETCH_TIMEOUT_S):
        self.allowed_hosts = frozenset(h.lower().rstrip(".") for h in allowed_hosts)
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def __call__(self, url: str, where: str) -> bytes:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        if parts.scheme not in ("http", "https") or not host:
            raise APIError(400, f"{where}: not an http(s) URL with a host: {url[:80]!r}", param=where)
        if parts.username or parts.password:
            raise APIError(400, f"{where}: URLs with credentials are not fetched", param=where)
        if host not in self.allowed_hosts:
            raise APIError(
                400,
                f"{where}: the host '{host}' is not on this server's image-host allow-list; "
                "send the image inline as a base64 data URL",
                param=where,
                code="remote_image_url",
            )
        request = urllib.request.Request(url, headers={"User-Agent": "rsforge-serve"})
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(where)
                data = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            message = f"{where}: fetching {url[:80]} failed: HTTP {exc.code} {exc.reason}"
            raise APIError(400, message, param=where) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise APIError(400, f"{where}: fetching {url[:80]} failed: {reason}", param=where) from None
        if len(data) > self.max_bytes:
            raise self._too_large(where)
        return data

    def _too_large(self, where: str) -> APIError:
        return APIError(413, f"{where}: the remote image is larger than {self.max_bytes} bytes", param=where)
