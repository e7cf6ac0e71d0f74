"""The installed ``lookalike`` console script lists every command, the core's and the
shells' (from their entry points), and each one's ``--help`` works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

COMMANDS = ["ingest", "embed", "index", "search", "explain", "map", "train", "evaluate",
            "models", "jobs", "worker", "beat", "serve", "up", "demo"]


def console_script() -> Path:
    script = Path(sys.executable).with_name("lookalike")
    assert script.is_file() and os.access(script, os.X_OK), (
        f"no console script beside {sys.executable}: install the project (pip install -e .)")
    return script


def test_lookalike_help_lists_every_command_and_each_has_help(tmp_path):
    script = str(console_script())
    runs = {command: subprocess.Popen([script, *command.split(), "--help"], cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for command in ["", *COMMANDS]}  # started together: each is half a second
    results = {}
    for command, run in runs.items():
        out, err = run.communicate(timeout=300)
        results[command] = (run.returncode, out, err)
    code, out, err = results[""]
    assert code == 0 and not err, err  # no shell failed to load
    listed = {line.split()[0] for line in out.split("COMMAND\n", 1)[1].split("options:")[0]
              .splitlines() if line.startswith("    ") and not line.startswith("     ")}
    assert listed == set(COMMANDS)
    for command in COMMANDS:
        code, out, err = results[command]
        assert code == 0 and f"usage: lookalike {command}" in out, (command, err)
