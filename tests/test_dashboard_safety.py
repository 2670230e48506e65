"""Opening the dashboard is safe whatever a run folder or a link holds: names
from a run folder show as written (no image a browser would fetch), a URL
never starts a projection, and the map component's folder is this server's
own. Under Streamlit's AppTest and in subprocesses; the browser checks of the
same are in test_browser.py."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from layerscope.dashboard.links import MAX_POINTS, cached_layouts, link_points
from layerscope.dashboard.plotly_map import map_file
from layerscope.dashboard.text import escape_markdown, escape_plotly
from layerscope.engine.project import PROJECTIONS_DIR, ProjectionConfig, project_layers
from layerscope.engine.runs import read_run
from tests.browser import DEMO_RUN, demo_runs, name_a_layer_file, rename_everything
from tests.conftest import ROOT, report_map_drawn

APP = str(ROOT / "dashboard" / "app.py")
PAGES = ("explore", "compare", "metrics", "findings", "neighbours", "export")
IMAGE = "![x](http://127.0.0.1:9/pixel.png)"
TAG = "<img src=http://127.0.0.1:9/tag.png>"
HOSTILE_RUN = "run ![x](pixel.png) <img src=pixel.png>"     # a folder name: no slashes
HOSTILE_CATEGORIES = {"Books": f"Books {IMAGE}", "Electronics": f"Electronics {TAG}"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The demo run, a copy of it whose run name, dataset name and categories
    carry an image link and an image tag, and a broken run whose warning
    quotes a layer file name carrying both."""
    root = demo_runs(tmp_path_factory)
    shutil.copytree(root / DEMO_RUN, root / HOSTILE_RUN)
    rename_everything(root / HOSTILE_RUN, f"demo {IMAGE} {TAG}", HOSTILE_CATEGORIES)
    shutil.copytree(root / DEMO_RUN, root / "broken", ignore=shutil.ignore_patterns(PROJECTIONS_DIR))
    name_a_layer_file(root / "broken", f"layers/{IMAGE}{TAG}.npy")
    return root


def _app(runs: Path, monkeypatch, **query: str) -> AppTest:
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(runs))
    at = AppTest.from_file(APP, default_timeout=300)
    for key, value in query.items():
        at.query_params[key] = value
    return at


def _open(at: AppTest, page: str) -> AppTest:
    if page != "explore":
        at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return at


def _markdown(at: AppTest) -> list[str]:
    """Every string the page hands Streamlit's Markdown renderer: the bodies
    of markdown, captions, alerts and headings, and the labels and help of
    widgets and metrics."""
    found = []

    def walk(node) -> None:
        if getattr(node, "type", None) == "html":      # st.html is HTML (names go through html.escape), not Markdown
            return
        proto = getattr(node, "proto", None)
        for field in ("body", "label", "help"):
            value = getattr(proto, field, None)
            if isinstance(value, str) and value:
                found.append(value)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    return found


def _figure_texts(at: AppTest) -> str:
    """Every figure on the page (maps and charts) as JSON text."""
    maps = [map_file(json.loads(c.proto.json_args)["version"]).read_text() for c in at.get("component_instance")]
    return "\n".join(maps + [chart.proto.spec for chart in at.get("plotly_chart")])


def _projections(runs: Path) -> set[str]:
    return {p.name for p in (runs / DEMO_RUN / PROJECTIONS_DIR).iterdir()}


# --- the pure functions --------------------------------------------------------------------------

def test_escape_markdown_leaves_nothing_markdown_could_render():
    cases = {
        IMAGE: r"\!\[x\](http\://127.0.0.1\:9/pixel.png)",
        TAG: "&lt;img src=http\\://127.0.0.1\\:9/tag.png&gt;",
        "photo-sage (v2), hidden1.npy": "photo-sage (v2), hidden1.npy",     # plain text stays readable
        "- item": r"\- item", "12. item": r"12\. item", "# heading": r"\# heading",
        ":smile: :red[x] :material/home:": r"\:smile\: \:red\[x\] \:material/home\:",
        "$x^2$ *a* _b_ `c` ~d~ a|b": r"\$x^2\$ \*a\* \_b\_ \`c\` \~d\~ a\|b",
        "a & b &lt; c\\d": r"a &amp; b &amp;lt; c\\d",
        "two\nlines\r\tand tab": "two lines  and tab",
    }
    for text, expected in cases.items():
        assert escape_markdown(text) == expected, text
    assert escape_plotly("<b>x</b> %{y}") == "&lt;b&gt;x&lt;/b&gt; %\u200b{y}"


def test_link_points_takes_ascii_digits_clamped_to_the_graph():
    assert link_points("2000", 5_000) == 2_000
    assert link_points("500", 5_000) == 1_000
    assert link_points("99999999999999999999999999", 5_000) == 5_000
    assert link_points("9" * 5000, 10**9) == MAX_POINTS
    assert link_points("2000000", 3_000_000) == MAX_POINTS
    for text in ("²", "٣٠٠٠", "-5", "1e5", " 2000", "2,000", "", None):
        assert link_points(text, 5_000) is None, text


def test_cached_layouts_finds_what_project_layers_made_and_nothing_else(runs, tmp_path):
    run_dir = shutil.copytree(runs / DEMO_RUN, tmp_path / DEMO_RUN)
    run = read_run(run_dir)
    for cfg, new in ((ProjectionConfig(), False), (ProjectionConfig(method="pca", sample=2_000), True),
                     (ProjectionConfig(method="pca", sample=2_000, align="none"), False)):
        assert (cached_layouts(run, run.layer_names, cfg) is None) == new, cfg
        made = project_layers(run, run.layer_names, cfg)
        before = {p.name: p.stat().st_mtime_ns for p in (run_dir / PROJECTIONS_DIR).iterdir()}
        found = cached_layouts(run, run.layer_names, cfg)
        assert found is not None, cfg
        assert [f.info["key"] for f in found] == [m.info["key"] for m in made]
        assert all(np.array_equal(f.xy, m.xy) for f, m in zip(found, made))
        assert {p.name: p.stat().st_mtime_ns for p in (run_dir / PROJECTIONS_DIR).iterdir()} == before
    assert cached_layouts(run, run.layer_names, ProjectionConfig(method="pca", sample=3_000)) is None
    assert cached_layouts(run, run.layer_names, ProjectionConfig(sample=10**9)) is None      # cannot work: no error


# --- links ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("points", ["99999999999999999999999999", "500", "²", "2000"])
def test_a_links_points_never_crash_a_page_nor_start_a_projection(runs, monkeypatch, points):
    before = _projections(runs)
    for page in PAGES:
        at = _open(_app(runs, monkeypatch, points=points, run=DEMO_RUN), page)
        notes = [i.value for i in at.info if "This link asks" in i.value]
        assert bool(notes) == (points in ("500", "2000")), (page, notes)
    assert _projections(runs) == before
    print(f"?points={points}: {len(PAGES)} pages open, no projection written"
          + (f"; note: {notes[0]}" if notes else ""))


def test_a_links_layout_is_computed_by_its_button_then_found_by_the_next_link(runs, monkeypatch):
    before = _projections(runs)
    at = _open(_app(runs, monkeypatch, points="2000"), "explore")
    assert "this page uses 5,000" in at.info[0].value and _projections(runs) == before
    at.button(key="compute_asked_layout").click().run()
    assert not at.exception and not [i for i in at.info if "This link asks" in i.value]
    assert len(_projections(runs) - before) == 2        # the shown layer's layout first, drawn before the others
    report_map_drawn(at)
    made = _projections(runs) - before
    assert len(made) == 2 * (4 + 3)      # .parquet and .json of a raw layout per layer and three aligned ones
    assert any("1,995 of 5,000 nodes" in c.value for c in at.caption)      # 2,000 asked; stratified by category
    # The next visitor with the same link gets the cached layout straight away.
    again = _open(_app(runs, monkeypatch, points="2000"), "explore")
    assert not [i for i in again.info if "This link asks" in i.value]
    assert again.session_state["projection"].sample == 2_000
    assert any("1,995 of 5,000 nodes" in c.value for c in again.caption)
    assert _projections(runs) - before == made


def test_a_link_is_taken_only_where_it_names_something_that_exists(runs, monkeypatch):
    at = _open(_app(runs, monkeypatch, run="nope", layer=TAG, colour="rainbow"), "explore")
    assert (at.session_state["run"], at.session_state["layer"], at.session_state["colour_by"]) == \
        (DEMO_RUN, "hidden2", "category")
    at = _open(_app(runs, monkeypatch, run=DEMO_RUN, layer="hidden1", colour="split"), "explore")
    assert (at.session_state["layer"], at.session_state["colour_by"]) == ("hidden1", "split")
    assert json.loads(at.get("component_instance")[0].proto.json_args)["layer"] == "hidden1"


# --- names from a run folder ---------------------------------------------------------------------

def test_names_from_a_run_folder_show_as_written_on_every_page(runs, monkeypatch):
    """The run, dataset and category names and a warning's file name carry an
    image link and an image tag: every page shows them escaped, in Markdown
    and in the figures."""
    shown = []
    for page in PAGES:
        at = _open(_app(runs, monkeypatch, run=HOSTILE_RUN), page)
        if page == "neighbours":        # a node of a renamed category, named in the page's markdown
            at.number_input(key="neighbour_node").set_value(
                int(np.flatnonzero(read_run(runs / HOSTILE_RUN).nodes()["label"] == 0)[0])).run()
            assert not at.exception
        texts = _markdown(at)
        raw = [t for t in texts if "![" in t or "<img" in t]
        assert not raw, (page, raw)
        shown += texts
        figures = _figure_texts(at)
        assert "<img" not in figures and ("&lt;img" in figures or page in ("export", "findings")), page
    everything = "\n".join(shown)
    assert escape_markdown(f"demo {IMAGE} {TAG}") in everything             # the dataset, in the sidebar
    assert escape_markdown(f"layers/{IMAGE}{TAG}.npy")[:60] in everything    # the broken run's warning
    assert escape_markdown(HOSTILE_CATEGORIES["Books"]) in everything        # Neighbours: the node's category
    assert escape_markdown(HOSTILE_RUN) in everything                        # Metrics: the run's name
    print(f"{len(shown)} markdown strings on 5 pages, none with a raw image link or tag")


# --- the map component's folder ------------------------------------------------------------------

def test_the_map_component_folder_is_private_fresh_and_removed_at_exit(tmp_path):
    """Folders planted under $TMPDIR with the names the component used to
    reuse (``layerscope-plotly-map-<plotly>-<hash>``) are never served: each
    process makes its own, mode 0700, with our files, and removes it at exit."""
    import hashlib

    import plotly

    digest = hashlib.blake2b(digest_size=6)
    for name in ("index.html", "main.js"):
        digest.update((ROOT / "dashboard" / "plotly_map" / name).read_bytes())
    planted = [tmp_path / f"layerscope-plotly-map-{plotly.__version__}-{digest.hexdigest()}",
               tmp_path / "layerscope-plotly-map-planted"]
    for folder in planted:
        (folder / "maps").mkdir(parents=True)
        (folder / "main.js").write_text("window.planted = true;")
        (folder / "index.html").write_text("<script src='main.js'></script>")
    code = ("import os, stat; from layerscope.dashboard.plotly_map import _component, map_file; "
            "folder = _component()[1]; print(folder); print(oct(stat.S_IMODE(os.stat(folder).st_mode))); "
            "print(map_file('v').parent)")
    shown = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
        assert result.returncode == 0, result.stderr
        folder, mode, maps = result.stdout.split()
        assert mode == "0o700" and Path(maps) == Path(folder) / "maps"
        assert Path(folder).parent == tmp_path and Path(folder) not in planted
        assert not Path(folder).exists(), "removed at exit"
        shown.append(folder)
    assert shown[0] != shown[1]
    assert sorted(tmp_path.iterdir()) == sorted(planted)
    assert all((folder / "main.js").read_text() == "window.planted = true;" for folder in planted)
    assert stat.S_IMODE(os.stat(map_file("x").parent.parent).st_mode) == 0o700       # this process's own
