// A Plotly map inside a Streamlit component iframe. Streamlit's own
// st.plotly_chart takes about 3 s to redraw a 100,000-point WebGL scatter on a
// 2-core machine; Plotly.react here takes under 0.5 s. When the figure holds
// every layer's coordinates (map_figure's `layers`), a row of layer buttons
// (or the arrow keys) moves the points to another layer in about 0.3 s,
// without waiting for the server, and then tells it which layer was chosen.
// The figure is fetched from args.url when args.version changes (see
// __init__.py). The protocol is Streamlit's component messages, spoken
// directly (no build step).
// Presses and render messages interleave (a rerun re-sends the last render
// while the user clicks): the value sent after a press names the layer
// pressed, with an id new for each press; a render repeating the layer the
// server asked for before moves nothing; a render or move that a newer one
// overtook while awaiting its fetch or drawing is not applied.
"use strict";

const map = document.getElementById("map");
const bar = document.getElementById("layers");
const session = Math.random().toString(36).slice(2);   // names this iframe's layer switches
let shown = null;       // version of the figure on screen (or being drawn)
let told = null;        // the layer the server last asked for: a render repeating it moves nothing
let wanted = null;      // the layer the map shows, or is moving to
let renders = 0;        // render messages so far: one still fetching when a newer one came gives way
let moves = 0;          // layer moves so far: only the newest marks its layer when done
let presses = 0;        // layer button presses so far: only the newest is reported
let switched = null;    // {layer, id} of the last press reported
let titleTemplate = null;   // the title, with "{layer}" where the layer's name goes
let nodes = [];         // the selected node ids, last reported
let drawn = null;       // the version last drawn that the server asked to hear of (args.report_drawn)
let density = null;     // args.density: {image, layer}, the image of every node under the points
let view = null;        // {x: [x0, x1], y: [y0, y1], size: [w, h]} after a zoom or pan, when density follows it
let viewTimer = null;
let bound = false;

function send(type, fields) {
  window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, fields), "*");
}

function report() {
  // The layer is the one the user last chose, never whatever a render moved the map to meanwhile.
  const value = { nodes: nodes, layer: switched && switched.layer, switch: switched && switched.id, drawn: drawn,
                  view: view };
  send("streamlit:setComponentValue", { value: value, dataType: "json" });
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
  map.on("plotly_relayout", (event) => {
    // A zoom or pan (not our own image swap) asks the server for the density of the new view, once it settles.
    const axes = Object.keys(event || {}).some((key) => key.startsWith("xaxis") || key.startsWith("yaxis"));
    if (!density || !density.follow || !axes) {
      return;
    }
    clearTimeout(viewTimer);
    viewTimer = setTimeout(() => {
      const full = map._fullLayout;
      view = { x: full.xaxis.range.slice(), y: full.yaxis.range.slice(), size: [full._size.w, full._size.h] };
      report();
    }, 300);
  });
  window.addEventListener("resize", () => Plotly.Plots.resize(map));
  document.addEventListener("keydown", (event) => {
    const buttons = Array.from(bar.children);
    const at = buttons.findIndex((b) => b.dataset.layer === wanted);
    const step = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
    if (step && at >= 0 && buttons[at + step]) buttons[at + step].click();
  });
}

function float32(spec) {
  // plotly's typed-array encoding, {dtype: "f4", bdata: base64} (or "i2" / "i4": int16 / int32 codes)
  const bytes = Uint8Array.from(atob(spec.bdata), (c) => c.charCodeAt(0));
  if (spec.dtype === "i2") return new Int16Array(bytes.buffer);
  return spec.dtype === "i4" ? new Int32Array(bytes.buffer) : new Float32Array(bytes.buffer);
}

function nameHovers(traces) {
  // A trace whose points mix categories (the map coloured by correct / wrong,
  // drawn in one trace so no colour covers the other) carries each point's
  // category, prediction and split as codes, and the names once
  // (error_map.correct_traces): the hover text is spelled out here, in the
  // browser, instead of travelling once per point. Names arrive escaped.
  for (const trace of traces) {
    const hover = trace.meta && trace.meta.hover;
    if (!hover) continue;
    const label = float32(hover.label), prediction = float32(hover.prediction), split = float32(hover.split);
    trace.text = Array.from(label, (c, i) => {
      const p = prediction[i];
      const guess = p < 0 ? "none" : `${hover.names[p]} ${p === c ? "\u2713" : "\u2717"}`;
      const where = split[i] < 0 ? "" : `split: ${hover.splits[split[i]]}<br>`;
      return `category: ${hover.names[c]}<br>prediction: ${guess}<br>${where}`;
    });
  }
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
  // Layer names come from the run folder: shown as written, no plotly tags rendered.
  const name = String(layer || "").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  return titleTemplate === null ? null : titleTemplate.split("{layer}").join(name);
}

function densityImages(layer) {
  // The density image belongs to one layer: none while the map shows another.
  return density && density.layer === layer ? [Object.assign({}, density.image)] : [];
}

async function showDensity(layer) {
  const images = densityImages(layer);
  await Plotly.relayout(map, { images: images });
  map.dataset.density = images.length ? images[0].source : "";     // tests wait on this
}

function mark(layer) {
  map.dataset.layer = layer || "";      // tests and benchmarks wait on this
  for (const button of bar.children) button.setAttribute("aria-pressed", String(button.dataset.layer === layer));
}

async function moveTo(layer) {
  // One update (one redraw) for the points and the title. A move that a newer
  // one overtook while drawing leaves the marking to it.
  const move = ++moves;
  wanted = layer;
  const xy = coordinates(map.data, layer);
  const title = titleOf(layer);
  const layout = title === null ? {} : { "title.text": title };
  layout.images = densityImages(layer);
  if (xy.indices.length) await Plotly.update(map, { x: xy.x, y: xy.y }, layout, xy.indices);
  else await Plotly.relayout(map, layout);
  map.dataset.density = layout.images.length ? layout.images[0].source : "";
  if (move === moves) mark(layer);
}

async function press(layer) {
  if (layer === wanted) return;
  const mine = ++presses;
  await moveTo(layer);
  if (mine !== presses) return;     // a later press is reported instead
  switched = { layer: layer, id: `${session}-${mine}` };
  // Tell the server once the points are painted, so its rerun does not compete with the drawing.
  requestAnimationFrame(() => requestAnimationFrame(report));
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
    button.addEventListener("click", () => press(name));
    return button;
  }));
  if (names.length) bar.insertAdjacentText("afterbegin", "Layer ");
}

async function draw(args, render) {
  // A new figure: fetched, then drawn at the layer the server asked for.
  const response = await fetch(args.url);
  if (!response.ok) throw new Error(`map ${args.url}: HTTP ${response.status}`);
  const figure = await response.json();
  if (render !== renders) return;       // a newer render message draws instead
  figure.layout.height = figure.layout.height || 640;
  nameHovers(figure.data);
  if (titleOf(args.layer) !== null) {
    figure.layout.title = Object.assign({}, figure.layout.title, { text: titleOf(args.layer) });
  }
  if (args.layer) {
    const xy = coordinates(figure.data, args.layer);
    xy.indices.forEach((i, k) => { figure.data[i].x = xy.x[k]; figure.data[i].y = xy.y[k]; });
  }
  offer(args.layers);
  shown = args.version;
  told = wanted = args.layer;
  density = args.density || null;
  figure.layout.images = densityImages(args.layer);
  const move = ++moves;
  await Plotly.react(map, figure.data, figure.layout, args.config);
  map.dataset.density = figure.layout.images.length ? figure.layout.images[0].source : "";
  send("streamlit:setFrameHeight", { height: figure.layout.height + bar.offsetHeight });
  bind();
  if (move === moves) mark(args.layer);
  map.dataset.version = args.version;       // tests and benchmarks wait on this
  if (args.report_drawn) {                  // the server waits for it to lay out the other layers
    drawn = args.version;
    requestAnimationFrame(() => requestAnimationFrame(report));   // once the points are painted
  }
  // Decode the other layers while the user looks (about 0.1 s each at 100,000 points), not on their click.
  setTimeout(() => (args.layers || []).forEach((layer) => coordinates(map.data, layer)), 0);
}

window.addEventListener("message", async (event) => {
  if (!event.data || event.data.type !== "streamlit:render") return;
  const args = event.data.args;
  const render = ++renders;
  titleTemplate = args.title === undefined ? null : args.title;
  if (args.version !== shown) {
    await draw(args, render);
    return;
  }
  const newDensity = JSON.stringify(args.density || null) !== JSON.stringify(density);
  density = args.density || null;
  if (args.layer !== told) {     // the server took a new layer (a re-sent render is not news)
    told = args.layer;
    if (args.layer !== wanted) {
      await moveTo(args.layer);
      return;
    }
  }
  if (newDensity) await showDensity(wanted);
});

send("streamlit:componentReady", { apiVersion: 1 });
