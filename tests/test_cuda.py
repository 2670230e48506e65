"""The GPU paths, against the CPU on Amazon Photo. Skipped without CUDA; run
them on a machine with a GPU (``pytest tests/test_cuda.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerscope.engine.data import load_dataset
from layerscope.engine.embed import embed_run
from layerscope.engine.config import TrainConfig
from layerscope.engine.pipeline import train_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def photo_60(shared_data):
    return load_dataset("amazon-photo", shared_data, split="60/20/20", seed=0)


def test_sampled_bf16_training_on_the_gpu_learns_amazon_photo(photo_60, shared_data, tmp_path):
    """Sampler, features and model on the GPU, under bf16 autocast."""
    cfg = TrainConfig(dataset="amazon-photo", model="sage", hidden_channels=64, epochs=30, split="60/20/20",
                      fanout=[15, 10, 5], batch_size=512, sampler="builtin", device="cuda",
                      data_root=str(shared_data))
    run = train_run(cfg, tmp_path, "sage", progress=False)
    assert run["training"]["mode"] == "sampled" and run["training"]["autocast"] == "bfloat16"
    assert run["device"].startswith("cuda")
    print(f"amazon-photo sage, sampled on cuda: test acc {run['metrics']['test_acc']:.4f}")
    assert run["metrics"]["test_acc"] >= 0.90


@pytest.mark.parametrize("name", ["sage", "gcn", "gvae"])
def test_the_gpu_embed_equals_the_cpu_embed(photo_60, shared_data, tmp_path, name):
    cfg = TrainConfig(dataset="amazon-photo", model=name, hidden_channels=64, epochs=3, split="60/20/20",
                      data_root=str(shared_data), device="cpu", normalize_features=name == "gvae")
    train_run(cfg, tmp_path, name, progress=False, embed=False)
    layers = {}
    for device in ("cpu", "cuda"):
        run = embed_run(tmp_path / name, device=device, block_rows=2_000, bundle=photo_60, progress=False)
        assert run["embedding"]["device"].startswith(device)
        layers[device] = {e["name"]: np.load(tmp_path / name / e["file"]) for e in run["layers"]}
    for layer, cpu in layers["cpu"].items():
        scale = np.abs(cpu).max()
        assert np.abs(layers["cuda"][layer] - cpu).max() <= 1e-3 * scale, layer
