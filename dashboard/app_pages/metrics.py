"""Metrics: which layer separates categories best, how alike layers and runs
are, how training went, and what the model confuses."""

import pandas as pd
import streamlit as st

from layerscope.dashboard import state
from layerscope.dashboard.charts import METRIC_NAMES, cka_heatmap, confusion_heatmap, metrics_by_layer, training_curves
from layerscope.dashboard.figures import OFFLINE_CONFIG
from layerscope.dashboard.text import escape_markdown
from layerscope.engine.summary import best_layer, confusion, cross_run_cka, layer_metrics, same_graph


@st.cache_data(show_spinner="Computing CKA between the runs…")
def run_cka(name_a: str, name_b: str, stamp: tuple) -> tuple[list[list[float]], int]:
    """``stamp`` (the runs' creation times) makes a rewritten run miss the cache."""
    matrix, num_nodes = cross_run_cka(state.open_run(name_a), state.open_run(name_b))
    return matrix.tolist(), num_nodes


run = state.open_run(st.session_state.run)
cfg = state.projection_settings()
names, _ = state.list_runs()
peers = [name for name in names if same_graph(state.open_run(name), run)]
chosen = st.multiselect("Runs", peers, default=[run.name], key="metrics_runs",
                        help="Runs on the same graph as the run in the sidebar")
runs = [state.open_run(name) for name in chosen] or [run]

st.subheader("Quality by layer")
tables = []
for each in runs:
    trust = {name: layout.info.get("trustworthiness") for name, layout in state.layouts(each, cfg).items()}
    tables.append(layer_metrics(each, trust))
table = pd.concat(tables, ignore_index=True)
for each, frame in zip(runs, tables):
    best = best_layer(frame)
    if best:
        st.markdown(f"**{escape_markdown(each.name)}**: {escape_markdown(best)} separates categories best "
                    f"(kNN accuracy {frame.set_index('layer').loc[best, 'knn_acc']:.3f}).")
st.dataframe(table.drop(columns="position"), hide_index=True, key="metrics_table",
             column_config={key: st.column_config.NumberColumn(label, format="%.3f")
                            for key, label in METRIC_NAMES.items()})
metric = st.selectbox("Chart", list(METRIC_NAMES), format_func=METRIC_NAMES.get, key="metrics_chart")
st.plotly_chart(metrics_by_layer(table, metric), key="metrics_by_layer", config=OFFLINE_CONFIG)
st.caption("kNN accuracy: test nodes classified by their 10 nearest training nodes (cosine). Silhouette: "
           "how far categories sit apart (cosine, −1 to 1). Probe: logistic regression on the layer. "
           "Trustworthiness: how well the 2-D map keeps each node's 15 nearest neighbours "
           f"({state.projection_caption(cfg)}).")

st.subheader("Similarity of layers (linear CKA)")
left, right = st.columns(2)
record_cka = run.record.get("layer_cka")
if record_cka:
    left.plotly_chart(cka_heatmap(record_cka["matrix"], record_cka["layers"], record_cka["layers"],
                                  f"{run.name}: layer vs layer ({record_cka['nodes']:,} nodes)"), key="cka_layers",
                      config=OFFLINE_CONFIG)
others = [name for name in peers if name != run.name]
if others:
    other = right.selectbox("Against run", others, key="metrics_cka_run")
    stamp = (run.record.get("created"), state.open_run(other).record.get("created"))
    matrix, num_nodes = run_cka(run.name, other, stamp)
    right.plotly_chart(cka_heatmap(matrix, [e["name"] for e in run.layers],
                                   [e["name"] for e in state.open_run(other).layers],
                                   f"{run.name} (rows) vs {other} ({num_nodes:,} nodes)"), key="cka_runs",
                       config=OFFLINE_CONFIG)
else:
    right.info("Train another model on this graph to compare runs layer by layer.")

history = state.history(run)
if history is not None and len(history):
    st.subheader("Training")
    st.plotly_chart(training_curves(history), key="training_curves", config=OFFLINE_CONFIG)
counts = confusion(state.node_table(run), run.record["dataset"]["class_names"])
if not counts.empty and counts.to_numpy().sum():
    st.subheader("Confusion by category")
    metrics = run.record.get("metrics", {})
    predicted_by = (run.record.get("nodes") or {}).get("predicted_by", "model")
    probe = f" ({escape_markdown(predicted_by)})" \
        if metrics.get("eval") == "linear-probe" or predicted_by != "model" else ""
    st.caption(f"test accuracy{probe} {metrics.get('test_acc', float('nan')):.3f} · "
               f"macro F1 {metrics.get('test_macro_f1', float('nan')):.3f} on {counts.to_numpy().sum():,} test nodes")
    st.plotly_chart(confusion_heatmap(counts), key="confusion", config=OFFLINE_CONFIG)
