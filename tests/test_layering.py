"""The dependency direction, read from the source: ``webui → search_api → indexer ← workers``.

Every module of each package is parsed with :mod:`ast` and every import is checked,
at the top or inside a function: ``import x``, ``from x import y``,
``importlib.import_module("x")`` / ``__import__("x")``, and strings that name an
import target the way gunicorn and entry points do (``"x:create_app()"``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELLS = ("workers", "search_api", "webui")
WEB = ("flask", "werkzeug", "gunicorn")
QUEUE = ("celery", "kombu")

# package -> (forbidden top-level names, allowed exceptions by full module name)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "indexer": ((*WEB, *QUEUE, *SHELLS), ()),
    # The API queues work by task name through the workers' small client, nothing else.
    "search_api": (("workers", "webui", *QUEUE), ("workers.client",)),
    "workers": (("search_api", "webui", *WEB), ()),
    "webui": (("workers", *QUEUE), ()),
}
IMPORT_CALLS = {"import_module", "__import__"}
TARGET = re.compile(r"^([A-Za-z_]\w*)(?:\.[\w.]+)?:\w")  # "package.module:attribute..."


def imported_names(source: str) -> list[tuple[int, str]]:
    """(line, module name) of every import in ``source``, relative imports left out."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and _called_name(node.func) in IMPORT_CALLS:
            if node.args and isinstance(node.args[0], ast.Constant):
                found.append((node.lineno, str(node.args[0].value)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = TARGET.match(node.value)
            if match:
                found.append((node.lineno, node.value.split(":")[0]))
    return found


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def violations(package: str, source: str) -> list[tuple[int, str]]:
    forbidden, allowed = RULES[package]
    bad = []
    for line, name in imported_names(source):
        if name.split(".")[0] not in forbidden:
            continue
        if any(name == ok or name.startswith(ok + ".") for ok in allowed):
            continue
        if any(ok.startswith(name + ".") for ok in allowed) and _is_from_parent(source, line):
            continue  # `from workers import client`: the parent named on the way to `client`
        bad.append((line, name))
    return bad


def _is_from_parent(source: str, line: int) -> bool:
    return source.splitlines()[line - 1].lstrip().startswith("from ")


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", list(RULES))
def test_no_module_imports_against_the_dependency_direction(package):
    assert len(modules(package)) > 1
    problems = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules(package)
        for line, name in violations(package, path.read_text())
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("package", "source"), [
    ("indexer", "import flask"),
    ("indexer", "from celery import Celery"),
    ("indexer", "import kombu.exceptions"),
    ("indexer", "def serve():\n    from gunicorn.app.base import BaseApplication\n"),
    ("indexer", "def submit():\n    from workers import client\n"),
    ("indexer", "import importlib\nimportlib.import_module('search_api.app')\n"),
    ("indexer", "__import__('werkzeug')"),
    ("indexer", "WSGI_APP = 'webui:create_app()'"),
    ("search_api", "from workers.tasks import start"),
    ("search_api", "from workers import tasks"),
    ("search_api", "WSGI_APP = 'webui:create_app()'"),
    ("workers", "from search_api.app import create_app"),
    ("webui", "from workers import client"),
])
def test_the_check_catches_each_kind_of_import(package, source):
    assert violations(package, source)


@pytest.mark.parametrize(("package", "source"), [
    ("search_api", "from workers import client"),
    ("search_api", "from workers.client import send"),
    ("indexer", "from . import plugins\nfrom indexer.cli import main"),
    ("indexer", "NOTE = 'workers: queue the job'"),  # prose, not an import target
])
def test_what_the_rules_allow(package, source):
    assert not violations(package, source)
