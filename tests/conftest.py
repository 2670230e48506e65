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
