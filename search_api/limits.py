"""Request size limits, one convention: whatever is over its limit is a 413 problem+json.

- **The body**, ``api_max_upload_bytes`` (Flask's ``MAX_CONTENT_LENGTH``): refused before
  a byte of it is read when ``Content-Length`` declares more; a chunked body one byte
  past the limit.
- **The body of a view that takes one image** (``/search``, ``/explain``): one image,
  ``max_image_bytes``, plus ``api_max_form_memory_bytes`` for the other fields; refused
  the same way.
- **One uploaded image**, ``max_image_bytes``: refused as it streams in, before the rest
  of the form is read, in the views marked with :func:`images`.
- A text field (``api_max_form_memory_bytes``) and the number of parts
  (``api_max_form_parts``): Werkzeug's own 413, as the form is parsed.
- The request line and headers: gunicorn's limits and head deadline
  (:mod:`search_api.serve`), a 400 or a closed connection before the app sees anything.

The body limits count bytes on the wire, the image limit the bytes of the file. A 413
leaves the rest of the body unread; gunicorn then closes the connection (after a short
drain), so a client should read the answer while it sends (curl, urllib3 and requests
do) or send ``Expect: 100-continue``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from tempfile import SpooledTemporaryFile
from typing import IO, TypeVar

from flask import Flask, Request, current_app, request

from indexer.config import Settings
from search_api.errors import TooLarge

F = TypeVar("F", bound=Callable)

SPOOL_BYTES = 500 * 1024  # a part bigger than this goes to a temporary file (as Werkzeug's)


def images(field: str, *, single: bool) -> Callable[[F], F]:
    """Mark a view that takes uploaded images in ``field``: each file over ``max_image_bytes``
    is refused as it arrives; ``single``: the view takes one image and small fields, so a
    body larger than that is refused before it is read. Put it below the route decorators.
    """

    def mark(view: F) -> F:
        view.image_upload = (field, single)  # functools.wraps copies it onto the wrappers
        return view

    return mark


class LimitedRequest(Request):
    """Flask's request, whose file parts refuse to grow past ``max_file_size`` bytes."""

    max_file_size: int | None = None
    file_field: str | None = None  # named in the 413

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if self.max_file_size is None:
            return super()._get_file_stream(
                total_content_length, content_type, filename, content_length
            )
        return _CappedSpool(self.max_file_size, filename, self.file_field)


class _CappedSpool(SpooledTemporaryFile):
    """A part's file that raises :class:`TooLarge` once written past ``limit`` bytes."""

    def __init__(self, limit: int, filename: str | None, field: str | None) -> None:
        super().__init__(max_size=SPOOL_BYTES, mode="rb+")
        self._limit = limit
        self._written = 0
        self._filename = filename
        self._field = field

    def write(self, data) -> int:
        self._written += len(data)
        if self._written > self._limit:
            self.close()
            name = f" {self._filename!r}" if self._filename else ""
            raise TooLarge(
                f"uploaded file{name} is larger than the image limit of {_size(self._limit)}",
                field=self._field,
            )
        return super().write(data)


def _size(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"


def install(app: Flask, settings: Settings) -> None:
    """Apply the limits to every request of ``app``, before its view reads the body."""
    app.request_class = LimitedRequest

    @app.before_request
    def _limit_body() -> None:
        view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
        marked = getattr(view, "image_upload", None)
        limit = request.max_content_length
        if marked is not None:
            field, single = marked
            request.max_file_size = settings.max_image_bytes
            request.file_field = field
            if single:
                one_image = settings.max_image_bytes + settings.api_max_form_memory_bytes
                limit = one_image if limit is None else min(limit, one_image)
                request.max_content_length = limit
        if limit is None:
            return
        declared = request.content_length
        if declared is not None and declared > limit:
            raise TooLarge(f"request body of {declared} bytes is over the limit of {_size(limit)}")
        _limit_unsized_body(limit)


def _limit_unsized_body(limit: int) -> None:
    """Refuse a chunked body (no Content-Length) over the limit with 413.

    Werkzeug only truncates such a body at ``MAX_CONTENT_LENGTH``, which would
    turn an oversized upload into a confusing "invalid JSON" or a cut image.
    """
    environ = request.environ
    if request.content_length is not None:
        return
    if not environ.get("wsgi.input_terminated"):
        return  # no length and no terminated stream: Werkzeug reads nothing
    raw = environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = raw.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise TooLarge(f"chunked request body is over the limit of {_size(limit)}")
    environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
    environ["CONTENT_LENGTH"] = str(size)
