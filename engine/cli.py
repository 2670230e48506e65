"""``python -m engine``: the command line.

Every mistake a user can make ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import UserError

DESCRIPTION = """layerscope engine: train GNNs and write run folders the dashboard reads.

commands:
  train      train sage, gcn or gvae on a dataset; writes checkpoints/<run>/
  datasets   list the dataset names and where their files go
"""

EPILOG = "Run 'python -m engine COMMAND --help' for a command's options."


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


def build_parser() -> argparse.ArgumentParser:
    from engine.data import dataset_names
    from engine.models import MODELS
    from engine.sampler import SAMPLERS
    from engine.train import MONITORS, WEIGHT_DECAY_ON, TrainConfig

    d = TrainConfig()
    parser = _Parser(prog="python -m engine", description=DESCRIPTION, epilog=EPILOG,
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
    train.add_argument("--epochs", type=int, default=d.epochs, help="most epochs to train")
    train.add_argument("--hidden", type=int, default=d.hidden_channels, help="hidden channels")
    train.add_argument("--layers", type=int, default=d.num_layers, help="message-passing layers")
    train.add_argument("--out-channels", type=int, default=d.out_channels, help="gvae latent width")
    train.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    train.add_argument("--weight-decay", type=float, default=d.weight_decay, help="Adam L2 penalty")
    train.add_argument("--weight-decay-on", default=d.weight_decay_on, choices=WEIGHT_DECAY_ON,
                       help="penalise every layer, or only the first as Kipf & Welling's GCN does")
    train.add_argument("--dropout", type=float, default=None,
                       help="dropout after every hidden layer (default 0.5; gvae 0)")
    train.add_argument("--input-dropout", type=float, default=d.input_dropout,
                       help="dropout on the input features")
    train.add_argument("--l2-normalize", action="store_true",
                       help="sage: scale every layer's output to unit length (GraphSAGE paper)")
    train.add_argument("--split", default=None,
                       help="60/20/20-style percentages or per-class:20,30 (default: the official "
                            "split where the dataset has one, else 60/20/20)")
    train.add_argument("--largest-component", action="store_true",
                       help="train and evaluate on the largest connected component only, as "
                            "Shchur et al. do")
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
    train.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    train.add_argument("--normalize-features", action="store_true",
                       help="scale each node's features to sum 1 (helps bag-of-words features)")
    train.add_argument("--data-root", default=None, metavar="DIR",
                       help="dataset folder (default: $LAYERSCOPE_DATA, else ./data)")
    train.add_argument("--out", default="checkpoints", metavar="DIR", help="folder of run folders")
    train.add_argument("--name", default=None, metavar="RUN", help="run folder name (default: dataset-model-time)")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run --name from its last epoch, with its own settings")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    commands.add_parser("datasets", help="list dataset names and where their files go",
                        description="List the dataset names train accepts and the files each reads.")
    return parser


def _train(args: argparse.Namespace) -> int:
    from engine.runs import default_run_name
    from engine.train import TrainConfig, train_run

    if args.resume and not args.name:
        raise UserError("--resume needs --name RUN, the run to continue")
    cfg = TrainConfig(dataset=args.dataset, model=args.model, epochs=args.epochs,
                      hidden_channels=args.hidden, num_layers=args.layers, out_channels=args.out_channels,
                      lr=args.lr, weight_decay=args.weight_decay, weight_decay_on=args.weight_decay_on,
                      dropout=args.dropout, input_dropout=args.input_dropout, l2_normalize=args.l2_normalize,
                      split=args.split, largest_component=args.largest_component, fanout=args.fanout,
                      batch_size=args.batch_size, sampler=args.sampler, patience=args.patience,
                      monitor=args.monitor, seed=args.seed, device=args.device, amp=not args.no_amp,
                      normalize_features=args.normalize_features, data_root=args.data_root)
    name = args.name or default_run_name(cfg.dataset, cfg.model)
    run = train_run(cfg, Path(args.out), name, resume=args.resume, progress=not args.quiet)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in run["metrics"].items() if isinstance(v, float))
    print(f"{Path(args.out) / name}: {metrics}")
    return 0


DATASET_FILES = """\
demo               built in; no files
amazon-photo       ROOT/Photo/raw/amazon_electronics_photo.npz (or ROOT/amazon_photo/)
amazon-computers   ROOT/Computers/raw/amazon_electronics_computers.npz (or ROOT/amazon_computers/)
cora, citeseer,    ROOT/Cora/raw/ind.cora.{x,tx,allx,y,ty,ally,graph,test.index}
  pubmed             (likewise CiteSeer, PubMed; or under ROOT/planetoid/)
ogbn-products      ROOT/ogbn_products/{raw,split/sales_ranking,mapping} as OGB lays them out
ogbn-arxiv         ROOT/ogbn_arxiv/{raw,split/time,mapping}
csv:DIR            DIR/nodes.csv, DIR/edges.csv (see the README); parquet:DIR likewise
Missing public files are downloaded when the network allows it."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "datasets":
            from engine.data import data_root
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
