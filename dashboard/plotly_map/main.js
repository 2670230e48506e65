// A Plotly map inside a Streamlit component iframe. Streamlit's own
// st.plotly_chart takes about 3 s to redraw a 100,000-point WebGL scatter on a
// 2-core machine; Plotly.react here takes under 0.5 s. The protocol is
// Streamlit's component messages, spoken directly (no build step).
"use strict";

const map = document.getElementById("map");
let shown = null;       // version of the figure on screen
let bound = false;

function send(type, fields) {
  window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, fields), "*");
}

function selectedNodes(event) {
  // customdata[0] is the node id on every map trace; marks and overlays have no selection.
  const nodes = new Set();
  for (const point of (event && event.points) || []) {
    const custom = point.customdata;
    if (custom !== undefined && custom !== null && typeof custom[0] === "number") nodes.add(custom[0]);
  }
  return Array.from(nodes).sort((a, b) => a - b);
}

function bind() {
  if (bound) return;
  bound = true;
  const report = (nodes) => send("streamlit:setComponentValue", { value: { nodes: nodes }, dataType: "json" });
  map.on("plotly_selected", (event) => report(selectedNodes(event)));
  map.on("plotly_click", (event) => report(selectedNodes(event)));
  map.on("plotly_deselect", () => report([]));
  window.addEventListener("resize", () => Plotly.Plots.resize(map));
}

window.addEventListener("message", async (event) => {
  if (!event.data || event.data.type !== "streamlit:render") return;
  const args = event.data.args;
  if (args.version === shown) return;
  shown = args.version;
  const figure = JSON.parse(args.spec);
  figure.layout.height = args.height;
  await Plotly.react(map, figure.data, figure.layout, args.config);
  map.dataset.version = args.version;       // tests and benchmarks wait on this
  send("streamlit:setFrameHeight", { height: args.height });
  bind();
});

send("streamlit:componentReady", { apiVersion: 1 });
