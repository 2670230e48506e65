"""Metrics: which layer separates categories best, how alike layers and runs
are, how training went, and what the model confuses."""

import streamlit as st

from layerscope.dashboard.charts import (cka_heatmap, confused_pairs_text, confusion_heatmap, kept_epoch,
                                         metrics_by_layer, training_curves)
from layerscope.dashboard.figures import OFFLINE_CONFIG
from layerscope.dashboard.panels import projection_settings
from layerscope.dashboard.readers import history, list_runs, node_table, open_run, run_cka
from layerscope.dashboard.text import escape_markdown
from layerscope.dashboard.views import NOT_PROJECTED, layouts_caption, quality_display, quality_table
from layerscope.engine.summary import METRIC_LABELS, confusion, same_graph
from layerscope.engine.uncertainty import CONFIDENCE, INTERVAL_METRICS, verdict

run = open_run(st.session_state.run)
cfg = projection_settings()
names, _ = list_runs()
peers = [name for name in names if same_graph(open_run(name), run)]
chosen = st.multiselect("Runs", peers, default=[run.name], key="metrics_runs",
                        help="Runs on the same graph as the run in the sidebar")
runs = [open_run(name) for name in chosen] or [run]

st.subheader("Quality by layer")
# Trustworthiness is the layouts' own: read from the runs' projection caches, never computed here.
table = quality_table(runs, cfg)
for each in runs:
    found = verdict(table[table["run"] == each.name])
    if found:
        st.markdown(f"**{escape_markdown(each.name)}**: {escape_markdown(found.sentence())}")
# Every run has its scores (readers.open_run fills in missing ones): a missing value is a layout not made yet.
st.dataframe(quality_display(table), hide_index=True, key="metrics_table", placeholder=NOT_PROJECTED,
             column_config={**{key: st.column_config.NumberColumn(label.long, format="%.3f")
                               for key, label in METRIC_LABELS.items()},
                            **{f"{key}_ci": st.column_config.TextColumn(f"{CONFIDENCE:.0%} interval")
                               for key in INTERVAL_METRICS}})
unprojected = sorted(set(table.loc[table["trustworthiness"].isna(), "run"]))
if unprojected:
    st.caption(f"Trustworthiness: {NOT_PROJECTED} for {escape_markdown(', '.join(unprojected))} with these "
               "projection settings (the Explore page lays the layers out).")
metric = st.selectbox("Chart", list(METRIC_LABELS), format_func=lambda key: METRIC_LABELS[key].long,
                      key="metrics_chart")
st.plotly_chart(metrics_by_layer(table, metric), key="metrics_by_layer", config=OFFLINE_CONFIG)
st.caption(f"kNN accuracy: test nodes classified by their 10 nearest training nodes (cosine). Silhouette: "
           "how far categories sit apart (cosine, −1 to 1). Probe: logistic regression on the layer. Intervals: "
           f"{CONFIDENCE:.0%} Wilson intervals on the test nodes scored; layers whose intervals overlap are within "
           "noise of each other. Trustworthiness: how well the 2-D map keeps each node's 15 nearest neighbours.")
st.caption(f"Layouts: {layouts_caption(run, cfg)}")

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
    matrix, num_nodes = run_cka(run, open_run(other))
    right.plotly_chart(cka_heatmap(matrix, run.layer_names, open_run(other).layer_names,
                                   f"{run.name} (rows) vs {other} ({num_nodes:,} nodes)"), key="cka_runs",
                       config=OFFLINE_CONFIG)
else:
    right.info("Train another model on this graph to compare runs layer by layer.")

trained = [(each, history(each)) for each in runs]
trained = [(each, epochs) for each, epochs in trained if epochs is not None and len(epochs)]
if trained:
    st.subheader("Training")
for index, (each, epochs) in enumerate(trained):
    st.plotly_chart(training_curves(epochs, kept_epoch(each.record), f"{each.name}: training"),
                    key=f"training_curves_{index}", config=OFFLINE_CONFIG)
if trained:
    st.caption("Loss above; validation (and training) scores below, 0 to 1. The dashed line marks the epoch "
               "whose weights the run kept: its best validation score.")

matrices = [(each, confusion(node_table(each), each.record["dataset"]["class_names"])) for each in runs]
matrices = [(each, counts) for each, counts in matrices if not counts.empty and counts.to_numpy().sum()]
if matrices:
    st.subheader("Confusion by category")
for index, (each, counts) in enumerate(matrices):
    metrics = each.record.get("metrics", {})
    predicted_by = (each.record.get("nodes") or {}).get("predicted_by", "model")
    probe = f" ({escape_markdown(predicted_by)})" \
        if metrics.get("eval") == "linear-probe" or predicted_by != "model" else ""
    tested = int(counts.to_numpy().sum())
    st.caption(f"**{escape_markdown(each.name)}**: test accuracy{probe} {metrics.get('test_acc', float('nan')):.3f} · "
               f"macro F1 {metrics.get('test_macro_f1', float('nan')):.3f} on {tested:,} test nodes")
    st.plotly_chart(confusion_heatmap(counts, f"{each.name}: confusion on {tested:,} test nodes, rows normalised"),
                    key=f"confusion_{index}", config=OFFLINE_CONFIG)
    pairs = confused_pairs_text(counts)
    if pairs:
        st.markdown(f"Most confused (true category → predicted), of that category's test nodes:\n\n{pairs}")
