"""Request parameters read at the boundary, each refused with its field named.

A parameter may come from the query string, a form field or a JSON body field
(in that order of precedence: JSON, form, query string).
"""

from __future__ import annotations

import math
import re
from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest

from indexer.regions import BadBox, Box
from search_api.errors import ApiError

ITEM_ID_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_TEXT = 512


def json_body() -> dict[str, Any] | None:
    """The JSON object of the body, None for a non-JSON request; 400/422 if malformed."""
    if not request.is_json:
        return None
    try:
        body = request.get_json(force=True, silent=False)
    except BadRequest:
        raise ApiError(400, "the body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise ApiError(422, "the JSON body must be an object", field="body")
    return body


def raw(name: str, body: dict[str, Any] | None) -> Any:
    if body is not None and name in body:
        if body[name] is None:  # an optional field is left out, never sent as null
            raise ApiError(422, f"{name} must not be null (leave it out instead)", field=name)
        return body[name]
    # A JSON request has no form fields: not parsing for them saves most of this call.
    for source in (request.args,) if body is not None else (request.form, request.args):
        values = source.getlist(name)
        if len(values) > 1:
            raise ApiError(422, f"{name} must be given once, got {len(values)} values", field=name)
        if values:
            return values[0]
    return None


def integer(name: str, value: Any, *, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,12}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(422, f"{name} must be an integer from {low} to {high}", field=name)
    if not low <= value <= high:
        raise ApiError(422, f"{name} must be from {low} to {high}, got {value}", field=name)
    return value


def number(name: str, value: Any, *, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ApiError(422, f"{name} must be a number from {low} to {high}",
                           field=name) from None  # fmt: skip
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(422, f"{name} must be a number from {low} to {high}", field=name)
    if not low <= value <= high:
        raise ApiError(422, f"{name} must be from {low} to {high}, got {value}", field=name)
    return float(value)


def boolean(name: str, value: Any, *, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ApiError(422, f"{name} must be true or false", field=name)


def text(name: str, value: Any, *, max_length: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ApiError(
            422, f"{name} must be a non-empty string of at most {max_length} characters",
            field=name,
        )  # fmt: skip
    return value


def item_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not ITEM_ID_RE.match(value):
        raise ApiError(422, f"{name} must be an item id: 64 lowercase hex digits", field=name)
    return value


def box(name: str, value: Any) -> Box | None:
    """A region of the query photo: ``"x0,y0,x1,y1"`` or a JSON array of 4 numbers."""
    if value is None:
        return None
    try:
        return Box.of(value)
    except BadBox as error:
        raise ApiError(422, str(error), field=name) from None
