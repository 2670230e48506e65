"""layerscope: see what each layer of a graph neural network learned.

A notebook-sized tour (shapes in each docstring)::

    import layerscope as ls
    run = ls.embed(model, data, name="my-sage", out="checkpoints", class_names=names, split=split_idx)
    run.layer_names, run.layer("hidden2")    # ['input', 'hidden1', ...], an (N, d) array
    run.nodes(), run.metrics()               # pandas tables: one row per node, one per layer
    xy = ls.project(run.layer("hidden2"))    # (N, 2), UMAP as a run's layouts are made
    ls.show("checkpoints")                   # the dashboard on that folder

The engine (``layerscope.engine``: training, inference, run folders) and the
dashboard (``layerscope.dashboard``) are importable too; this module is the
part whose names and signatures stay put. Heavy libraries load on first use.
"""

from __future__ import annotations

from pathlib import Path as _Path
from typing import TYPE_CHECKING

# In a source checkout engine/ and dashboard/ sit beside this folder; an install
# maps them to layerscope/engine and layerscope/dashboard (pyproject.toml).
# Searching the checkout's root too makes `layerscope.engine` the same module
# whether or not the checkout was installed.
_CHECKOUT = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "engine").is_dir() and (_CHECKOUT / "engine" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))

from layerscope.engine import __version__  # noqa: E402
from layerscope.engine.errors import UserError  # noqa: E402

if TYPE_CHECKING:
    import numpy as np
    import torch

    from layerscope.engine.runs import Run

__all__ = ["Dashboard", "UserError", "__version__", "embed", "open_run", "project", "show"]


def embed(model: torch.nn.Module, data, name: str, out: str | _Path = "checkpoints", *,
          class_names: list[str] | None = None, split=None, data_root: str | None = None,
          device: str = "auto", dtype: str = "float32", block_rows: int | None = None, metrics: str = "full",
          predictions: str = "auto", progress: bool = True) -> Run:
    """Every layer of a trained PyG model on every node, as a run folder ``out/name``.

    Args:
        model: any PyTorch Geometric model called as ``model(x, edge_index)``
            -> (N, C). Block-wise layer-wise inference when every layer is a
            convolution it reproduces exactly (SAGEConv, GCNConv, GraphConv with
            their settings checked), else the model's own forward with hooks
            (GAT, GIN, norms, jumping knowledge, your own ``nn.Module``). What
            cannot be reproduced raises ``UserError`` naming the layer.
        data: a ``torch_geometric.data.Data`` with ``x`` (N, F), ``edge_index``
            (2, E) and ``y`` (N,); or a dataset name (``amazon-photo``, ...).
        class_names: one name per class (default ``class 0``, ...; a named
            dataset has its own).
        split: OGB's ``split_idx`` dict (``train`` / ``valid`` / ``test``
            indices), a dict of index arrays or (N,) masks, or a ``.npz`` /
            ``.pt`` file; default: ``data.train_mask`` / ``val_mask`` / ``test_mask``.
        device: where to compute: ``auto`` (CUDA when present), ``cpu``, ``cuda``.
        metrics: per-layer scoring: ``full``, ``fast`` (no linear probe) or ``none``.
        predictions: ``model`` (the output's argmax), ``probe`` or ``auto``
            (the model's when it has one output per class).

    Returns the complete run (``open_run``); its ``record["embedding"]["path"]``
    says which path was taken, and why when it was not block-wise.
    """
    from layerscope.engine.user_model import embed_model, graph_bundle

    if isinstance(data, str):
        from layerscope.engine.data import load_dataset

        split_file = split if isinstance(split, (str, _Path)) else None
        bundle = load_dataset(data, data_root, split_file=split_file)
        bundle = graph_bundle(bundle, class_names, None if split_file else split)
    else:
        bundle = graph_bundle(data, class_names, split)
    embed_model(model, bundle, _Path(out), name, dtype=dtype, device=device, block_rows=block_rows,
                metrics=metrics, predictions=predictions, progress=progress)
    return open_run(_Path(out) / name)


def open_run(path: str | _Path) -> Run:
    """A complete run folder, checked (``UserError`` names a missing or bad file).

    ``run.layer_names``; ``run.layer(name)`` -> (N, dim) memory-mapped array;
    ``run.nodes()`` -> one row per node; ``run.metrics()`` -> one row per layer;
    ``run.graph()`` -> (N, N) scipy CSR of the graph; ``run.record`` -> run.json.
    """
    from layerscope.engine.runs import read_run

    return read_run(_Path(path))


def project(x: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine",
            n_epochs: int | None = None, pca_dims: int = 50, init: str = "pca", method: str = "umap",
            seed: int = 0) -> np.ndarray:
    """(N, 2) float32 layout of the rows of ``x`` ((N, d)), made as a run's
    layouts are (umap-learn, PCA start, PCA pre-reduction past ``pca_dims``).

    Raises ``ValueError`` naming the allowed range of a bad parameter.
    """
    from layerscope.engine.project import ProjectionConfig, project_array

    cfg = ProjectionConfig(method=method, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                           n_epochs=n_epochs, pca_dims=pca_dims, init=init, seed=seed)
    return project_array(x, cfg)


class Dashboard:
    """A dashboard server started by ``show``: ``url``, ``log`` (its output),
    ``stop()``; a context manager."""

    def __init__(self, process, url: str, log: str):
        self.process, self.url, self.log = process, url, log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Dashboard({self.url}, {'running' if self.process.poll() is None else 'stopped'})"


def show(runs: str | _Path = "checkpoints", port: int | None = None, wait: float = 60.0) -> Dashboard:
    """Start the dashboard on the folder ``runs`` in the background, on
    127.0.0.1 (``port``, default a free one), and return once it answers (at
    most ``wait`` seconds).

    Returns a ``Dashboard``: open ``.url`` in a browser; ``.stop()`` ends it.
    """
    import subprocess
    import time
    import urllib.request

    from layerscope.engine.launch import dashboard_command, free_port

    import tempfile

    port = port or free_port()
    command, env = dashboard_command(_Path(runs), port, headless=True)
    # A file, not a pipe: a pipe nobody reads fills up and stalls the server.
    log = tempfile.NamedTemporaryFile(prefix="layerscope-dashboard-", suffix=".log", delete=False)
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _Path(log.name).read_text(errors="replace")[-300:].strip()
            raise UserError(f"the dashboard stopped at start (log {log.name}): {tail}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return Dashboard(process, url, log.name)
        except OSError:
            time.sleep(0.5)
    Dashboard(process, url, log.name).stop()
    raise UserError(f"the dashboard did not answer on {url} within {wait:.0f} s")
