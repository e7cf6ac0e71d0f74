"""Read one open response of a fetch: status, length, type, then the body within bounds.

Step 5 of every request (:mod:`~indexer.sources.fetch`). Before the body: the
status (:func:`~indexer.sources.failures.status_failure` for anything not OK),
the Content-Length against the byte limit, the Content-Type and
Content-Encoding. Then the body is streamed in chunks, refused one byte past
the limit, and its first bytes are checked as soon as they are in, so an HTML
login page served as ``image/jpeg`` is refused without reading it all
(:mod:`~indexer.sources.content` for images, :mod:`~indexer.sources.documents`
for pages and sitemaps).

Every read runs under the fetch's deadline: the socket's timeout is capped at
the time left, and the watchdog of :mod:`~indexer.sources.pinned` shuts the
socket down when it passes; the end of body that shutdown looks like is
reported as the deadline, never taken for a complete body.
"""

from __future__ import annotations

from collections.abc import Callable

from indexer.sources.content import (
    SNIFF_BYTES,
    bytes_refusal,
    content_type_refusal,
    media_type,
    sniff_image,
)
from indexer.sources.documents import (
    DOCUMENT_ENCODINGS,
    check_served,
    document_format,
    refuse_binary,
    unpack,
)
from indexer.sources.failures import FetchError, NotNow, network_failure, status_failure
from indexer.sources.hops import Hop
from indexer.sources.pinned import Deadline, PinnedResponse
from indexer.sources.policy import FetchPolicy
from indexer.sources.retries import parse_retry_after

OK_STATUSES = frozenset({200, 203})
CHUNK_BYTES = 64 * 1024


class ResponseReader:
    """Reads ``response``, the answer to ``hop``, for the fetch of ``url`` under ``policy``."""

    def __init__(
        self,
        response: PinnedResponse,
        hop: Hop,
        deadline: Deadline,
        url: str,
        policy: FetchPolicy,
    ) -> None:
        self.response = response
        self.hop = hop
        self.deadline = deadline
        self.url = url
        self.policy = policy

    def check_status(self) -> None:
        """Raise the FetchError of a status that is not OK (a redirect was followed before)."""
        status = self.response.status
        if status not in OK_STATUSES:
            retry_after = parse_retry_after(self.response.headers.get("Retry-After"))
            raise status_failure(status, retry_after, self.url)

    def image(self) -> tuple[bytes, str]:
        """The body, if it is an image we decode, and its format."""
        headers = self.response.headers
        self._check_length(self.policy.max_bytes)
        content_type = headers.get("Content-Type")
        if (why := content_type_refusal(content_type)) is not None:
            raise self._refused(why)
        encoding = media_type(headers.get("Content-Encoding"))
        if encoding not in ("", "identity"):
            raise self._refused(f"unexpected Content-Encoding {encoding}")

        def check(head: bytes) -> None:  # refuses HTML before reading it all
            _image_format(head, content_type, self.url)

        body = self._body(self.policy.max_bytes, check)
        return body, _image_format(body, content_type, self.url)

    def document(self, kinds: tuple[str, ...]) -> tuple[bytes, str]:
        """The body, decompressed, if it is one of ``kinds``, and the kind it turned out to be."""
        headers = self.response.headers
        limit = self.policy.max_document_bytes
        self._check_length(limit)
        served = media_type(headers.get("Content-Type"))
        check_served(served, kinds, self.url)
        encoding = media_type(headers.get("Content-Encoding"))
        if encoding not in DOCUMENT_ENCODINGS:
            raise self._refused(f"unexpected Content-Encoding {encoding}")
        compressed = encoding not in ("", "identity")

        def check(head: bytes) -> None:  # an image served as a page: stop before reading it
            if not compressed:
                refuse_binary(head, served, self.url)

        data = self._body(limit, check)
        data = unpack(data, compressed, served, kinds, limit, self.url)
        return data, document_format(data, served, kinds, self.url)

    def up_to(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body; the rest is not read."""
        body = bytearray()
        while len(body) < limit:
            chunk = self._chunk(min(CHUNK_BYTES, limit - len(body)))
            if not chunk:
                break
            body += chunk
        return bytes(body)

    def _check_length(self, limit: int) -> None:
        length = _content_length(self.response.headers.get("Content-Length"))
        if length is not None and length > limit:
            raise self._refused(f"body exceeds {limit} bytes (Content-Length: {length})")

    def _body(self, limit: int, check_head: Callable[[bytes], None]) -> bytes:
        """The whole body, refused past ``limit`` bytes; ``check_head`` sees its first bytes."""
        body = bytearray()
        checked = False
        while True:
            # One byte past the limit is enough to know it was exceeded.
            chunk = self._chunk(min(CHUNK_BYTES, limit + 1 - len(body)))
            if not chunk:
                break
            body += chunk
            if len(body) > limit:
                raise self._refused(f"body exceeds {limit} bytes")
            if not checked and len(body) >= SNIFF_BYTES:
                check_head(bytes(body[:SNIFF_BYTES]))
                checked = True
        if not body:
            raise self._refused("empty body")
        if not checked:
            check_head(bytes(body))
        return bytes(body)

    def _chunk(self, amount: int) -> bytes:
        try:
            chunk = self.response.read(amount)
        except Exception as exc:
            failure = network_failure(exc, self.hop.endpoint, self.deadline, self.url, self.policy)
            raise failure from exc
        # A watchdog shutdown reads as a clean end of body: never take it for one.
        if self.response.deadline_passed:
            raise NotNow(str(self.deadline), permanent=False, url=self.url)
        return chunk

    def _refused(self, why: str) -> FetchError:
        return FetchError(why, permanent=True, url=self.url)


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _image_format(body: bytes, content_type: str | None, url: str) -> str:
    """The format of the image ``body`` opens, or a FetchError saying what it is instead."""
    head = bytes(body[:SNIFF_BYTES])
    if (why := bytes_refusal(head, content_type)) is not None:
        raise FetchError(why, permanent=True, url=url)
    fmt = sniff_image(head)
    assert fmt is not None  # bytes_refusal passed
    return fmt
