"""``engine train``: its options are generated from ``TrainConfig``'s fields
and their comments (``engine.config.documented_fields``), so a new setting is
added once, in the config."""

from __future__ import annotations

import argparse
import time
from dataclasses import MISSING, Field, fields
from pathlib import Path

from layerscope.engine.commands.common import METRICS_HELP, Defaults, layer_table
from layerscope.engine.errors import UserError

METAVARS = {"dataset": "NAME", "split_file": "FILE", "data_root": "DIR", "fanout": "15,10,5",
            "drop_edge": "P1,P2", "drop_feature": "P1,P2"}


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


# Second spellings of the options torchrun's own parser would take for an
# abbreviation of one of its own (--monitor of --monitor-interval) when they
# follow `torchrun ... -m engine train`.
TORCHRUN_SAFE = {"monitor": ("--early-stopping-on",)}

# A field's annotation (a string: the config module uses postponed annotations) -> how its option parses.
PARSERS = {"int": int, "float": float, "str": str, "list[int]": _int_list, "tuple[float, float]": _probabilities}


def config_option(field: Field, comment: str) -> tuple[list[str], dict]:
    """``add_argument``'s arguments for one ``TrainConfig`` field."""
    from layerscope.engine.config import CHOICES, flag

    kind = str(field.type).removesuffix(" | None")
    default = field.default if field.default is not MISSING else field.default_factory()
    if kind == "bool":      # a flag that turns the default around
        name = flag(field.name) if not default else f"no-{flag(field.name)}"
        return [f"--{name}"], {"dest": field.name, "action": "store_false" if default else "store_true",
                               "help": comment if not default else f"turn off: {comment}"}
    if kind not in PARSERS:
        raise TypeError(f"TrainConfig.{field.name}: no command-line parser for {field.type}")
    options = {"dest": field.name, "default": default, "help": comment.replace("None: ", "default: "),
               "metavar": METAVARS.get(field.name, flag(field.name).upper().replace("-", "_"))}
    if kind != "str":
        options["type"] = PARSERS[kind]
    if field.name in CHOICES:
        options["choices"] = CHOICES[field.name]()
        del options["metavar"]      # argparse shows the choices
    return [f"--{flag(field.name)}", *TORCHRUN_SAFE.get(field.name, ())], options


def add_parser(commands) -> None:
    from layerscope.engine.config import documented_fields
    from layerscope.engine.objectives import OBJECTIVES
    from layerscope.engine.record import DTYPES, METRICS_MODES

    objectives = "\n".join(f"  {name:11} {spec.help}" for name, spec in OBJECTIVES.items())
    train = commands.add_parser(
        "train", help="train a model and write its run folder",
        description="Train a model and write checkpoints/<run>/ (model.pt, history.csv, run.json).\n"
                    "Defaults are the OGB ogbn-products GraphSAGE recipe.",
        epilog=f"objectives:\n{objectives}", formatter_class=_TrainHelp)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for group, field, comment in documented_fields():
        target = train if group is None else groups.setdefault(group, train.add_argument_group(group))
        names, options = config_option(field, comment)
        target.add_argument(*names, **options)
    train.add_argument("--contrastive", default=None, choices=("infonce", "margin"),
                       help="with --objective contrastive, the old spelling of --objective infonce / margin")
    train.add_argument("--out", default="checkpoints", metavar="DIR", help="folder of run folders")
    train.add_argument("--name", default=None, metavar="RUN", help="run folder name (default: dataset-model-time)")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run --name from its last epoch, with its own settings "
                            "(refused while a live process still writes it: see layerscope list)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--no-embed", action="store_true",
                       help="stop after training; write the embeddings later with engine embed")
    train.add_argument("--dtype", default="float32", choices=DTYPES,
                       help="layer files' dtype; float16 halves them for large graphs")
    train.add_argument("--metrics", default="full", choices=METRICS_MODES, help=METRICS_HELP)


class _TrainHelp(Defaults, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the objectives' epilog kept as written."""


def config_from_args(args: argparse.Namespace):
    """The ``TrainConfig`` the options describe."""
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.objectives import TWO_LEVEL, objective_name

    if args.contrastive is not None and args.objective != TWO_LEVEL:
        raise UserError(f"--contrastive goes with --objective {TWO_LEVEL}, the old spelling of "
                        f"--objective {args.contrastive}; give --objective {args.contrastive}")
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    values["objective"] = objective_name(args.objective, args.contrastive)
    if values["split_file"]:
        values["split_file"] = str(Path(values["split_file"]).resolve())
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    from layerscope.engine.distributed import current
    from layerscope.engine.pipeline import train_run
    from layerscope.engine.runs import default_run_name
    from layerscope.engine.train_report import final_line

    if args.resume and not args.name:
        raise UserError("--resume needs --name RUN, the run to continue")
    cfg = config_from_args(args)
    name = args.name or default_run_name(cfg.dataset, cfg.model)
    started = time.perf_counter()
    record = train_run(cfg, Path(args.out), name, resume=args.resume, progress=not args.quiet,
                       embed=not args.no_embed, dtype=args.dtype, metrics=args.metrics)
    if current().main:      # under torchrun, rank 0 speaks for all
        if record.get("layers"):
            print(layer_table(record))
        print(final_line(record, str(Path(args.out) / name), time.perf_counter() - started))
    return 0
