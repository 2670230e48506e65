"""layerscope dashboard: ``streamlit run dashboard/app.py``.

Reads run folders from ``checkpoints/`` (or ``$LAYERSCOPE_RUNS``). With no
complete run there, it trains the built-in demo run first.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNS = Path(os.environ.get("LAYERSCOPE_RUNS", ROOT / "checkpoints"))


@st.cache_data
def read_run(folder: str, mtime: float) -> tuple[dict, pd.DataFrame]:
    run_dir = Path(folder)
    return json.loads((run_dir / "run.json").read_text()), pd.read_csv(run_dir / "history.csv")


def complete_runs() -> list[Path]:
    return sorted(p.parent for p in RUNS.glob("*/run.json"))


def build_demo_run() -> None:
    from engine.train import TrainConfig, train_run

    with st.status("No runs yet: training the demo run (about a minute)…", expanded=True):
        train_run(TrainConfig(dataset="demo", model="sage"), RUNS, "demo-sage", progress=False)


st.set_page_config(page_title="layerscope", layout="wide")
st.title("layerscope")
if not complete_runs():
    build_demo_run()

runs = complete_runs()
name = st.sidebar.selectbox("Run", [p.name for p in runs])
run, history = read_run(str(RUNS / name), (RUNS / name / "run.json").stat().st_mtime)
data, model = run["dataset"], run["model"]
st.caption(f"{data['name']} · {data['num_nodes']:,} nodes · {data['num_classes']} categories · "
           f"{model['model']} ({model['objective']}), {model['num_layers']} layers · {run['device']}")
metrics = {k: v for k, v in run["metrics"].items() if isinstance(v, float)}
for col, (key, value) in zip(st.columns(len(metrics)), metrics.items()):
    col.metric(key, f"{value:.3f}")
st.subheader("Training")
st.line_chart(history.set_index("epoch")[[c for c in history.columns if c.endswith(("_acc", "_auc"))]])
st.dataframe(pd.DataFrame({"run": [p.name for p in runs]}), hide_index=True)
