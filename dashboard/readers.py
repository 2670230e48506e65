"""Run folders as the pages read them: the runs folder, each run, its node
table, training history, findings, stored graph and cross-run CKA, cached between
reruns and sessions.

Each cache is keyed by the file's path and modification time (or the run's
creation time), so a rewritten run misses it. Cached resources are shared
between sessions and never mutated.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import scipy.sparse as sp
import streamlit as st

from layerscope.engine.findings import Finding, run_findings
from layerscope.engine.neighbours import run_graph
from layerscope.engine.run_lock import lock_stamp
from layerscope.engine.runs import RUN_FILE, Run, read_run, scan_runs
from layerscope.engine.summary import cross_run_cka, needs_scores, with_scores

ROOT = Path(__file__).resolve().parents[1]


def runs_root() -> Path:
    """``$LAYERSCOPE_RUNS``, or ``checkpoints/`` beside the dashboard."""
    return Path(os.environ.get("LAYERSCOPE_RUNS", ROOT / "checkpoints"))


def _stamp(root: Path) -> tuple:
    """Changes whenever a run folder is added, completed or removed, and when
    the writer of an unfinished one starts or ends (in progress or interrupted)."""
    if not root.is_dir():
        return ()
    return tuple(sorted((p.name, (p / RUN_FILE).stat().st_mtime if (p / RUN_FILE).exists() else 0.0,
                         () if (p / RUN_FILE).exists() else lock_stamp(p))
                        for p in root.iterdir() if p.is_dir()))


@st.cache_data(show_spinner=False)
def _scan(root: str, stamp: tuple) -> tuple[list[str], list[str]]:
    runs, warnings = scan_runs(Path(root))
    return [run.name for run in runs], warnings


def list_runs() -> tuple[list[str], list[str]]:
    """Names of the complete runs under ``runs_root()``, and one warning per
    broken or partial folder (naming it and the file at fault)."""
    root = runs_root()
    return _scan(str(root), _stamp(root))


@st.cache_resource(show_spinner="Scoring the run's layers (it was written without --metrics full)…")
def _scored(path: str, mtime: float) -> Run:
    return with_scores(read_run(Path(path)))     # shared between sessions; never mutated


@st.cache_resource(show_spinner=False)
def _open(path: str, mtime: float) -> Run:
    run = read_run(Path(path))
    return _scored(path, mtime) if needs_scores(run) else run


def open_run(name: str) -> Run:
    """The complete run ``name`` of ``runs_root()``, with every per-layer score."""
    path = runs_root() / name
    return _open(str(path), (path / RUN_FILE).stat().st_mtime)


@st.cache_data(show_spinner=False)
def _node_table(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_parquet(Path(path) / "nodes.parquet")


def node_table(run: Run) -> pd.DataFrame:
    """``nodes.parquet`` of ``run``: node_id, label, category, split, degree, prediction, confidence, correct."""
    return _node_table(str(run.path), (run.path / RUN_FILE).stat().st_mtime)


@st.cache_data(show_spinner="Reading the layers' neighbourhoods for findings…")
def _findings(path: str, mtime: float) -> list[Finding]:
    return run_findings(read_run(Path(path)))


def findings(run: Run) -> list[Finding]:
    """``engine.findings.run_findings`` of ``run``: computed once per run
    folder (a few seconds, even on ogbn-products), then cached."""
    return _findings(str(run.path), (run.path / RUN_FILE).stat().st_mtime)


@st.cache_data(show_spinner=False)
def _history(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_csv(Path(path) / "history.csv")


def history(run: Run) -> pd.DataFrame | None:
    """``history.csv`` of ``run`` (one row per epoch), or None when it has none."""
    if not (run.path / "history.csv").exists():
        return None
    return _history(str(run.path), (run.path / "history.csv").stat().st_mtime)


@st.cache_resource(show_spinner="Loading the run's graph…")
def _stored_graph(name: str, created: str) -> sp.csr_matrix:
    return run_graph(open_run(name))


def stored_graph(run: Run) -> sp.csr_matrix:
    """The graph ``run`` stores in its graph/ folder, as ``engine.neighbours.run_graph``
    reads it (memory-mapped CSR); raises its ``UserError`` for a run without one."""
    return _stored_graph(run.name, run.record.get("created", ""))


@st.cache_data(show_spinner="Computing CKA between the runs…")
def _cka(name_a: str, name_b: str, stamp: tuple) -> tuple[list[list[float]], int]:
    matrix, num_nodes = cross_run_cka(open_run(name_a), open_run(name_b))
    return matrix.tolist(), num_nodes


def run_cka(a: Run, b: Run) -> tuple[list[list[float]], int]:
    """Linear CKA of every layer of ``a`` (rows) against every layer of ``b``,
    and on how many nodes (``engine.summary.cross_run_cka``)."""
    return _cka(a.name, b.name, (a.record.get("created"), b.record.get("created")))
