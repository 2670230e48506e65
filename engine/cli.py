"""``python -m engine``: the command line.

Every mistake a user can make ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layerscope.engine.errors import UserError

DESCRIPTION = """layerscope engine: train GNNs and write run folders the dashboard reads.

commands:
  train      train sage, gcn, graphconv or gvae on a dataset, with or without labels; writes
             checkpoints/<run>/ with every layer's embeddings
  embed      write every layer's embeddings of a trained run, of a layerscope model.pt, or of a plain
             PyG state dict (declared --model, or --model-factory), with per-layer metrics
  list       the complete runs in checkpoints/, one line each, and a warning per broken folder
  compare    per-layer metrics of one or two runs and their layer-by-layer linear CKA
  project    2-D UMAP (or PCA) layouts of a run's layers, aligned and cached in the run folder
  import     make a run folder from embeddings computed elsewhere (.npy), on a dataset's graph or with labels
  datasets   list the dataset names and where their files go
  dashboard  start the dashboard on a folder of runs
"""

PROG = "layerscope" if sys.argv and Path(sys.argv[0]).name == "layerscope" else "python -m engine"
EPILOG = f"Run '{PROG} COMMAND --help' for a command's options."


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one: not for flags or None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _probabilities(text: str) -> tuple[float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two comma-separated probabilities") from None
    return values * 2 if len(values) == 1 else values


METRICS_HELP = ("what to score per layer: full (kNN accuracy, silhouette, linear probe, CKA), fast (no probe: "
                "most of the time) or none (the dashboard scores on demand)")


def build_parser() -> argparse.ArgumentParser:
    from layerscope.engine.data import dataset_names
    from layerscope.engine.record import DTYPES, METRICS_MODES
    from layerscope.engine.label_free import CONTRASTIVE
    from layerscope.engine.layerwise import DEFAULT_BLOCK_ROWS
    from layerscope.engine.models import MODELS
    from layerscope.engine.sampler import SAMPLERS
    from layerscope.engine.config import AGGREGATIONS, MONITORS, WEIGHT_DECAY_ON, TrainConfig
    from layerscope.engine.user_model import PREDICTIONS

    d = TrainConfig()
    parser = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train a model and write its run folder",
        description="Train a model and write checkpoints/<run>/ (model.pt, history.csv, run.json). "
                    "Defaults are the OGB ogbn-products GraphSAGE recipe.",
        formatter_class=_Defaults)
    train.add_argument("--dataset", default=d.dataset, metavar="NAME",
                       help=f"one of {', '.join(dataset_names())}")
    train.add_argument("--model", default=d.model, choices=list(MODELS))
    objectives = sorted({o for spec in MODELS.values() for o in spec.objectives})
    train.add_argument("--objective", default=None, choices=objectives,
                       help="what to train for: supervised (labels), unsup (GraphSAGE's random-walk loss) or "
                            "contrastive (see --contrastive); no labels are read for unsup and contrastive. "
                            "Default: supervised, gvae: vgae")
    train.add_argument("--contrastive", default=d.contrastive, choices=CONTRASTIVE,
                       help="infonce: GRACE's two augmented views with a projection head; margin: linked "
                            "pairs pulled together, random pairs pushed beyond --margin")
    train.add_argument("--epochs", type=int, default=d.epochs, help="most epochs to train")
    train.add_argument("--hidden", type=int, default=d.hidden_channels, help="hidden channels")
    train.add_argument("--layers", type=int, default=d.num_layers, help="message-passing layers")
    train.add_argument("--out-channels", type=int, default=d.out_channels,
                       help="embedding width of gvae, unsup and contrastive (classifiers: the class count)")
    train.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    train.add_argument("--weight-decay", type=float, default=d.weight_decay, help="Adam L2 penalty")
    train.add_argument("--weight-decay-on", default=d.weight_decay_on, choices=WEIGHT_DECAY_ON,
                       help="penalise every layer, or only the first as Kipf & Welling's GCN does")
    train.add_argument("--dropout", type=float, default=None,
                       help="dropout after every hidden layer (default 0.5 when supervised, else 0)")
    train.add_argument("--input-dropout", type=float, default=d.input_dropout,
                       help="dropout on the input features")
    train.add_argument("--l2-normalize", action="store_true",
                       help="sage: scale every layer's output to unit length (GraphSAGE paper)")
    train.add_argument("--aggr", default=None, choices=AGGREGATIONS,
                       help="sage / graphconv neighbour aggregation (default: mean for sage, sum for graphconv)")
    label_free = train.add_argument_group("label-free objectives")
    label_free.add_argument("--walk-length", type=int, default=d.walk_length,
                            help="unsup: a node's positive is met within this many random-walk steps")
    label_free.add_argument("--negatives", type=int, default=d.negatives,
                            help="unsup: negatives per batch, drawn in proportion to degree^0.75")
    label_free.add_argument("--margin", type=float, default=d.margin,
                            help="contrastive margin: the distance random pairs are pushed beyond")
    label_free.add_argument("--tau", type=float, default=d.tau, help="contrastive infonce: temperature")
    label_free.add_argument("--drop-edge", type=_probabilities, default=d.drop_edge, metavar="P1,P2",
                            help="contrastive infonce: share of edges dropped in each view")
    label_free.add_argument("--drop-feature", type=_probabilities, default=d.drop_feature, metavar="P1,P2",
                            help="contrastive infonce: share of feature columns masked in each view")
    label_free.add_argument("--projection", type=int, default=d.projection_channels,
                            help="contrastive infonce: hidden width of the projection head")
    train.add_argument("--split", default=None,
                       help="60/20/20-style percentages or per-class:20,30 (default: the official "
                            "split where the dataset has one, else 60/20/20)")
    train.add_argument("--split-file", default=None, metavar="FILE",
                       help="your own split: .npz of train / val / test index or mask arrays, or .pt of OGB's "
                            "split_idx (read with weights_only=True)")
    train.add_argument("--largest-component", action="store_true",
                       help="train and evaluate on the largest connected component only, as "
                            "Shchur et al. do")
    train.add_argument("--scale", type=float, default=d.scale,
                       help="synthetic-products only: its size relative to ogbn-products (0.1: a tenth)")
    train.add_argument("--fanout", type=_int_list, default=None, metavar="15,10,5",
                       help="neighbours sampled per layer: train in mini-batches (default: full-batch "
                            "when the graph fits in memory, else 15,10,5)")
    train.add_argument("--batch-size", type=int, default=d.batch_size, help="seed nodes per mini-batch")
    train.add_argument("--sampler", default=d.sampler, choices=SAMPLERS,
                       help="auto uses pyg-lib / torch-sparse when installed, else the built-in sampler")
    train.add_argument("--patience", type=int, default=d.patience,
                       help="stop after this many epochs without a better validation score")
    train.add_argument("--monitor", default=d.monitor, choices=MONITORS,
                       help="what early stopping and the saved best model follow: the validation "
                            "score (accuracy; gvae link AUC) or the validation loss")
    train.add_argument("--seed", type=int, default=d.seed)
    train.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    train.add_argument("--no-amp", action="store_true",
                       help="no bf16 autocast of sampled batches (on CUDA and CPUs with AVX512-BF16 or AMX)")
    train.add_argument("--normalize-features", action="store_true",
                       help="scale each node's features to sum 1 (helps bag-of-words features)")
    train.add_argument("--data-root", default=None, metavar="DIR",
                       help="dataset folder (default: $LAYERSCOPE_DATA, else ./data)")
    train.add_argument("--out", default="checkpoints", metavar="DIR", help="folder of run folders")
    train.add_argument("--name", default=None, metavar="RUN", help="run folder name (default: dataset-model-time)")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run --name from its last epoch, with its own settings")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--no-embed", action="store_true",
                       help="stop after training; write the embeddings later with engine embed")
    train.add_argument("--dtype", default="float32", choices=DTYPES,
                       help="layer files' dtype; float16 halves them for large graphs")
    train.add_argument("--metrics", default="full", choices=METRICS_MODES, help=METRICS_HELP)

    embed = commands.add_parser(
        "embed", help="write every layer's embeddings and per-layer metrics",
        description="Run layer-wise inference over the whole graph and write layers/<name>.npy (input "
                    "features first), nodes.parquet and run.json with kNN accuracy, silhouette, "
                    "linear-probe accuracy and CKA per layer. Rerunning it finishes an interrupted dump.",
        formatter_class=_Defaults)
    source = embed.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="DIR", help="a run folder written by engine train")
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

    listing = commands.add_parser("list", help="list complete runs and warn about broken ones",
                                  description="One line per complete run: dataset, model, objective, test "
                                              "metric, layers, best layer by kNN accuracy, size on disk. "
                                              "One warning line per broken or unfinished folder.",
                                  formatter_class=_Defaults)
    listing.add_argument("--out", default="checkpoints", metavar="DIR", help="folder of run folders")

    compare = commands.add_parser(
        "compare", help="per-layer metrics and layer-by-layer CKA of one or two runs",
        description="Print each run's per-layer metrics (kNN accuracy, silhouette, linear-probe accuracy) "
                    "and the linear CKA between every layer of RUN_A and every layer of RUN_B (or of "
                    "RUN_A with itself). Two runs must be on the same graph (same fingerprint).")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="one or two run folders")

    from layerscope.engine.project import ALIGNMENTS, DEFAULT_SAMPLE, METHODS, METRICS, ProjectionConfig

    p = ProjectionConfig()
    project = commands.add_parser(
        "project", help="2-D layouts of a run's layers, aligned and cached",
        description="Lay out the layers of a run in 2-D over a shared, category-stratified node sample "
                    "(the same nodes for every layer and every run on the graph), align them, and cache "
                    "them in RUN/projections/. A layout already there is read, not recomputed.",
        formatter_class=_Defaults)
    project.add_argument("--run", required=True, metavar="DIR", help="a complete run folder")
    project.add_argument("--layers", default="all", metavar="all|0,1,3",
                         help="all, layer positions, or layer names (input,hidden2)")
    project.add_argument("--sample", type=int, default=None,
                         help=f"nodes in the shared sample (default {DEFAULT_SAMPLE:,}, or every node of a "
                              "smaller graph)")
    project.add_argument("--all-nodes", action="store_true",
                         help="also place every node outside the sample (UMAP transform)")
    project.add_argument("--method", default=p.method, choices=METHODS, help="UMAP, or a 2-D PCA")
    project.add_argument("--n-neighbors", type=int, default=p.n_neighbors, help="UMAP neighbourhood size")
    project.add_argument("--min-dist", type=float, default=p.min_dist, help="UMAP minimum distance")
    project.add_argument("--metric", default=p.metric, choices=METRICS,
                         help="distance between a layer's rows that the layout preserves")
    project.add_argument("--n-epochs", type=int, default=None,
                         help="UMAP epochs (default 200 below 10,000 nodes, else 40)")
    project.add_argument("--pca-dims", type=int, default=p.pca_dims,
                         help="layers wider than this are reduced with PCA before UMAP")
    project.add_argument("--seed", type=int, default=p.seed, help="sample, PCA and UMAP seed")
    project.add_argument("--align", default=p.align, choices=ALIGNMENTS,
                         help="procrustes: each layer onto the one before; aligned-umap: all layers "
                              "together (umap-learn's AlignedUMAP)")
    project.add_argument("--quiet", action="store_true", help="no progress bar")

    imp = commands.add_parser(
        "import", help="make a run folder from your own embeddings",
        description="Turn embeddings made elsewhere into a run folder the dashboard reads: one .npy per "
                    "layer (N x dim, in layer order) and the N labels.",
        formatter_class=_Defaults)
    imp.add_argument("--embeddings", nargs="+", required=True, metavar="A.npy", help="one file per layer")
    imp.add_argument("--dataset", default=None, metavar="NAME",
                     help="the graph the rows are nodes of: gives labels, class names, split, degree, neighbours "
                          "and the fingerprint that puts the run beside engine runs on the same graph")
    imp.add_argument("--data-root", default=None, metavar="DIR", help="with --dataset: its folder")
    imp.add_argument("--labels", default=None, metavar="labels.npy",
                     help="N integer class indices (without --dataset)")
    imp.add_argument("--edges", default=None, metavar="edges.npy",
                     help="without --dataset: the graph, (2, E) or (E, 2) node indices (made undirected), for "
                          "degree and Neighbours")
    imp.add_argument("--logits", default=None, metavar="logits.npy",
                     help="(N, classes) outputs of your model: its argmax is each node's prediction "
                          "(default: a linear probe on the last layer)")
    imp.add_argument("--split-file", default=None, metavar="FILE",
                     help="your split (.npz of index or mask arrays, .pt of OGB's split_idx)")
    imp.add_argument("--metrics", default="full", choices=METRICS_MODES, help=METRICS_HELP)
    imp.add_argument("--class-names", default=None, metavar="names.txt", help="one class name per line")
    imp.add_argument("--name", required=True, metavar="RUN", help="the new run folder's name")
    imp.add_argument("--out", default="checkpoints", metavar="DIR", help="folder of run folders")
    imp.add_argument("--split", default=None,
                     help="the split kNN and probe metrics use (default: the dataset's own, or 60/20/20 with --labels)")
    imp.add_argument("--seed", type=int, default=0, help="split seed")
    imp.add_argument("--quiet", action="store_true", help="no progress bars")

    commands.add_parser("datasets", help="list dataset names and where their files go",
                        description="List the dataset names train accepts and the files each reads.")

    board = commands.add_parser("dashboard", help="start the dashboard on a folder of runs",
                                description="Start the Streamlit dashboard (streamlit run dashboard/app.py) on "
                                            "--runs, offline: no usage statistics are sent.",
                                formatter_class=_Defaults)
    board.add_argument("--runs", default="checkpoints", metavar="DIR", help="folder of run folders")
    board.add_argument("--port", type=int, default=8501, help="port to serve on (127.0.0.1)")
    return parser


def _train(args: argparse.Namespace) -> int:
    from layerscope.engine.runs import default_run_name
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.pipeline import train_run

    if args.resume and not args.name:
        raise UserError("--resume needs --name RUN, the run to continue")
    cfg = TrainConfig(dataset=args.dataset, model=args.model, objective=args.objective,
                      contrastive=args.contrastive, epochs=args.epochs,
                      hidden_channels=args.hidden, num_layers=args.layers, out_channels=args.out_channels,
                      lr=args.lr, weight_decay=args.weight_decay, weight_decay_on=args.weight_decay_on,
                      dropout=args.dropout, input_dropout=args.input_dropout, l2_normalize=args.l2_normalize,
                      split=args.split, largest_component=args.largest_component, scale=args.scale,
                      fanout=args.fanout,
                      batch_size=args.batch_size, sampler=args.sampler, patience=args.patience,
                      monitor=args.monitor, seed=args.seed, device=args.device, amp=not args.no_amp,
                      normalize_features=args.normalize_features, data_root=args.data_root,
                      split_file=str(Path(args.split_file).resolve()) if args.split_file else None, aggr=args.aggr,
                      walk_length=args.walk_length, negatives=args.negatives, margin=args.margin, tau=args.tau,
                      drop_edge=args.drop_edge, drop_feature=args.drop_feature,
                      projection_channels=args.projection)
    name = args.name or default_run_name(cfg.dataset, cfg.model)
    run = train_run(cfg, Path(args.out), name, resume=args.resume, progress=not args.quiet,
                    embed=not args.no_embed, dtype=args.dtype, metrics=args.metrics)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in run["metrics"].items() if isinstance(v, float))
    print(f"{Path(args.out) / name}: {metrics}")
    if run.get("layers"):
        print(_layer_table(run))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from layerscope.engine.embed import embed_checkpoint, embed_run
    from layerscope.engine.layerwise import DEFAULT_BLOCK_ROWS
    from layerscope.engine.runs import default_run_name
    from layerscope.engine.user_model import read_state_dict

    if args.block_rows is not None and args.block_rows < 1:
        raise UserError(f"--block-rows must be at least 1, got {args.block_rows}")
    if args.split and args.split_file:
        raise UserError("give --split or --split-file, not both")
    declared = ("model", "model_factory", "aggr", "out_channels", "hidden", "layers")
    if args.run:
        _refuse_given(args, ("dataset", "split", "split_file", "seed", "largest_component", "name", *declared),
                      "apply to --checkpoint; --run embeds the run's own graph")
        run = embed_run(Path(args.run), args.dtype, args.device, args.data_root, args.block_rows or DEFAULT_BLOCK_ROWS,
                        progress=not args.quiet, metrics=args.metrics)
        where = Path(args.run)
    else:
        name = args.name or default_run_name(args.dataset or Path(args.checkpoint).parent.name or "checkpoint",
                                             "embed")
        _, layerscope_config = read_state_dict(Path(args.checkpoint))
        if layerscope_config is not None and args.model is None and args.model_factory is None:
            _refuse_given(args, declared, f"declare a plain state dict's model; {args.checkpoint} is a layerscope "
                                          "checkpoint, which carries its own")
            overrides = {k: getattr(args, k) for k in ("dataset", "split", "split_file", "seed", "largest_component",
                                                       "data_root")}
            run = embed_checkpoint(Path(args.checkpoint), Path(args.out), name, overrides, args.dtype, args.device,
                                   progress=not args.quiet, metrics=args.metrics,
                                   block_rows=args.block_rows or DEFAULT_BLOCK_ROWS)
        else:
            run = _embed_state_dict(args, name)
        where = Path(args.out) / name
    print(f"{where}: {len(run['layers'])} layers, {run['embedding']['seconds']:.1f} s")
    print(_layer_table(run))
    return 0


def _refuse_given(args: argparse.Namespace, names: tuple[str, ...], why: str) -> None:
    given = [f"--{k.replace('_', '-')}" for k in names if getattr(args, k) is not None]
    if given:
        raise UserError(f"{', '.join(given)} {why}")


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


def _layer_table(record: dict) -> str:
    """Per-layer metrics of one run, one row per layer."""
    lines = [f"  {'layer':12} {'dim':>6} {'kNN acc':>8} {'probe acc':>9} {'silhouette':>10}"]
    for e in record["layers"]:
        m = e.get("metrics") or {}
        knn, probe, sil = (("-" if m.get(k) is None else f"{m[k]:.4f}") for k in ("knn_acc", "probe_acc", "silhouette"))
        lines.append(f"  {e['name']:12} {e['dim']:>6} {knn:>8} {probe:>9} {sil:>10}")
    return "\n".join(lines)


def _size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""


def _list(args: argparse.Namespace) -> int:
    from layerscope.engine.runs import scan_runs

    if not Path(args.out).is_dir():
        raise UserError(f"{args.out} is not a folder of runs")
    runs, warnings = scan_runs(Path(args.out))
    for run in runs:
        r = run.record
        metric = next((f"{k} {r['metrics'][k]:.4f}" for k in ("test_acc", "test_auc") if k in r["metrics"]), "-")
        layers = run.layers
        best = max((e for e in layers if (e.get("metrics") or {}).get("knn_acc") is not None),
                   key=lambda e: e["metrics"]["knn_acc"], default=None)
        best_text = (f"best kNN {best['name']} {best['metrics']['knn_acc']:.4f}" if best
                     else "not scored" if layers else "not embedded")
        print(f"{run.name}  {r['dataset']['name']}  {r['model']['model']}  {r['model']['objective'] or '-'}  "
              f"{metric}  {len(layers)} layers  {best_text}  {_size(run.size_bytes())}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not runs and not warnings:
        print(f"no runs in {args.out}", file=sys.stderr)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from layerscope.engine.runs import read_run
    from layerscope.engine.summary import cross_run_cka

    if len(args.runs) > 2:
        raise UserError(f"compare takes one or two runs, got {len(args.runs)}")
    runs = [read_run(Path(p)) for p in args.runs]
    a, b = runs[0], runs[-1]
    matrix, num_nodes = cross_run_cka(a, b)
    for run in runs:
        r = run.record
        print(f"{run.path}: {r['dataset']['name']} {r['model']['model']}")
        print(_layer_table(r))
    width = max(len(e["name"]) for e in a.layers + b.layers) + 2
    print(f"linear CKA on {num_nodes:,} nodes: rows {a.name}, columns {b.name}")
    print(" " * width + "".join(f"{e['name']:>{width}}" for e in b.layers))
    for entry, row in zip(a.layers, matrix):
        print(f"{entry['name']:<{width}}" + "".join(f"{v:>{width}.3f}" for v in row))
    return 0


def _project(args: argparse.Namespace) -> int:
    from layerscope.engine.project import ProjectionConfig, project_layers, resolve_layers
    from layerscope.engine.runs import read_run

    run = read_run(Path(args.run))
    cfg = ProjectionConfig(method=args.method, sample=args.sample, all_nodes=args.all_nodes,
                           n_neighbors=args.n_neighbors, min_dist=args.min_dist, metric=args.metric,
                           n_epochs=args.n_epochs, pca_dims=args.pca_dims, seed=args.seed, align=args.align)
    layouts = project_layers(run, resolve_layers(run, args.layers), cfg, progress=not args.quiet)
    print(f"{run.path}: {args.method} layouts of {len(layouts[0].nodes):,} nodes, align {args.align}")
    print(f"  {'layer':12} {'seconds':>8} {'trustworthiness':>15}  file")
    for layout in layouts:
        info = layout.info
        seconds = "cached" if info["cached"] else f"{info['seconds']:.1f}"
        print(f"  {layout.layer:12} {seconds:>8} {info['trustworthiness']:>15.4f}  "
              f"projections/{info['key']}.parquet")
    return 0


def _import(args: argparse.Namespace) -> int:
    from layerscope.engine.embed import import_embeddings

    optional = {k: Path(getattr(args, k)) if getattr(args, k) else None
                for k in ("labels", "class_names", "split_file", "logits", "edges")}
    run = import_embeddings([Path(p) for p in args.embeddings], Path(args.out), args.name,
                            labels_file=optional["labels"], class_names_file=optional["class_names"],
                            split=args.split, seed=args.seed, dataset=args.dataset, data_root=args.data_root,
                            split_file=optional["split_file"], logits_file=optional["logits"],
                            edges_file=optional["edges"],
                            metrics=args.metrics, progress=not args.quiet)
    print(f"{Path(args.out) / args.name}: {len(run['layers'])} layers, predictions by {run['nodes']['predicted_by']}")
    print(_layer_table(run))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from layerscope.engine.launch import run_dashboard

    return run_dashboard(Path(args.runs), port=args.port)


COMMANDS = {"embed": _embed, "list": _list, "compare": _compare, "project": _project, "import": _import,
            "dashboard": _dashboard}


DATASET_FILES = """\
demo               built in; no files
amazon-photo       ROOT/Photo/raw/amazon_electronics_photo.npz (or ROOT/amazon_photo/)
amazon-computers   ROOT/Computers/raw/amazon_electronics_computers.npz (or ROOT/amazon_computers/)
cora, citeseer,    ROOT/Cora/raw/ind.cora.{x,tx,allx,y,ty,ally,graph,test.index}
  pubmed             (likewise CiteSeer, PubMed; or under ROOT/planetoid/)
ogbn-products      ROOT/ogbn_products/{raw,split/sales_ranking,mapping} as OGB lays them out
ogbn-arxiv         ROOT/ogbn_arxiv/{raw,split/time,mapping}
synthetic-products generated (--scale 0.1 for a tenth) and cached in $LAYERSCOPE_CACHE or
                     ~/.cache/layerscope; real labels and split from ROOT/ogbn_products/ when there
csv:DIR            DIR/nodes.csv, DIR/edges.csv (see the README); parquet:DIR likewise
Missing public files are downloaded when the network allows it."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        if args.command == "datasets":
            from layerscope.engine.data import data_root
            print(f"ROOT = {data_root()} (--data-root or LAYERSCOPE_DATA)\n{DATASET_FILES}")
            return 0
        parser.print_help()
        return 2
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume --name RUN", file=sys.stderr)
        return 130
