"""API keys: ``Authorization: Bearer <key>``, compared in constant time.

Writes always need the key; reads need it only with ``api_read_key_required``.
A key in the query string is refused: URLs end up in logs and browser history.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import current_app, request

from search_api.errors import ApiError

_QUERY_KEY_NAMES = ("api_key", "apikey", "key", "token", "access_token")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lookalike"'}


def check_key() -> None:
    """Raise 401 unless the request carries the configured key in its Authorization header."""
    if any(name in request.args for name in _QUERY_KEY_NAMES):
        raise ApiError(
            401, "API keys are not accepted in the query string; send "
            "'Authorization: Bearer <key>'", headers=_CHALLENGE,
        )  # fmt: skip
    expected = current_app.extensions["lookalike"].settings.api_key
    if not expected:
        raise ApiError(
            401, "writes are disabled: no API key is configured (LOOKALIKE_API_KEY)",
            headers=_CHALLENGE,
        )  # fmt: skip
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'",
                       headers=_CHALLENGE)  # fmt: skip
    if not hmac.compare_digest(given.strip().encode(), expected.get_secret_value().encode()):
        raise ApiError(401, "wrong API key", headers=_CHALLENGE)


def write_access(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(*args, **kwargs):
        check_key()
        return view(*args, **kwargs)

    return wrapped


def read_access(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_app.extensions["lookalike"].settings.api_read_key_required:
            check_key()
        return view(*args, **kwargs)

    return wrapped
