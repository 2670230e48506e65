"""Models: layer-wise inference equals forward, trimming is exact, checkpoints rebuild."""

from __future__ import annotations

import pytest
import torch

from layerscope.engine.errors import UserError
from layerscope.engine.layerwise import layerwise
from layerscope.engine.data.bundle import adjacency
from layerscope.engine.models import (MODELS, ModelConfig, build_model, dropout, forward_sampled, load_model,
                                      save_model)
from layerscope.engine.sampler import NeighborSampler
from tests.conftest import forward_layers

MODEL_NAMES = ["sage", "gcn", "gvae"]


def layer_outputs(model, x, edge_index, block_rows=1_000):
    """Every layer's output, in blocks smaller than the graph."""
    adj_t = adjacency(edge_index, x.size(0))
    return [h for _, h in layerwise(model, x, adj_t, block_rows, progress=False)]


def _model(name, photo, seed=0):
    torch.manual_seed(seed)
    out = 16 if name == "gvae" else photo.num_classes
    return build_model(ModelConfig(name, photo.data.num_features, 64, out, 3, 0.5))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_layer_equals_the_forward_pass_on_amazon_photo(photo, name):
    model = _model(name, photo).eval()
    x, edge_index = photo.data.x, photo.data.edge_index
    named = list(layerwise(model, x, adjacency(edge_index, x.size(0)), 1_000, progress=False, last_name="out"))
    assert [n for n, _ in named] == ["hidden1", "hidden2", "out"]
    assert named[-1][1].shape == (photo.num_nodes, 16 if name == "gvae" else 8)
    reference = forward_layers(model, x, edge_index)      # plain message passing over edge_index, hooked
    for (layer, got), want in zip(named, reference, strict=True):
        assert torch.allclose(got, want, atol=1e-4), layer
    assert not torch.allclose(reference[0], reference[1], atol=1e-4)    # so a mislabelled layer would fail
    assert (named[0][1] >= 0).all()                           # hidden layers are after their ReLU


@pytest.mark.parametrize("name", [n for n, spec in MODELS.items() if spec.trims])
def test_trimmed_sampled_forward_equals_the_untrimmed_one(photo, name):
    model = _model(name, photo).eval()
    b = NeighborSampler(photo.adj_t, [15, 10, 5]).sample(torch.arange(256))
    x = photo.data.x[b.n_id]
    with torch.no_grad():
        full = model(x, b.edge_index)[:b.batch_size]
        trimmed = forward_sampled(model, x, b.edge_index, b.num_sampled_nodes, b.num_sampled_edges)
    assert trimmed.size(0) == b.batch_size          # the last layer computed the seeds only
    assert torch.allclose(full, trimmed, atol=1e-5)


def test_dropout_zeroes_p_of_the_entries_and_keeps_the_mean():
    x = torch.ones(1000, 500)
    torch.manual_seed(0)
    a = dropout(x, 0.3)
    assert abs(float((a == 0).float().mean()) - 0.3) < 0.005
    assert abs(float(a.mean()) - 1.0) < 0.01 and torch.allclose(a[a != 0], torch.full_like(a[a != 0], 1 / 0.7))
    torch.manual_seed(0)
    assert torch.equal(dropout(x, 0.3), a)                  # torch's seed fixes the mask
    assert not torch.equal(dropout(x, 0.3), a)
    assert dropout(x, 0.3, training=False) is x


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_saved_model_rebuilds_from_its_file_alone(photo, name, tmp_path):
    model = _model(name, photo, seed=3).eval()
    config = ModelConfig(name, photo.data.num_features, 64, 16 if name == "gvae" else 8, 3, 0.5)
    save_model(model, config, tmp_path / "model.pt")
    loaded, loaded_config = load_model(tmp_path / "model.pt")
    assert loaded_config == config
    x, edge_index = photo.data.x, photo.data.edge_index
    assert torch.equal(layer_outputs(loaded, x, edge_index)[-1], layer_outputs(model, x, edge_index)[-1])


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a layerscope checkpoint"):
        load_model(tmp_path / "model.pt")


def test_a_checkpoint_of_another_architecture_is_refused(photo, tmp_path):
    config = ModelConfig("sage", photo.data.num_features, 64, 8, 3, 0.5)
    save_model(_model("gcn", photo), config, tmp_path / "model.pt")
    with pytest.raises(UserError, match="do not fit a sage model"):
        load_model(tmp_path / "model.pt")


def test_wrapping_a_gvae_for_its_losses_keeps_its_weights(photo):
    from layerscope.engine.objectives.vgae import VariationalAutoencoding

    model = _model("gvae", photo, seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    VariationalAutoencoding._vgae(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_input_dropout_acts_in_training_only(photo, name):
    config = ModelConfig(name, photo.data.num_features, 64, 16 if name == "gvae" else 8, 2, 0.0,
                         input_dropout=0.5)
    torch.manual_seed(0)
    model = build_model(config)
    x, adj_t = photo.data.x, adjacency(photo.data.edge_index, photo.num_nodes)
    plain = build_model(ModelConfig(**{**config.__dict__, "input_dropout": 0.0}))
    plain.load_state_dict(model.state_dict())
    model.train(), plain.train()
    torch.manual_seed(1)
    assert not torch.allclose(model(x, adj_t), plain(x, adj_t))
    model.eval(), plain.eval()
    assert torch.equal(model(x, adj_t), plain(x, adj_t))
    assert torch.allclose(layer_outputs(model, x, photo.data.edge_index)[-1], model(x, adj_t), atol=1e-5)


def test_l2_normalized_sage_layers_have_unit_length(photo):
    torch.manual_seed(0)
    model = build_model(ModelConfig("sage", photo.data.num_features, 64, 8, 3, 0.5, l2_normalize=True))
    layers = layer_outputs(model, photo.data.x, photo.data.edge_index)
    # the hidden layers are unit vectors before their ReLU, so at most 1 after it
    assert all(float(h.norm(dim=1).max()) <= 1 + 1e-5 for h in layers[:-1])
    assert torch.allclose(layers[-1].norm(dim=1), torch.ones(photo.num_nodes), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(layers[-1], model.eval()(photo.data.x, photo.data.edge_index), atol=1e-5)
