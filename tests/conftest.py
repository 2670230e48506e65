"""Shared fixtures: the real datasets in ../shared/data and small helpers.

Under CI=true a missing ../shared/data fails the run instead of skipping tests,
so a green CI always means the real-data tests ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LAYERSCOPE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "amazon_photo" / "amazon_electronics_photo.npz").exists():
        message = f"real test data not found at {SHARED_DATA} (set LAYERSCOPE_SHARED_DATA)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def photo(shared_data):
    """Amazon Photo with the Shchur et al. split (20 / 30 per class), seed 0."""
    from layerscope.engine.data import load_dataset

    return load_dataset("amazon-photo", shared_data, split="per-class:20,30", seed=0)


@pytest.fixture(scope="session")
def photo_run(shared_data, tmp_path_factory) -> Path:
    """An embedded Amazon Photo sage run (3 x 64, 60 epochs, 60/20/20 seed 0).
    Shared by the session: copy it before changing it."""
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.pipeline import train_run

    out = tmp_path_factory.mktemp("photo")
    cfg = TrainConfig(dataset="amazon-photo", model="sage", hidden_channels=64, epochs=60, split="60/20/20",
                      data_root=str(shared_data))
    train_run(cfg, out, "sage", progress=False)
    return out / "sage"


def run_engine(*args: str, cwd: Path | None = None, env: dict | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m engine ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2 and a single stderr line, no traceback, containing every fragment."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def forward_layers(model, x, edge_index) -> list:
    """Every layer's output as the model's own ``forward`` computes it (eval
    mode, message passing over ``edge_index``), read with hooks on its
    convolutions: the reference each layer of the layer-wise dump must equal,
    hidden layers after their activation, the last one as returned."""
    import torch

    convs = [*model.convs, model.conv_mu] if hasattr(model, "conv_mu") else list(model.convs)
    act = getattr(model, "act", None) or torch.relu
    outputs = []
    hooks = [conv.register_forward_hook(lambda _, __, out: outputs.append(out)) for conv in convs]
    try:
        with torch.no_grad():
            last = model.eval()(x, edge_index)
    finally:
        for hook in hooks:
            hook.remove()
    if hasattr(model, "conv_mu"):       # forward runs conv_mu only; mu_logstd would run conv_logstd too
        outputs = outputs[:len(convs)]
    assert len(outputs) == len(convs) and torch.equal(outputs[-1], last)
    return [act(out) for out in outputs[:-1]] + [last]


TENTH_POINTS = 10_000       # the tenth-size run's layouts: a 10,000-node sample (?points=10000 on the dashboard)


@pytest.fixture(scope="session")
def tenth_products_run(shared_data, tmp_path_factory) -> Path:
    """``synthetic-products`` at a tenth of ogbn-products (244,903 nodes):
    one epoch of the reference recipe, float16 layer files, every layer laid
    out over a 10,000-node sample and every node placed on each layout. The
    graph is generated into a private cache, never a user's. Shared by the
    session, in a runs folder of its own: copy it before changing it."""
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.pipeline import train_run
    from layerscope.engine.placement import place_all_nodes
    from layerscope.engine.project import ProjectionConfig, project_layers
    from layerscope.engine.runs import read_run

    runs = tmp_path_factory.mktemp("tenth-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAYERSCOPE_CACHE", str(tmp_path_factory.mktemp("generator-cache")))
        cfg = TrainConfig(dataset="synthetic-products", scale=0.1, model="sage", epochs=1, fanout=[15, 10, 5],
                          sampler="builtin", data_root=str(shared_data))
        train_run(cfg, runs, "products", progress=False, dtype="float16")
    run = read_run(runs / "products")
    projection = ProjectionConfig(sample=TENTH_POINTS)
    place_all_nodes(run, project_layers(run, run.layer_names, projection), projection)
    return runs / "products"


def report_map_drawn(at, key: str = "explore_map") -> None:
    """In an AppTest (no browser), what the browser does once it has drawn
    the map ``key``: report it (``plotly_map(report_drawn=True)``), then rerun."""
    import json

    versions = [json.loads(c.proto.json_args)["version"] for c in at.get("component_instance")
                if json.loads(c.proto.json_args).get("report_drawn")]
    assert versions, "no map waits for its drawing to be reported"
    at.session_state[key] = {"nodes": [], "drawn": versions[0]}
    at.run()
