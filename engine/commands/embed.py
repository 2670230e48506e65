"""``engine embed``: every layer of a trained run, a layerscope checkpoint or a plain PyG state dict."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerscope.engine.commands.common import METRICS_HELP, Defaults, layer_table, refuse_given
from layerscope.engine.errors import UserError


def add_parser(commands) -> None:
    from layerscope.engine.config import AGGREGATIONS, TrainConfig
    from layerscope.engine.layerwise import DEFAULT_BLOCK_ROWS
    from layerscope.engine.models import MODELS
    from layerscope.engine.record import DTYPES, METRICS_MODES
    from layerscope.engine.user_model import PREDICTIONS

    d = TrainConfig()
    embed = commands.add_parser(
        "embed", help="write every layer's embeddings and per-layer metrics",
        description="Run layer-wise inference over the whole graph and write layers/<name>.npy (input "
                    "features first), nodes.parquet and run.json with kNN accuracy, silhouette, "
                    "linear-probe accuracy and CKA per layer. Rerunning it finishes an interrupted dump.",
        formatter_class=Defaults)
    source = embed.add_mutually_exclusive_group(required=True)
    source.add_argument("run_folder", nargs="?", metavar="RUN",
                        help="a run folder written by engine train (also --run RUN; under torchrun give it like "
                             "this: torchrun's own parser takes --run for its --run-path)")
    source.add_argument("--run", metavar="DIR", help="the same as RUN")
    source.add_argument("--checkpoint", metavar="FILE",
                        help="a model.pt written by this engine, or a plain PyG state dict "
                             "(torch.save(model.state_dict(), FILE)) with --model or --model-factory: "
                             "makes a new run folder --out/--name")
    embed.add_argument("--dtype", default="float32", choices=DTYPES,
                       help="layer files' dtype; float16 halves them for large graphs")
    embed.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    embed.add_argument("--block-rows", type=int, default=None,
                       help=f"nodes per block of the layer-wise pass (bounds its memory; default "
                            f"{DEFAULT_BLOCK_ROWS:,}, and on the hook path the whole graph at once when it fits)")
    embed.add_argument("--data-root", default=None, metavar="DIR",
                       help="dataset folder (default: $LAYERSCOPE_DATA, else ./data; never a folder a run names)")
    embed.add_argument("--dataset", default=None, metavar="NAME",
                       help="with --checkpoint: the graph to embed (default: the one it was trained on)")
    embed.add_argument("--split", default=None, help="with --checkpoint: the split (default: its own)")
    embed.add_argument("--split-file", default=None, metavar="FILE",
                       help="with --checkpoint: your own split (.npz of index or mask arrays, .pt of OGB's split_idx)")
    declared = embed.add_argument_group(
        "a plain PyG state dict (--checkpoint): the model it belongs to",
        "A state dict holds tensors only: declare the architecture, or build it with your own code. "
        "sage and graphconv need --aggr, since mean and max aggregation have the same weights.")
    declared.add_argument("--model", default=None, choices=list(MODELS),
                          help="sage: PyG GraphSAGE (ModuleList convs of SAGEConv, as the OGB example), gcn, "
                               "graphconv, gvae")
    declared.add_argument("--model-factory", default=None, metavar="MODULE:FUNCTION",
                          help="your function or class that builds the model; called with those of "
                               "in_channels, hidden_channels, out_channels, num_layers, dropout it takes")
    declared.add_argument("--layers", type=int, default=None, help=f"message-passing layers (default {d.num_layers})")
    declared.add_argument("--hidden", type=int, default=None, help=f"hidden channels (default {d.hidden_channels})")
    declared.add_argument("--out-channels", type=int, default=None, help="output width (default: the class count)")
    declared.add_argument("--aggr", default=None, choices=AGGREGATIONS, help="sage / graphconv aggregation")
    declared.add_argument("--predictions", default="auto", choices=PREDICTIONS,
                          help="model: the output's argmax; probe: a linear probe on the last layer; auto: the "
                               "model's when it has one output per class")
    embed.add_argument("--seed", type=int, default=None, help="with --checkpoint: the split seed")
    embed.add_argument("--largest-component", action="store_true", default=None,
                       help="with --checkpoint: only the largest connected component")
    embed.add_argument("--out", default="checkpoints", metavar="DIR", help="with --checkpoint: folder of runs")
    embed.add_argument("--name", default=None, metavar="RUN", help="with --checkpoint: the new run's name")
    embed.add_argument("--metrics", default="full", choices=METRICS_MODES, help=METRICS_HELP)
    embed.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from layerscope.engine.distributed import current
    from layerscope.engine.embed import embed_checkpoint, embed_run
    from layerscope.engine.layerwise import DEFAULT_BLOCK_ROWS
    from layerscope.engine.runs import default_run_name
    from layerscope.engine.user_model import read_state_dict

    if args.block_rows is not None and args.block_rows < 1:
        raise UserError(f"--block-rows must be at least 1, got {args.block_rows}")
    if args.split and args.split_file:
        raise UserError("give --split or --split-file, not both")
    declared = ("model", "model_factory", "aggr", "out_channels", "hidden", "layers")
    args.run = args.run or args.run_folder
    if args.checkpoint and current().active:
        raise UserError("under torchrun, embed takes a run folder (engine embed RUN); make the run of "
                        f"{args.checkpoint} in one process first")
    if args.run:
        refuse_given(args, ("dataset", "split", "split_file", "seed", "largest_component", "name", *declared),
                      "apply to --checkpoint; --run embeds the run's own graph")
        run = embed_run(Path(args.run), args.dtype, args.device, args.data_root, args.block_rows or DEFAULT_BLOCK_ROWS,
                        progress=not args.quiet, metrics=args.metrics)
        where = Path(args.run)
    else:
        name = args.name or default_run_name(args.dataset or Path(args.checkpoint).parent.name or "checkpoint",
                                             "embed")
        _, layerscope_config = read_state_dict(Path(args.checkpoint))
        if layerscope_config is not None and args.model is None and args.model_factory is None:
            refuse_given(args, declared, f"declare a plain state dict's model; {args.checkpoint} is a layerscope "
                                          "checkpoint, which carries its own")
            overrides = {k: getattr(args, k) for k in ("dataset", "split", "split_file", "seed", "largest_component",
                                                       "data_root")}
            run = embed_checkpoint(Path(args.checkpoint), Path(args.out), name, overrides, args.dtype, args.device,
                                   progress=not args.quiet, metrics=args.metrics,
                                   block_rows=args.block_rows or DEFAULT_BLOCK_ROWS)
        else:
            run = _embed_state_dict(args, name)
        where = Path(args.out) / name
    if current().main:      # under torchrun, rank 0 speaks for all
        print(f"{where}: {len(run['layers'])} layers, {run['embedding']['seconds']:.1f} s")
        print(layer_table(run))
    return 0

def _embed_state_dict(args: argparse.Namespace, name: str) -> dict:
    """``embed --checkpoint`` of a plain PyG state dict with a declared model or a factory."""
    from layerscope.engine.data import load_dataset
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.user_model import embed_state_dict

    if args.model and args.model_factory:
        raise UserError("give --model or --model-factory, not both")
    if args.model is None and args.model_factory is None:
        raise UserError(f"{args.checkpoint} is a plain state dict: declare its model (--model sage --layers 3 "
                        "--hidden 256 --aggr mean) or give --model-factory module:function")
    if args.dataset is None:
        raise UserError(f"{args.checkpoint}: a state dict does not say which graph it was trained on; give --dataset")
    bundle = load_dataset(args.dataset, args.data_root, args.split, args.seed or 0, bool(args.largest_component),
                          split_file=args.split_file)
    d = TrainConfig()
    result = embed_state_dict(Path(args.checkpoint), bundle, Path(args.out), name, model=args.model,
                              factory=args.model_factory, hidden_channels=args.hidden or d.hidden_channels,
                              num_layers=args.layers or d.num_layers, out_channels=args.out_channels, aggr=args.aggr,
                              dtype=args.dtype, device=args.device, block_rows=args.block_rows, metrics=args.metrics,
                              predictions=args.predictions, progress=not args.quiet)
    why = f" ({result.reason})" if result.reason else ""
    print(f"{result.path} path{why}")
    if args.model:
        settings = "; ".join(f"{layer['name']}: " + ", ".join(f"{k}={v}" for k, v in layer.items()
                                                              if k in ("class", "aggr", "normalize", "root_weight",
                                                                       "improved", "add_self_loops"))
                             for layer in result.record["model"]["layers"])
        print(f"declared {args.model} as built (a state dict stores none of these; if yours differ, use "
              f"--model-factory): {settings}")
    return result.record
