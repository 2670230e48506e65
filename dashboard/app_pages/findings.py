"""Findings: what the run's layers say, in sentences with their numbers
(``engine.findings``): the category pairs that sit closest at each layer, what
separates or merges from one layer to the next, where each category becomes
separable, and what the model confuses on the test nodes."""

import streamlit as st

from layerscope.dashboard.readers import findings, open_run
from layerscope.dashboard.text import escape_markdown
from layerscope.engine.errors import UserError
from layerscope.engine.findings import confused_table, method_note

run = open_run(st.session_state.run)
try:
    found = findings(run)
except UserError as e:      # e.g. a layer with NaN rows: say which, keep the rest of the app
    st.error(escape_markdown(e), icon=":material/error:")
    st.stop()


def sentences(*kinds: str) -> None:
    """The findings of ``kinds`` as a bulleted list, in the engine's order."""
    lines = [f"- {escape_markdown(f.text)}" for f in found if f.kind in kinds]
    if lines:
        st.markdown("\n".join(lines))


st.markdown(f"What the layers of **{escape_markdown(run.name)}** say about its categories, in words.")
sample = next((f.numbers["sample"] for f in found if "sample" in f.numbers), 0)
if sample:
    st.subheader("Closest categories, layer by layer")
    sentences("closest")
    st.subheader("What changes from one layer to the next")
    sentences("separates", "merges", "steady")
    st.subheader("When categories become separable")
    sentences("separable", "never_separable")
    st.caption(escape_markdown(method_note(sample)))
else:
    st.info("This run has no layer embeddings, or fewer than two categories: only its predictions are read.")

st.subheader("Most confused (test nodes)")
table = confused_table(found)
if table.empty:
    st.info("No test node is predicted as another category (or the run has no predictions).")
else:
    st.markdown(escape_markdown(next(f.text for f in found if f.kind == "confused")))
    table["share"] = table["share"] * 100
    st.dataframe(table, hide_index=True, key="findings_confused", column_config={
        "category": st.column_config.TextColumn("category"),
        "prediction": st.column_config.TextColumn("predicted as"),
        "nodes": st.column_config.NumberColumn("nodes", format="%d"),
        "of": st.column_config.NumberColumn("of the category's test nodes", format="%d"),
        "share": st.column_config.NumberColumn("row %", format="%.1f%%")})
    st.caption("Row %: the share of the category's test nodes predicted as the other category (the confusion "
               "matrix on Metrics, row-normalised).")
