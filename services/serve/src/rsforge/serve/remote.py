"""Reading remote images for `image_url` parts, only from hosts an operator allowed.

Without an allow-list the server makes no outgoing request at all: a client could otherwise make it
reach internal addresses (cloud metadata endpoints, admin ports). With one, only `http(s)` URLs whose
host is listed exactly are read, redirects are not followed (one could lead anywhere), and the body
is read with a size limit and a total deadline: a host sending a byte every few seconds cannot hold a
request longer than the timeout. Requests that fetch are parsed on the fetcher's own thread pool
(`pool`, see `names_remote_image`), so slow hosts never delay requests that carry their images inline.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from rsforge.serve.errors import APIError

DEFAULT_FETCH_TIMEOUT_S = 10.0
FETCH_WORKERS = 8  # requests fetching at once; more wait their turn without touching the default pool
READ_CHUNK = 64 * 1024
REMOTE = ("http://", "https://")


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
        self.pool = ThreadPoolExecutor(FETCH_WORKERS, thread_name_prefix="rsforge-image-fetch")

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
        deadline = time.monotonic() + self.timeout_s
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(where)
                data = self._read(response, deadline, url, where)
        except urllib.error.HTTPError as exc:
            message = f"{where}: fetching {url[:80]} failed: HTTP {exc.code} {exc.reason}"
            raise APIError(400, message, param=where) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise APIError(400, f"{where}: fetching {url[:80]} failed: {reason}", param=where) from None
        return data

    def _read(self, response: Any, deadline: float, url: str, where: str) -> bytes:
        # `read1` returns whatever one receive brings, so the deadline is checked however slowly bytes
        # trickle in (the socket timeout only bounds each single receive).
        chunks, size = [], 0
        while chunk := response.read1(READ_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large(where)
            if time.monotonic() > deadline:
                raise APIError(400, f"{where}: fetching {url[:80]} timed out: the image did not arrive within "
                               f"{self.timeout_s:g} s (image_fetch_timeout_s)", param=where)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, where: str) -> APIError:
        return APIError(413, f"{where}: the remote image is larger than {self.max_bytes} bytes", param=where)


def names_remote_image(body: Any) -> bool:
    """Whether a chat or change-mask request body names an http(s) image (and so may wait on a fetch)."""
    if not isinstance(body, dict):
        return False
    urls = [body.get("before"), body.get("after")]
    for message in body.get("messages") if isinstance(body.get("messages"), list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            image_url = part.get("image_url") if isinstance(part, dict) else None
            urls.append(image_url.get("url") if isinstance(image_url, dict) else None)
    return any(isinstance(url, str) and url.startswith(REMOTE) for url in urls)
