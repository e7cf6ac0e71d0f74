"""The UI pages. They render an empty shell; the page's script fills it from the JSON API.

Nothing from the catalogue is rendered on the server, and the scripts insert it
as text, so a product title can never become markup. The Content-Security-Policy
forbids inline scripts and foreign images as a second line of defence.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint(
    "webui", __name__,
    template_folder="templates", static_folder="static", static_url_path="/ui/static",
)  # fmt: skip

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])  # fmt: skip

# (template, nav label, endpoint) of each page, in the navigation's order
PAGES = [("search", "Search", "webui.search"), ("map", "Map", "webui.map_page"),
         ("status", "Status", "webui.status")]  # fmt: skip


def _page(name: str):
    # The k input's bound is the API's (LOOKALIKE_API_SEARCH_MAX_K), read from the settings
    max_k = current_app.extensions["lookalike"].settings.api_search_max_k
    return render_template(f"{name}.html", page=name, pages=PAGES, max_k=max_k)


@bp.get("/")
def search():
    return _page("search")


@bp.get("/map")
def map_page():
    return _page("map")


@bp.get("/status")
def status():
    return _page("status")


@bp.after_request
def _secure(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype == "text/html":
        response.headers["X-Frame-Options"] = "DENY"
    return response
