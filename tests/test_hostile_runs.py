"""A run folder is untrusted input: each hostile run.json, node table or
layer file makes that one run broken, named in one warning line, while the
good run beside it keeps working in ``engine list`` and on every page."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from layerscope.engine.errors import UserError
from layerscope.engine.project import ProjectionConfig, project_layers
from layerscope.engine.runs import read_run
from layerscope.engine.config import TrainConfig
from layerscope.engine.pipeline import train_run
from tests.conftest import ROOT, run_engine


def _edit(key_path: list, value):
    """A change of one field of run.json."""
    def apply(run: Path) -> None:
        record = json.loads((run / "run.json").read_text())
        target = record
        for key in key_path[:-1]:
            target = target[key]
        target[key_path[-1]] = value
        (run / "run.json").write_text(json.dumps(record))
    return apply


def _write(name: str, text: str):
    def apply(run: Path) -> None:
        (run / name).write_text(text)
    return apply


def _layer_becomes(kind: str):
    def apply(run: Path) -> None:
        file = run / "layers" / "hidden1.npy"
        file.unlink()
        if kind == "fifo":
            os.mkfifo(file)
        else:
            file.mkdir()
    return apply


def _layer_bytes(cut: int | None = None, text: bytes | None = None):
    """The hidden1 layer file cut short, or replaced by bytes that are no .npy file."""
    def apply(run: Path) -> None:
        file = run / "layers" / "hidden1.npy"
        file.write_bytes(text if text is not None else file.read_bytes()[:cut])
    return apply


def _outside_file(run: Path) -> None:
    (run.parent.parent / "outside").mkdir(exist_ok=True)
    shutil.copy(run / "layers" / "hidden1.npy", run.parent.parent / "outside" / "secret.npy")
    _edit(["layers", 1, "file"], "layers/../../../outside/secret.npy")(run)


HOSTILE = {
    # folder: (what is done to a copy of the good run, a fragment of its warning)
    "layer-file-number": (_edit(["layers", 1, "file"], 5), "layer file is int, not a file name"),
    "schema-1e999": (_write("run.json", '{"schema_version": 1e999}'), "schema_version"),
    "deep-nesting": (_write("run.json", '{"schema_version": 2, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                     "malformed (RecursionError"),
    "only-a-version": (_write("run.json", '{"schema_version": 1}'), "dataset is NoneType, not an object"),
    "a-json-list": (_write("run.json", "[1, 2]"), "holds a JSON list, not an object"),
    "huge-node-count": (_edit(["dataset", "num_nodes"], 10**30), "dataset.num_nodes"),
    "dataset-is-text": (_edit(["dataset"], "amazon"), "dataset is str, not an object"),
    "class-names-number": (_edit(["dataset", "class_names"], 5), "class_names is not a list"),
    "absolute-path": (_edit(["layers", 1, "file"], "/etc/passwd"), "is not a file name inside the run"),
    "dotdot-path": (_outside_file, "is not a file name inside the run"),
    "layer-is-a-folder": (_layer_becomes("folder"), "layers/hidden1.npy is not a regular file"),
    "layer-is-a-fifo": (_layer_becomes("fifo"), "layers/hidden1.npy is not a regular file"),
    "garbage-parquet": (_write("nodes.parquet", "not parquet at all"), "nodes.parquet is not a readable Parquet"),
    "wrong-dtype": (_edit(["layers", 1, "dtype"], "object"), "dtype 'object' is not one of"),
    "graph-escapes": (_edit(["graph", "indptr"], "../graph/indptr.npy"), "is not a file name inside the run"),
    # the warning says what is wrong, never np.load's "if you trust the file ... allow_pickle" (runs.npy_shape)
    "layer-truncated": (_layer_bytes(cut=-100), "layers/hidden1.npy is malformed (truncated"),
    "layer-not-npy": (_layer_bytes(text=b"\x80\x04not an array" * 10), "is malformed (the magic string is not correct"),
    "layer-wrong-shape": (lambda run: np.save(run / "layers" / "hidden1.npy", np.zeros((10, 3), np.float32)),
                          "layers/hidden1.npy holds float32 (10, 3), run.json says float32"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "runs"
    train_run(TrainConfig(dataset="demo", model="sage", epochs=20, hidden_channels=16), root, "good", progress=False,
              metrics="fast")
    good = read_run(root / "good")
    project_layers(good, good.layer_names, ProjectionConfig(n_epochs=30))
    for name, (apply, _) in HOSTILE.items():
        shutil.copytree(root / "good", root / name)
        apply(root / name)
    return root


def test_engine_list_names_each_hostile_run_once_and_lists_the_good_one(runs):
    listed = run_engine("list", "--out", runs, timeout=120)       # a FIFO read would hang here
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("\n") == 1 and listed.stdout.startswith("good  demo  sage")
    warnings = listed.stderr.splitlines()
    assert len(warnings) == len(HOSTILE), listed.stderr
    for name, (_, fragment) in HOSTILE.items():
        line = next(w for w in warnings if f"/{name}" in w)
        assert line.startswith("warning: ") and fragment in line, (name, line)
    print(f"{len(HOSTILE)} hostile runs, each one warning line; the good run listed")


@pytest.mark.parametrize("name", list(HOSTILE))
def test_opening_a_hostile_run_is_a_user_error(runs, name):
    with pytest.raises(UserError, match=__import__("re").escape(HOSTILE[name][1])):
        read_run(runs / name)


@pytest.mark.parametrize("page", ["explore", "compare", "metrics", "neighbours", "export"])
def test_every_page_opens_on_the_good_run_beside_the_hostile_ones(runs, monkeypatch, page):
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(runs))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.session_state["projection"] = ProjectionConfig(n_epochs=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page != "explore":
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="run").options == ["good"]
    assert len(at.sidebar.warning) == len(HOSTILE)


class _Planted:
    """Creates the marker file when unpickled: what a hostile Planetoid raw file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_run_pointing_at_planted_pickles_never_executes_them(runs, tmp_path, monkeypatch):
    """A run whose run.json names a data root holding pickled Planetoid files
    that create a marker if unpickled: every page, engine list, embed --run and
    project --run leave the marker uncreated."""
    import pickle

    marker = tmp_path / "executed"
    planted = tmp_path / "planted" / "Cora" / "raw"
    planted.mkdir(parents=True)
    for part in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"):
        (planted / f"ind.cora.{part}").write_bytes(pickle.dumps(_Planted(marker)))
    root = tmp_path / "runs"
    shutil.copytree(runs / "good", root / "cora-run")
    record = json.loads((root / "cora-run" / "run.json").read_text())
    record["config"].update(dataset="cora", data_root=str(tmp_path / "planted"))
    record["dataset"]["name"] = "cora"
    (root / "cora-run" / "run.json").write_text(json.dumps(record))

    monkeypatch.setenv("LAYERSCOPE_RUNS", str(root))
    monkeypatch.delenv("LAYERSCOPE_DATA", raising=False)
    for page in ("explore", "compare", "metrics", "neighbours", "export"):
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
        at.session_state["projection"] = ProjectionConfig(n_epochs=30)
        at.run()
        if page != "explore":
            at.switch_page(f"app_pages/{page}.py")
            at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
    assert run_engine("list", "--out", root).returncode == 0
    embedded = run_engine("embed", "--run", root / "cora-run", cwd=tmp_path)     # reads ./data, not the planted root
    assert embedded.returncode == 2 and "ind.cora" in embedded.stderr, embedded.stderr
    assert run_engine("project", "--run", root / "cora-run", "--method", "pca").returncode == 0
    assert not marker.exists()
