"""``engine list``, ``compare``, ``project``, ``import``, ``datasets`` and
``dashboard``: the commands that read, extend or show run folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layerscope.engine.commands.common import METRICS_HELP, Defaults, layer_table, size_text
from layerscope.engine.errors import UserError

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


def add_parsers(commands) -> None:
    for add in (_add_list, _add_compare, _add_project, _add_import, _add_datasets, _add_dashboard):
        add(commands)


def _add_list(commands) -> None:
    listing = commands.add_parser("list", help="list complete runs and warn about broken ones",
                                  description="One line per complete run: dataset, model, objective, test "
                                              "metric, layers, best layer by kNN accuracy, size on disk. "
                                              "One warning line per broken or unfinished folder.",
                                  formatter_class=Defaults)
    listing.add_argument("--out", default="checkpoints", metavar="DIR", help="folder of run folders")


def _add_compare(commands) -> None:
    compare = commands.add_parser(
        "compare", help="per-layer metrics and layer-by-layer CKA of one or two runs",
        description="Print each run's per-layer metrics (kNN accuracy, silhouette, linear-probe accuracy) "
                    "and the linear CKA between every layer of RUN_A and every layer of RUN_B (or of "
                    "RUN_A with itself). Two runs must be on the same graph (same fingerprint).")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="one or two run folders")


def _add_project(commands) -> None:
    from layerscope.engine.project import ALIGNMENTS, DEFAULT_SAMPLE, METHODS, METRICS, ProjectionConfig

    p = ProjectionConfig()
    project = commands.add_parser(
        "project", help="2-D layouts of a run's layers, aligned and cached",
        description="Lay out the layers of a run in 2-D over a shared, category-stratified node sample "
                    "(the same nodes for every layer and every run on the graph), align them, and cache "
                    "them in RUN/projections/. A layout already there is read, not recomputed.",
        formatter_class=Defaults)
    project.add_argument("--run", required=True, metavar="DIR", help="a complete run folder")
    project.add_argument("--layers", default="all", metavar="all|0,1,3",
                         help="all, layer positions, or layer names (input,hidden2)")
    project.add_argument("--sample", type=int, default=None,
                         help=f"nodes in the shared sample (default {DEFAULT_SAMPLE:,}, or every node of a "
                              "smaller graph)")
    project.add_argument("--all-nodes", action="store_true",
                         help="also place every node outside the sample: at the weighted mean of its nearest "
                              "sampled nodes' places (umap-learn's transform without its epochs), kept in "
                              "RUN/projections/KEY.placed.npy")
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


def _add_import(commands) -> None:
    from layerscope.engine.record import METRICS_MODES

    imp = commands.add_parser(
        "import", help="make a run folder from your own embeddings",
        description="Turn embeddings made elsewhere into a run folder the dashboard reads: one .npy per "
                    "layer (N x dim, in layer order) and the N labels.",
        formatter_class=Defaults)
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


def _add_datasets(commands) -> None:
    commands.add_parser("datasets", help="list dataset names and where their files go",
                        description="List the dataset names train accepts and the files each reads.")


def _add_dashboard(commands) -> None:
    board = commands.add_parser("dashboard", help="start the dashboard on a folder of runs",
                                description="Start the Streamlit dashboard (streamlit run dashboard/app.py) on "
                                            "--runs, offline: no usage statistics are sent.",
                                formatter_class=Defaults)
    board.add_argument("--runs", default="checkpoints", metavar="DIR", help="folder of run folders")
    board.add_argument("--port", type=int, default=8501, help="port to serve on (127.0.0.1)")


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
              f"{metric}  {len(layers)} layers  {best_text}  {size_text(run.size_bytes())}")
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
        print(layer_table(r))
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
    if args.all_nodes:
        from layerscope.engine.placement import place_all_nodes

        placements = place_all_nodes(run, layouts, cfg, progress=not args.quiet)
        print(f"every node placed ({run.record['dataset']['num_nodes']:,}):")
        for placement in placements:
            info = placement.info
            print(f"  {placement.layer:12} {info.get('placed', 0):,} placed in {info.get('seconds', 0):.1f} s  "
                  f"projections/{info.get('layout')}.placed.npy")
    return 0


def _import(args: argparse.Namespace) -> int:
    from layerscope.engine.imported import import_embeddings

    optional = {k: Path(getattr(args, k)) if getattr(args, k) else None
                for k in ("labels", "class_names", "split_file", "logits", "edges")}
    run = import_embeddings([Path(p) for p in args.embeddings], Path(args.out), args.name,
                            labels_file=optional["labels"], class_names_file=optional["class_names"],
                            split=args.split, seed=args.seed, dataset=args.dataset, data_root=args.data_root,
                            split_file=optional["split_file"], logits_file=optional["logits"],
                            edges_file=optional["edges"],
                            metrics=args.metrics, progress=not args.quiet)
    print(f"{Path(args.out) / args.name}: {len(run['layers'])} layers, predictions by {run['nodes']['predicted_by']}")
    print(layer_table(run))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from layerscope.engine.launch import run_dashboard

    return run_dashboard(Path(args.runs), port=args.port)


def _datasets(args: argparse.Namespace) -> int:
    from layerscope.engine.data import data_root

    print(f"ROOT = {data_root()} (--data-root or LAYERSCOPE_DATA)\n{DATASET_FILES}")
    return 0


HANDLERS = {"list": _list, "compare": _compare, "project": _project, "import": _import, "datasets": _datasets,
            "dashboard": _dashboard}
