"""One error shape for the whole API: RFC 9457 ``application/problem+json``.

Every error, Werkzeug's own (404, 405, 413) and unexpected exceptions (500)
included, leaves as the same small JSON object; never an HTML page or a traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    """An error with a status, a human message and optional details (e.g. the field)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers or {}


class TooLarge(RequestEntityTooLarge):
    """A 413 that says which limit the request is over (see :mod:`search_api.limits`).

    An HTTPException, so that it can leave Werkzeug's form parser like Werkzeug's own."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


def problem(
    status: int, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail}  # fmt: skip
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return problem(error.status, error.detail, field=error.field, headers=error.headers)

    @app.errorhandler(TooLarge)
    def _too_large(error: TooLarge) -> Response:
        return problem(413, error.description, field=error.field)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        headers = {}
        if status == 405 and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        detail = {
            404: "no such resource",
            413: "request body too large (size or number of parts over the limit)",
        }.get(status, error.description or HTTPStatus(status).phrase)
        return problem(status, detail, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "internal error; the server log has the details")
