// A Plotly map inside a Streamlit component iframe. Streamlit's own
// st.plotly_chart takes about 3 s to redraw a 100,000-point WebGL scatter on a
// 2-core machine; Plotly.react here takes under 0.5 s. When the figure holds
// every layer's coordinates (map_figure's `layers`), a row of layer buttons
// (or the arrow keys) moves the points to another layer in about 0.3 s,
// without waiting for the server, and then tells it which layer is shown.
// The figure is fetched from args.url when args.version changes (see
// __init__.py). The protocol is Streamlit's component messages, spoken
// directly (no build step).
"use strict";

const map = document.getElementById("map");
const bar = document.getElementById("layers");
let shown = null;       // version of the figure on screen
let shownLayer = null;  // the layer whose coordinates it shows
let titleTemplate = null;   // the title, with "{layer}" where the layer's name goes
let latest = null;      // the newest render message; an older one still fetching gives way
let nodes = [];         // the selected node ids, last reported
let bound = false;

function send(type, fields) {
  window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, fields), "*");
}

function report() {
  send("streamlit:setComponentValue", { value: { nodes: nodes, layer: shownLayer }, dataType: "json" });
}

function selectedNodes(event) {
  // customdata[0] is the node id on every map trace; marks and overlays have no selection.
  const chosen = new Set();
  for (const point of (event && event.points) || []) {
    const custom = point.customdata;
    if (custom !== undefined && custom !== null && typeof custom[0] === "number") chosen.add(custom[0]);
  }
  return Array.from(chosen).sort((a, b) => a - b);
}

function bind() {
  if (bound) return;
  bound = true;
  const select = (event) => { nodes = selectedNodes(event); report(); };
  map.on("plotly_selected", select);
  map.on("plotly_click", select);
  map.on("plotly_deselect", () => { nodes = []; report(); });
  window.addEventListener("resize", () => Plotly.Plots.resize(map));
  document.addEventListener("keydown", (event) => {
    const buttons = Array.from(bar.children);
    const at = buttons.findIndex((b) => b.dataset.layer === shownLayer);
    const step = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
    if (step && at >= 0 && buttons[at + step]) buttons[at + step].click();
  });
}

function float32(spec) {
  // plotly's typed-array encoding, {dtype: "f4", bdata: base64}
  const bytes = Uint8Array.from(atob(spec.bdata), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

function coordinates(traces, layer) {
  // The x and y arrays of `layer` for every trace that carries it; decoded once.
  const x = [], y = [], indices = [];
  traces.forEach((trace, i) => {
    const layers = trace.meta && trace.meta.layers;
    if (!layers || !layers[layer]) return;
    const xy = layers[layer];
    if (!(xy.x instanceof Float32Array)) {
      xy.x = float32(xy.x);
      xy.y = float32(xy.y);
    }
    x.push(xy.x);
    y.push(xy.y);
    indices.push(i);
  });
  return { x: x, y: y, indices: indices };
}

function titleOf(layer) {
  return titleTemplate === null ? null : titleTemplate.split("{layer}").join(layer || "");
}

function mark(layer) {
  shownLayer = layer;
  map.dataset.layer = layer || "";      // tests and benchmarks wait on this
  for (const button of bar.children) button.setAttribute("aria-pressed", String(button.dataset.layer === layer));
}

async function moveTo(layer) {
  // One update (one redraw) for the points and the title.
  const xy = coordinates(map.data, layer);
  const title = titleOf(layer);
  const layout = title === null ? {} : { "title.text": title };
  if (xy.indices.length) await Plotly.update(map, { x: xy.x, y: xy.y }, layout, xy.indices);
  else await Plotly.relayout(map, layout);
  mark(layer);
}

function offer(layers) {
  // A button per layer the figure can move to; rebuilt only when they change.
  const names = layers || [];
  if (Array.from(bar.children).map((b) => b.dataset.layer).join("\n") === names.join("\n")) return;
  bar.replaceChildren(...names.map((name) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = name;
    button.dataset.layer = name;
    button.addEventListener("click", async () => {
      if (name === shownLayer) return;
      await moveTo(name);
      // Tell the server once the points are painted, so its rerun does not compete with the drawing.
      requestAnimationFrame(() => requestAnimationFrame(report));
    });
    return button;
  }));
  if (names.length) bar.insertAdjacentText("afterbegin", "Layer ");
}

window.addEventListener("message", async (event) => {
  if (!event.data || event.data.type !== "streamlit:render") return;
  const args = event.data.args;
  latest = args;
  titleTemplate = args.title === undefined ? null : args.title;
  if (args.version !== shown) {
    const response = await fetch(args.url);
    if (!response.ok) throw new Error(`map ${args.url}: HTTP ${response.status}`);
    const figure = await response.json();
    if (latest !== args) return;
    figure.layout.height = figure.layout.height || 640;
    if (titleOf(args.layer) !== null) {
      figure.layout.title = Object.assign({}, figure.layout.title, { text: titleOf(args.layer) });
    }
    if (args.layer) {
      const xy = coordinates(figure.data, args.layer);
      xy.indices.forEach((i, k) => { figure.data[i].x = xy.x[k]; figure.data[i].y = xy.y[k]; });
    }
    offer(args.layers);
    await Plotly.react(map, figure.data, figure.layout, args.config);
    send("streamlit:setFrameHeight", { height: figure.layout.height + bar.offsetHeight });
    bind();
    mark(args.layer);
    // Decode the other layers while the user looks (about 0.1 s each at 100,000 points), not on their click.
    setTimeout(() => (args.layers || []).forEach((layer) => coordinates(map.data, layer)), 0);
  } else if (args.layer !== shownLayer) {
    await moveTo(args.layer);
  }
  shown = args.version;
  map.dataset.version = args.version;       // tests and benchmarks wait on this
});

send("streamlit:componentReady", { apiVersion: 1 });
