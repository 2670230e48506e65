"""``layerscope dashboard`` / ``layerscope.show``: the dashboard as a subprocess.

The engine never imports Streamlit or the dashboard (data flows one way); it
finds the dashboard's ``app.py`` beside it in the installed package and runs
``streamlit run`` on it, offline (no usage statistics), on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from layerscope.engine.errors import UserError

# Streamlit settings that keep every request on this machine; .streamlit/config.toml says the same
# for `streamlit run` from the repository root.
OFFLINE = ("--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_path() -> Path:
    """The dashboard's entry point, where this installation keeps it."""
    spec = importlib.util.find_spec("layerscope.dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the layerscope dashboard is not installed beside this engine; reinstall layerscope")
    return Path(list(spec.submodule_search_locations)[0]) / "app.py"


def dashboard_command(runs: Path, port: int = 8501, headless: bool = False) -> tuple[list[str], dict]:
    """The command line and environment that serve the dashboard on ``runs``."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port} is not a port (1-65535)")
    command = [sys.executable, "-m", "streamlit", "run", str(app_path()), "--server.address", "127.0.0.1",
               "--server.port", str(port), "--server.headless", str(headless).lower(), *OFFLINE]
    return command, {**os.environ, "LAYERSCOPE_RUNS": str(Path(runs).resolve())}


def run_dashboard(runs: Path, port: int = 8501) -> int:
    """Serve the dashboard on ``runs`` until interrupted; returns Streamlit's exit status."""
    command, env = dashboard_command(runs, port)
    return subprocess.call(command, env=env)
