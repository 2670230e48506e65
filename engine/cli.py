"""``python -m engine``: the command line.

Every mistake a user can make ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from layerscope.engine.commands import embed, runs, train
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    train.add_parser(commands)
    embed.add_parser(commands)
    runs.add_parsers(commands)
    return parser


HANDLERS = {"train": train.run, "embed": embed.run, **runs.HANDLERS}


# The commands that run as several processes under torchrun (engine.distributed).
DISTRIBUTED = ("train", "embed")


def main(argv: list[str] | None = None) -> int:
    from layerscope.engine.distributed import joined, main_rank

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in HANDLERS:
            with joined(args.device) if args.command in DISTRIBUTED else nullcontext():
                return HANDLERS[args.command](args)
        parser.print_help()
        return 2
    except UserError as e:
        if main_rank() or not e.shared:     # under torchrun, an error all ranks share is printed once
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume --name RUN", file=sys.stderr)
        return 130
