"""Every user mistake is one stderr line and exit status 2, and leaves no
visible run behind: train, embed, project, import, list and compare.

The commands run in this process through ``cli.main`` (a subprocess each
would cost a torch import per case); a traceback shows up here as an
exception the test does not catch. A few cases run as a user runs them, in a
subprocess, to check the same holds end to end.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from layerscope.engine import cli
from layerscope.engine.runs import read_run
from tests.conftest import assert_one_line_error, run_engine


class _Planted:
    """Creates ``marker`` when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder of inputs the cases point at: a small demo run, embedding,
    label and edge files good and bad, a planted pickle, a CSV graph."""
    from layerscope.engine.config import TrainConfig
    from layerscope.engine.pipeline import train_run

    w = tmp_path_factory.mktemp("world")
    train_run(TrainConfig(dataset="demo", model="sage", epochs=3, hidden_channels=8), w / "runs", "demo",
              progress=False, metrics="fast")
    train_run(TrainConfig(dataset="demo", model="gcn", epochs=2, hidden_channels=8, largest_component=True),
              w / "runs", "other-graph", progress=False, metrics="fast")
    rng = np.random.default_rng(0)
    n = 200
    np.save(w / "emb.npy", rng.normal(size=(n, 8)).astype(np.float32))
    np.save(w / "emb2.npy", rng.normal(size=(n, 4)).astype(np.float32))
    np.save(w / "short.npy", rng.normal(size=(n - 1, 8)).astype(np.float32))
    nan = rng.normal(size=(n, 8)).astype(np.float32)
    nan[3, 2] = np.nan
    np.save(w / "nan.npy", nan)
    np.save(w / "flat.npy", np.zeros(n, np.float32))
    np.save(w / "objects.npy", np.array([{"a": 1}] * n, dtype=object), allow_pickle=True)
    (w / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    labels = np.arange(n) % 4
    np.save(w / "labels.npy", labels)
    np.save(w / "labels-short.npy", labels[:-5])
    np.save(w / "labels-float.npy", labels.astype(np.float32))
    np.save(w / "labels-negative.npy", labels - 1)
    np.save(w / "labels-huge.npy", np.where(np.arange(n) == 0, 10**6, labels))
    np.save(w / "edges.npy", np.stack([np.arange(n - 1), np.arange(1, n)]))
    np.save(w / "edges-outside.npy", np.array([[0, 1], [1, n + 7]]))
    np.save(w / "edges-3rows.npy", np.zeros((3, 5), np.int64))
    np.save(w / "logits-wide.npy", rng.normal(size=(n, 9)).astype(np.float32))
    np.save(w / "logits-short.npy", rng.normal(size=(n - 1, 4)).astype(np.float32))
    (w / "two-names.txt").write_text("a\nb\n")
    (w / "a-file").write_text("not a folder")
    (w / "marker-dir").mkdir()
    torch.save({"x": _Planted(w / "marker-dir" / "executed")}, w / "planted.pt")
    (w / "garbage.pt").write_bytes(b"not a checkpoint")
    planted = w / "planted" / "Cora" / "raw"                # Planetoid's raw files are pickles
    planted.mkdir(parents=True)
    for part in ("x", "tx", "allx", "y", "ty", "ally", "graph"):
        (planted / f"ind.cora.{part}").write_bytes(pickle.dumps(_Planted(w / "marker-dir" / "executed")))
    (planted / "ind.cora.test.index").write_text("0\n")
    torch.save({"lin.weight": torch.zeros(2, 2)}, w / "plain.pt")
    (w / "split.json").write_text("{not json")
    (w / "empty").mkdir()
    for name, nodes, edges in (("csv-huge-label", "label,x0\n0,1.0\n1000000,2.0\n", "src,dst\n0,1\n"),
                               ("csv-negative-label", "label,x0\n0,1.0\n-1,2.0\n", "src,dst\n0,1\n"),
                               ("csv-edge-outside", "label,x0\n0,1.0\n1,2.0\n", "src,dst\n0,5\n"),
                               ("csv-no-label", "x0,x1\n0,1.0\n1,2.0\n", "src,dst\n0,1\n")):
        (w / name).mkdir()
        (w / name / "nodes.csv").write_text(nodes)
        (w / name / "edges.csv").write_text(edges)
    return w


# (command line, with {w} for the world folder and {out} for an empty runs folder; a fragment of the error)
CASES = {
    # train
    "train: unknown dataset": ("train --dataset imagenet", "unknown dataset 'imagenet'"),
    "train: unknown model": ("train --model gat", "invalid choice: 'gat'"),
    "train: files missing": ("train --dataset amazon-computers --data-root {w}/empty", "missing amazon_electronics_computers.npz"),
    "train: fanout length": ("train --fanout 15,10 --layers 3", "--fanout has 2 values but --layers is 3"),
    "train: fanout not numbers": ("train --fanout 15,x,5", "not a comma-separated list"),
    "train: split over 100": ("train --split 80/30/10", "add up to 100"),
    "train: resume nothing": ("train --resume --name never-ran", "no last.pt to resume from"),
    "train: resume without name": ("train --resume", "--resume needs --name"),
    "train: l2 on gcn": ("train --model gcn --l2-normalize", "--l2-normalize applies to sage"),
    "train: input dropout 1.5": ("train --input-dropout 1.5", "--input-dropout must be in [0, 1)"),
    "train: dropout 1": ("train --dropout 1", "--dropout must be in [0, 1)"),
    "train: zero epochs": ("train --epochs 0", "--epochs must be at least 1"),
    "train: negative epochs": ("train --epochs -3", "--epochs must be at least 1"),
    "train: zero hidden": ("train --hidden 0", "--hidden must be at least 1"),
    "train: zero layers": ("train --layers 0", "--layers must be at least 1"),
    "train: negative lr": ("train --lr -0.1", "--lr must be a positive number"),
    "train: nan lr": ("train --lr nan", "--lr must be a positive number"),
    "train: zero batch": ("train --batch-size 0", "--batch-size must be at least 1"),
    "train: negative weight decay": ("train --weight-decay -1", "--weight-decay must be"),
    "train: zero out-channels": ("train --model gvae --out-channels 0", "--out-channels must be at least 1"),
    "train: zero tau": ("train --objective infonce --tau 0", "--tau must be a positive number"),
    "train: drop-edge 1.5": ("train --objective infonce --drop-edge 1.5,0.2", "in [0, 1)"),
    "train: negative seed": ("train --seed -1", "--seed must be"),
    "train: zero patience": ("train --patience 0", "--patience must be at least 1"),
    "train: zero scale": ("train --dataset synthetic-products --scale 0", "--scale must be in (0, 1]"),
    "train: unknown device": ("train --device tpu", "--device 'tpu' is not a device"),
    "train: name ..": ("train --name .. --out {out}", "run name '..' is not allowed"),
    "train: name ../x": ("train --name ../x --out {out}", "run name '../x' is not allowed"),
    "train: name a/b": ("train --name a/b --out {out}", "run name 'a/b' is not allowed"),
    "train: hidden name": ("train --name .x --out {out}", "run name '.x' is not allowed"),
    "train: name with newline": ("train --name a\nb --out {out}", "is not allowed"),
    "train: out is a file": ("train --out {w}/a-file", "a-file is a file, not a folder of runs"),
    "train: split file missing": ("train --split-file {w}/nope.npz", "nope.npz does not exist"),
    "train: split file garbage": ("train --split-file {w}/split.json", "split.json"),
    "train: csv label 10^6": ("train --dataset csv:{w}/csv-huge-label", "label 1000000"),
    "train: csv negative label": ("train --dataset csv:{w}/csv-negative-label", "labels must be 0 or more"),
    "train: csv edge outside": ("train --dataset csv:{w}/csv-edge-outside", "edges.csv"),
    "train: csv without labels": ("train --dataset csv:{w}/csv-no-label", "has no 'label' column"),
    "train: planted Planetoid pickle": ("train --dataset cora --data-root {w}/planted",
                                        "ind.cora.x is not a Planetoid array file: it asks for io.open"),
    "train: run name taken": ("train --out {w}/runs --name demo", "already exists; pick another --name"),
    # embed
    "embed: run missing": ("embed --run {w}/nope", "nope is not a trained run"),
    "embed: run positional and --run": ("embed {run} --run {run}", "--run: not allowed with argument RUN"),
    "embed: run is a file": ("embed --run {w}/a-file", "a-file is not a trained run"),
    "embed: run is not a run": ("embed --run {w}/empty", "empty is not a trained run"),
    "embed: neither run nor checkpoint": ("embed", "one of the arguments RUN --run --checkpoint is required"),
    "embed: run and checkpoint": ("embed --run {run} --checkpoint {w}/plain.pt", "not allowed with argument"),
    "embed: zero block rows": ("embed --run {run} --block-rows 0", "--block-rows must be at least 1"),
    "embed: run with dataset": ("embed --run {run} --dataset demo", "--dataset apply to --checkpoint"),
    "embed: checkpoint missing": ("embed --checkpoint {w}/nope.pt --dataset demo --model sage", "nope.pt does not exist"),
    "embed: checkpoint garbage": ("embed --checkpoint {w}/garbage.pt --dataset demo --model sage", "garbage.pt is not a PyTorch checkpoint"),
    "embed: planted pickle": ("embed --checkpoint {w}/planted.pt --dataset demo --model sage", "planted.pt holds a pickled Python object"),
    "embed: state dict, no model": ("embed --checkpoint {w}/plain.pt --dataset demo", "declare its model"),
    "embed: model and factory": ("embed --checkpoint {w}/plain.pt --dataset demo --model sage --model-factory a:b",
                                 "give --model or --model-factory, not both"),
    "embed: state dict, no dataset": ("embed --checkpoint {w}/plain.pt --model sage", "give --dataset"),
    "embed: factory not found": ("embed --checkpoint {w}/plain.pt --dataset demo --model-factory nomodule:fn",
                                 "No module named 'nomodule'"),
    "embed: state dict of another model": ("embed --checkpoint {w}/plain.pt --dataset demo --model sage --aggr mean --out {out}",
                                           "plain.pt does not fit the declared model"),
    "embed: name ../x": ("embed --checkpoint {run}/model.pt --name ../x --out {out}", "run name '../x' is not allowed"),
    "embed: split and split file": ("embed --checkpoint {run}/model.pt --split 60/20/20 --split-file {w}/split.json",
                                    "give --split or --split-file, not both"),
    # project
    "project: run missing": ("project --run {w}/nope", "nope: not a run folder"),
    "project: negative seed": ("project --run {run} --seed -1", "--seed must be in [0, 2**32)"),
    "project: zero sample": ("project --run {run} --sample 0", "sample"),
    "project: one neighbour": ("project --run {run} --n-neighbors 1", "--n-neighbors must be between 2 and 200"),
    "project: negative min-dist": ("project --run {run} --min-dist -1", "--min-dist must be between 0 and 1"),
    "project: layer 9": ("project --run {run} --layers 9", "no layer 9; it has layers 0-3"),
    "project: layer x": ("project --run {run} --layers x", "no layer 'x'"),
    "project: zero epochs": ("project --run {run} --n-epochs 0", "epochs"),
    "project: zero pca dims": ("project --run {run} --method pca --pca-dims 0", "--pca-dims must be at least 2"),
    "project: unknown metric": ("project --run {run} --metric manhattan", "invalid choice"),
    # import
    "import: NaN rows": ("import --embeddings {w}/nan.npy --labels {w}/labels.npy --name x --out {out}",
                        "row 3 holds NaN"),
    "import: class names file missing": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy "
                                         "--class-names {w}/nope.txt --name x --out {out}", "nope.txt does not exist"),
    "import: too few class names": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy "
                                    "--class-names {w}/two-names.txt --name x --out {out}", "names 2 classes"),
    "import: embeddings missing": ("import --embeddings {w}/nope.npy --labels {w}/labels.npy --name x --out {out}",
                                   "nope.npy does not exist"),
    "import: rows differ": ("import --embeddings {w}/emb.npy {w}/short.npy --labels {w}/labels.npy --name x "
                            "--out {out}", "short.npy holds (199, 8) embeddings"),
    "import: labels short": ("import --embeddings {w}/emb.npy --labels {w}/labels-short.npy --name x --out {out}",
                             "expected one row per node"),
    "import: float labels": ("import --embeddings {w}/emb.npy --labels {w}/labels-float.npy --name x --out {out}",
                             "class indices"),
    "import: negative labels": ("import --embeddings {w}/emb.npy --labels {w}/labels-negative.npy --name x "
                                "--out {out}", "class indices"),
    "import: label 10^6": ("import --embeddings {w}/emb.npy --labels {w}/labels-huge.npy --name x --out {out}",
                           "label 1000000"),
    "import: 1-D embeddings": ("import --embeddings {w}/flat.npy --labels {w}/labels.npy --name x --out {out}",
                               "flat.npy holds (200,) embeddings"),
    "import: object array": ("import --embeddings {w}/objects.npy --labels {w}/labels.npy --name x --out {out}",
                             "objects.npy is not a readable .npy file"),
    "import: garbage npy": ("import --embeddings {w}/garbage.npy --labels {w}/labels.npy --name x --out {out}",
                            "garbage.npy is not a readable .npy file"),
    "import: edges outside": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy --edges {w}/edges-outside.npy "
                              "--name x --out {out}", "edges-outside.npy: node 207 is not one of the 200 rows"),
    "import: edges 3 rows": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy --edges {w}/edges-3rows.npy "
                             "--name x --out {out}", "edges-3rows.npy: edges must be a (2, E) or (E, 2)"),
    "import: logits short": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy --logits {w}/logits-short.npy "
                             "--name x --out {out}", "logits-short.npy holds float32 (199, 4)"),
    "import: logits wide": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy --logits {w}/logits-wide.npy "
                            "--name x --out {out}", "logits-wide.npy holds float32 (200, 9)"),
    "import: no labels": ("import --embeddings {w}/emb.npy --name x --out {out}", "give --labels"),
    "import: dataset and edges": ("import --embeddings {w}/emb.npy --dataset demo --edges {w}/edges.npy --name x "
                                  "--out {out}", "not both"),
    "import: name ../x": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy --name ../x --out {out}",
                          "run name '../x' is not allowed"),
    "import: name a/b": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy --name a/b --out {out}",
                         "run name 'a/b' is not allowed"),
    "import: name taken": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy --name demo --out {w}/runs",
                           "already exists"),
    "import: out is a file": ("import --embeddings {w}/emb.npy --labels {w}/labels.npy --name x --out {w}/a-file",
                              "a-file is a file, not a folder of runs"),
    # list
    "list: folder missing": ("list --out {w}/nope", "nope is not a folder of runs"),
    "list: a file": ("list --out {w}/a-file", "a-file is not a folder of runs"),
    # compare
    "compare: three runs": ("compare {run} {run} {run}", "compare takes one or two runs, got 3"),
    "compare: run missing": ("compare {w}/nope", "nope: not a run folder"),
    "compare: different graphs": ("compare {run} {w}/runs/other-graph", "are on different graphs"),
    "compare: not a run": ("compare {w}/empty", "empty: not a run folder"),
}


def _main(argv: list[str]) -> tuple[int, str]:
    """``layerscope ARGV`` in this process: its exit status and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as e:         # argparse
            code = e.code
        except Exception as e:          # what a user would see as a traceback
            code, err = "traceback", io.StringIO(f"Traceback: {type(e).__name__}: {e}")
    return code, err.getvalue()


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def _check(world: Path, out: Path, case: str) -> str | None:
    """Run one case; what is wrong with how it failed, or None."""
    line, fragment = CASES[case]
    before = {p: _visible(p) for p in (world / "runs", world)}
    argv = [part.format(w=world, out=out, run=world / "runs" / "demo") for part in line.split(" ")]
    if argv[0] in ("train", "embed", "project", "import"):
        argv.append("--quiet")
    if argv[0] in ("train", "embed", "import") and "--out" not in argv:
        argv += ["--out", str(out)]
    if argv[0] == "train" and "--epochs" not in argv:
        argv += ["--epochs", "1"]
    code, err = _main(argv)
    if os.environ.get("SHOW_ERRORS"):
        print(f"{case}: {err.strip()}")
    if code != 2 or err.count("\n") != 1 or "Traceback" in err or fragment not in err:
        return f"exit {code}, stderr {err!r}"
    if _visible(out) or {p: _visible(p) for p in before} != before:
        return f"left {_visible(out)} in --out, or changed {world}"
    if (world / "marker-dir" / "executed").exists():
        return "ran the planted pickle"
    read_run(world / "runs" / "demo")           # the run a case used is still whole
    return None


def test_every_user_mistake_is_one_line_exit_2_and_leaves_no_run(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failures, tally = {}, {}
    for i, case in enumerate(CASES):
        problem = _check(world, tmp_path / f"runs{i}", case)
        command = case.split(":")[0]
        done, total = tally.get(command, (0, 0))
        tally[command] = (done + (problem is None), total + 1)
        if problem:
            failures[case] = problem
    print("one line, exit 2, nothing left:",
          " · ".join(f"{command} {done}/{total}" for command, (done, total) in tally.items()),
          f"· all {len(CASES) - len(failures)}/{len(CASES)}")
    assert len(CASES) >= 60
    assert not failures, "\n".join(f"{case}: {problem}" for case, problem in failures.items())


def test_as_a_user_runs_it(world, tmp_path):
    """The same contract end to end, in a subprocess: a run name that
    escapes --out, and a NaN embedding."""
    for line, fragment in (CASES["train: name ../x"], CASES["import: NaN rows"]):
        argv = [part.format(w=world, out=tmp_path / "runs", run="") for part in line.split(" ")]
        assert_one_line_error(run_engine(*argv, "--quiet"), fragment)
    assert not (tmp_path / "x").exists() and _visible(tmp_path / "runs") == []
