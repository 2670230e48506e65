"""Models trained elsewhere: a live PyG model, or a bare state dict, to a run folder.

``embed_model`` is what ``layerscope.embed`` and ``engine embed --checkpoint``
with a plain PyG state dict run. It takes the block-wise layer-wise path
(``engine.layerwise``) when every layer is a convolution that path
reproduces exactly (``fast_path_refusal``), and otherwise the model's own
forward with hooks (``engine.capture``). Either way each layer file holds
what the model computes, and anything that cannot be reproduced is refused.

A bare state dict does not say which model it belongs to: the architecture
is declared (``--model sage --layers 3 --hidden 256 --aggr max``) or built
by the user's own code (``--model-factory module:function``). Its keys and
shapes must fit that model exactly. Checkpoints are read with
``weights_only=True``: a pickled model object is refused, never unpickled.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from layerscope.engine.data import GraphBundle
from layerscope.engine.data.splits import read_split_file, split_from_arrays
from layerscope.engine.errors import UserError
from layerscope.engine.layerwise import DEFAULT_BLOCK_ROWS, fast_path_refusal, layerwise
from layerscope.engine.quality import split_accuracy
from layerscope.engine.record import DTYPES, RunRecord, RunWriter, probe_probabilities, softmax
from layerscope.engine.staging import new_run_folder

PREDICTIONS = ("auto", "model", "probe")
FACTORY_ARGUMENTS = ("in_channels", "hidden_channels", "out_channels", "num_layers", "dropout")


def graph_bundle(data, class_names: list[str] | None = None, split=None, name: str | None = None) -> GraphBundle:
    """A ``GraphBundle`` from a PyG ``Data`` (``x``, ``edge_index``, ``y``, and
    optionally ``train_mask`` / ``val_mask`` / ``test_mask``), or the bundle itself.

    Args:
        split: OGB's ``split_idx`` dict, a dict of index arrays or masks, a path
            to a split file (``read_split_file``), or ``None``: the masks on
            ``data``, else the bundle's own split.
        class_names: one name per class (default: ``class 0``, ``class 1``, ...).
    """
    if isinstance(data, GraphBundle):
        bundle = data
        if split is not None or class_names is not None:
            import copy

            bundle = copy.copy(data)
            if split is not None:
                bundle.split, bundle.split_name = _split(split, data.num_nodes, data.data), "user"
            if class_names is not None:
                bundle.class_names = _class_names(class_names, data.data.y)
        return bundle
    from torch_geometric.data import Data

    if not isinstance(data, Data):
        raise UserError(f"data must be a torch_geometric Data (x, edge_index, y) or a GraphBundle, "
                        f"not {type(data).__name__}")
    for key in ("x", "edge_index", "y"):
        if getattr(data, key, None) is None:
            raise UserError(f"data has no {key}; layerscope needs node features x, the graph edge_index "
                            "and the labels y (N,) to colour the maps")
    y = data.y.view(-1).long().cpu()
    if y.numel() != data.num_nodes:
        raise UserError(f"data.y has {y.numel():,} entries for {data.num_nodes:,} nodes; give one class per node")
    plain = Data(x=data.x.float().cpu(), edge_index=data.edge_index.long().cpu(), y=y)
    if split is None and getattr(data, "train_mask", None) is None:
        raise UserError("give split= (OGB's split_idx, index arrays or masks) or data.train_mask / "
                        "val_mask / test_mask: the kNN and probe metrics and test accuracy need one")
    return GraphBundle(name or "user-graph", plain, _split(split, plain.num_nodes, data),
                       _class_names(class_names, y), "user" if split is not None else "masks")


def _split(split, num_nodes: int, data) -> dict[str, Tensor]:
    if split is None:
        return split_from_arrays({k: getattr(data, k).cpu() for k in ("train_mask", "val_mask", "test_mask")
                                  if getattr(data, k, None) is not None}, num_nodes, "data's masks")
    if isinstance(split, (str, Path)):
        return read_split_file(split, num_nodes)
    if not isinstance(split, dict):
        raise UserError(f"split must be a dict of train / val / test arrays or a file, not {type(split).__name__}")
    return split_from_arrays({k: v.cpu() if isinstance(v, Tensor) else np.asarray(v) for k, v in split.items()},
                             num_nodes)


def _class_names(class_names, y: Tensor) -> list[str]:
    num_classes = int(y.max()) + 1 if y.numel() else 0
    if num_classes > y.numel():
        raise UserError(f"label {num_classes - 1} on {y.numel():,} nodes: labels are class indices 0..C-1")
    if class_names is None:
        return [f"class {c}" for c in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) < num_classes:
        raise UserError(f"{len(names)} class names for labels up to {num_classes - 1}")
    return names


@dataclass
class EmbedResult:
    """What ``embed_model`` did: the record written and the path it took."""

    record: dict
    path: str           # block-wise | hooks
    reason: str | None  # why not block-wise


@torch.no_grad()
def embed_model(model: torch.nn.Module, bundle: GraphBundle, out: Path, name: str, *, dtype: str = "float32",
                device: str | torch.device = "cpu", block_rows: int | None = None, metrics: str = "full",
                predictions: str = "auto", model_info: dict | None = None, source: dict | None = None,
                progress: bool = True) -> EmbedResult:
    """Write a run folder ``out/name`` of every layer of ``model`` on ``bundle``'s graph.

    Args:
        model: a PyG model whose ``forward(x, edge_index)`` returns (N, C).
        bundle: the graph, labels, split and class names (``graph_bundle``).
        device: where to compute; the model is moved there and back.
        block_rows: target rows per block (``None``: 65,536 on the block-wise
            path; on the hook path the whole graph when it fits, ``capture``).
        metrics: ``RunWriter``'s: full, fast or none.
        predictions: ``model`` (the output's argmax), ``probe`` (a linear probe
            on the last layer) or ``auto`` (the model's when its output has one
            column per class).
        model_info: what run.json records of the model (default: its class and size).

    Writes ``layers/<name>.npy`` (``input`` first, then ``hidden1 ...`` and the
    model's output, ``logits`` or ``embedding``), ``nodes.parquet``,
    ``graph/`` and ``run.json``. Returns the record and the path taken.
    """
    from layerscope.engine.device import device_name, resolve_device

    if predictions not in PREDICTIONS:
        raise UserError(f"predictions={predictions!r}: choose from {', '.join(PREDICTIONS)}")
    if dtype not in DTYPES:
        raise UserError(f"dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    torch_device = resolve_device(device) if isinstance(device, str) else device
    x = bundle.data.x
    labels, split = bundle.data.y.numpy(), {k: v.numpy() for k, v in bundle.split.items()}
    reason = fast_path_refusal(model, torch_device) or _graph_refusal(bundle)
    path = "block-wise" if reason is None else "hooks"
    edge_index = bundle.edge_index() if path == "hooks" else None
    was_device = next(iter(model.parameters()), torch.empty(0)).device
    model.to(torch_device)
    start = time.perf_counter()
    try:
        with new_run_folder(out, name) as run_dir:
            writer = RunWriter(run_dir, labels, split, bundle.class_names, dtype, metrics, progress)
            writer.add_layer("input", x.numpy())
            stream = _layer_stream(model, x.to(torch_device), edge_index, bundle, path, block_rows, progress)
            probabilities, predicted_by = _write_layers(writer, stream, bundle, predictions)
            record = RunRecord(name=name, dataset=bundle.facts(), model=model_info or describe(model),
                               source=source or {"kind": "python", "class": _qualified(model)},
                               metrics=split_accuracy(labels, probabilities.argmax(axis=1), split))
            record.embedding = {"device": device_name(torch_device), "path": path, "fast_path_refusal": reason,
                                "block_rows": stream.block_rows,
                                "inference_seconds": round(time.perf_counter() - start, 3)}
            adj_t = bundle.adj_t
            written = writer.finish(record, probabilities, predicted_by,
                                    bundle.node_ids.numpy() if bundle.node_ids is not None else None,
                                    (adj_t.crow_indices().numpy(), adj_t.col_indices().numpy()))
    finally:
        model.to(was_device)
    return EmbedResult(written, path, reason)


def _write_layers(writer: RunWriter, stream: _LayerStream, bundle: GraphBundle,
                  predictions: str) -> tuple[np.ndarray, str]:
    """Add every layer of ``stream`` to ``writer``, the last named ``logits``
    when it gives the predictions (``predictions``: model, probe or auto) and
    ``embedding`` otherwise; returns the (N, C) class probabilities and what
    made them (the model, or a linear probe on its output)."""
    from_model = predictions == "model" or (predictions == "auto" and stream.width == bundle.num_classes)
    if predictions == "model" and stream.width != bundle.num_classes:
        raise UserError(f"predictions='model' needs one output column per class: the model gives "
                        f"{stream.width}, the data has {bundle.num_classes} classes")
    head = "logits" if from_model else "embedding"
    for i, (layer, values, where) in enumerate(stream.layers):
        writer.add_layer(head if i == stream.count - 1 else layer, values, where)
    last = values       # the model's output
    if from_model:
        return softmax(last), "model"
    labels = bundle.data.y.numpy()
    return (probe_probabilities(last, labels, writer.sample["train"], bundle.num_classes),
            f"linear probe on {head}")


@dataclass
class _LayerStream:
    """The layers after the input, as they are computed: ``(name, (N, width)
    float32, source)`` each, ``count`` of them, the last ``width`` wide."""

    layers: Iterator[tuple[str, np.ndarray, str]]
    count: int
    width: int
    block_rows: int | list[int] | None      # per block-wise layer; None: the whole graph at once


def _layer_stream(model, x, edge_index, bundle, path, block_rows, progress) -> _LayerStream:
    if path == "block-wise":     # one layer in memory at a time, as engine embed
        from layerscope.engine.layerwise import layers_of

        layers, rows = layers_of(model, x.device), block_rows or DEFAULT_BLOCK_ROWS
        adj_t = bundle.adj_t.to(x.device)
        stream = ((name, out.cpu().numpy(), f"block-wise {name}")
                  for name, out in layerwise(model, x, adj_t, rows, progress))
        return _LayerStream(stream, len(layers), layers[-1].conv.out_channels, rows)
    from layerscope.engine.capture import capture

    captured = capture(model, x, edge_index.to(x.device), block_rows, progress=progress)
    stream = ((layer.name, layer.values.numpy(), layer.source) for layer in captured.layers)
    return _LayerStream(stream, len(captured.layers), captured.layers[-1].values.size(1),
                        captured.block_rows or None)


def _graph_refusal(bundle: GraphBundle) -> str | None:
    """Why the block-wise path may not read the bundle's coalesced adjacency
    for what ``model(x, edge_index)`` computes (``None``: it may)."""
    if "edge_index" not in bundle.data:
        return None     # a loader's compact CSR: coalesced and loop-free by construction
    edge_index = bundle.data.edge_index
    if int(bundle.adj_t._nnz()) != edge_index.size(1):
        return "the graph has repeated edges"
    if bool((edge_index[0] == edge_index[1]).any()):
        return "the graph has self-loops"
    return None


def describe(model: torch.nn.Module) -> dict:
    """run.json's model entry for a model built elsewhere: its class, its
    message-passing layers and their settings, its parameter count."""
    from torch_geometric.nn.conv import MessagePassing

    layers = []
    for name, module in model.named_modules():
        if isinstance(module, MessagePassing):
            settings = {k: v for k, v in vars(module).items()
                        if not k.startswith("_") and isinstance(v, (str, int, float, bool, type(None)))}
            layers.append({"name": name, "class": type(module).__name__, **settings})
    return {"model": f"pyg:{type(model).__name__}", "objective": None, "class": _qualified(model),
            "num_parameters": int(sum(p.numel() for p in model.parameters())), "layers": layers}


def _qualified(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# --- bare state dicts --------------------------------------------------------

def read_state_dict(path: Path) -> tuple[dict[str, Tensor], dict | None]:
    """A checkpoint's weights, and layerscope's model config when it has one.

    Reads a bare ``state_dict``, one under a ``state_dict`` or ``model`` key,
    or a ``model.pt`` written by this engine, all with ``weights_only=True``.
    A pickled model object (``torch.save(model)``) is refused, not unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):      # not a pickled object: not a checkpoint at all
            raise UserError(f"{path} is not a PyTorch checkpoint (torch.load cannot read it)") from None
        raise UserError(f"{path} holds a pickled Python object (torch.save(model)?), which layerscope never "
                        "unpickles; save the weights with torch.save(model.state_dict(), FILE)") from None
    except Exception as e:
        raise UserError(f"{path} is not a PyTorch checkpoint ({type(e).__name__}: {e})".replace("\n", " ")) from None
    if isinstance(checkpoint, dict) and "model_config" in checkpoint:
        return checkpoint["state_dict"], checkpoint
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not checkpoint or not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise UserError(f"{path} is not a state dict (a dict of tensors, as torch.save(model.state_dict(), FILE) "
                        "writes)")
    return checkpoint, None


def load_weights(model: torch.nn.Module, state: dict[str, Tensor], where: str) -> None:
    """``model.load_state_dict(state)``, strict, with mismatches in one line."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing keys: {_few(missing)}" if missing else "", f"unexpected keys: {_few(unexpected)}"
                 if unexpected else "", f"shape mismatches (file vs model): {_few(shapes)}" if shapes else ""]
        raise UserError(f"{where} does not fit the declared model ({'; '.join(p for p in parts if p)}); "
                        "check --model, --layers, --hidden and --out-channels, or give --model-factory")
    model.load_state_dict(state)


def _few(items: list[str], shown: int = 4) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def model_from_factory(spec: str, arguments: dict) -> torch.nn.Module:
    """``module:function`` (or ``module:Class``) called with those of
    ``arguments`` its signature takes; the module is imported from the
    current folder or ``PYTHONPATH``, as the user's own code."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UserError(f"--model-factory {spec!r}: use module:function, e.g. my_models:build_sage")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")      # the user's working folder, as `python -c` has it
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise UserError(f"--model-factory {spec}: {type(e).__name__}: {e}".replace("\n", " ")) from None
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    given = {k: v for k, v in arguments.items() if k in parameters}
    needed = [k for k, p in parameters.items() if p.default is p.empty and k not in given
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k != "self"]
    if needed:
        raise UserError(f"--model-factory {spec} needs {', '.join(needed)}; layerscope passes only "
                        f"{', '.join(FACTORY_ARGUMENTS)}: wrap it in a function that takes those")
    model = factory(**given)
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"--model-factory {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def declared_model(model: str, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int,
                   aggr: str | None) -> torch.nn.Module:
    """One of ``engine.models.MODELS`` built from a declared architecture.

    A state dict holds the same tensors for every aggregation, so a sage or
    graphconv model needs ``aggr`` stated: it is never guessed.
    """
    from layerscope.engine.models import MODELS, ModelConfig, build_model

    if model not in MODELS:
        raise UserError(f"--model {model!r}: choose from {', '.join(MODELS)}, or give --model-factory")
    if MODELS[model].aggregates and aggr is None:
        raise UserError(f"--model {model} needs --aggr (mean, sum, max or min): a state dict holds the same "
                        "weights for every aggregation, so layerscope cannot tell them apart")
    if not MODELS[model].aggregates and aggr is not None:
        raise UserError(f"--aggr applies to {', '.join(k for k, v in MODELS.items() if v.aggregates)}, not {model}")
    config = ModelConfig(model, in_channels, hidden_channels, out_channels, num_layers, 0.0, aggr=aggr)
    return build_model(config)


def embed_state_dict(checkpoint: Path, bundle: GraphBundle, out: Path, name: str, *, model: str | None,
                     factory: str | None, hidden_channels: int, num_layers: int, out_channels: int | None,
                     aggr: str | None, **embed) -> EmbedResult:
    """``engine embed --checkpoint FILE`` for a bare PyG state dict."""
    state, _ = read_state_dict(checkpoint)
    arguments = {"in_channels": bundle.data.num_features, "hidden_channels": hidden_channels,
                 "out_channels": out_channels or bundle.num_classes, "num_layers": num_layers, "dropout": 0.0}
    if factory is not None:
        if aggr is not None:
            raise UserError("--aggr applies to a declared --model; a --model-factory builds its own layers")
        network = model_from_factory(factory, arguments)
    elif model is not None:
        network = declared_model(model, aggr=aggr, **{k: v for k, v in arguments.items() if k != "dropout"})
    else:
        raise UserError(f"{checkpoint} is a bare state dict: declare its model (--model sage --layers 3 --hidden 256 "
                        "--aggr mean) or give --model-factory module:function")
    load_weights(network, state, str(checkpoint))
    info = {**describe(network), "declared": factory or model}
    source = {"kind": "checkpoint", "path": str(Path(checkpoint).resolve()), "factory": factory}
    return embed_model(network, bundle, out, name, model_info=info, source=source, **embed)
