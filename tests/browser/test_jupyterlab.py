"""The notebook layer in a real JupyterLab, driven through Debian's chromium.

Each test writes a notebook into the JupyterLab root, opens it, runs it the way a
user does, and asserts on what the page shows and on what the demo server received.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from playwright.sync_api import Locator

from apiorch_nb.demo import DemoServer

from .conftest import LabNotebook

pytestmark = pytest.mark.timeout(300)

TABLE = ".apiorch-run table"
#: jupyterlab-plotly's renderer for application/vnd.plotly.v1+json: the output element itself.
PLOTLY = ".jp-RenderedPlotly.js-plotly-plot"
#: The run's waterfall, told from the latency chart by its x-axis title.
WATERFALL = f"{PLOTLY}:has(.xtitle:text-is('ms since run start'))"
BARS = ".trace.bars .point path"
#: JupyterLab's own text/vnd.mermaid renderer (4.1+): the diagram as an SVG data-URL image.
MERMAID_IMAGE = ".jp-RenderedMermaid figure img[src^='data:image/svg+xml']"

ORCHESTRATE_CELL = """\
%%orchestrate --mode parallel r <<
###
# @name profile
GET {{base}}/users/1

###
# @name slow
GET {{base}}/delay/50
"""


def _setup_cell(demo: DemoServer) -> str:
    return f"%load_ext apiorch_nb\nbase = {demo.url!r}"


def _button(scope: Locator, label: str) -> Locator:
    """The ipywidgets button labelled `label`, by its text: an icon's glyph (CSS content)
    would be part of its accessible name, so ``get_by_role(name=...)`` is not exact."""
    text = re.compile(rf"^\s*{re.escape(label)}\s*$")
    return scope.locator("button.jupyter-button", has_text=text)


def _endpoint_rows(notebook: LabNotebook, table: str) -> dict[str, str]:
    """The first column (endpoint name) of each row of the run table -> the row's text."""
    rows = notebook.panel.locator(f"{table} tbody tr")
    out = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        out[row.locator("td").first.inner_text().strip()] = row.inner_text()
    return out


def test_orchestrate_cell_renders_table_waterfall_and_graph(
    notebook: LabNotebook, demo: DemoServer
) -> None:
    notebook.open("orchestrate", [_setup_cell(demo), ORCHESTRATE_CELL])
    notebook.run_all_cells()
    notebook.wait_until_executed()

    table = notebook.panel.locator(TABLE)
    table.wait_for()
    rows = _endpoint_rows(notebook, TABLE)
    assert set(rows) == {"profile", "slow"}, rows
    assert "/users/1" in rows["profile"]
    assert "/delay/50" in rows["slow"]

    waterfall = notebook.panel.locator(WATERFALL)
    waterfall.locator(BARS).first.wait_for()
    assert waterfall.locator(BARS).count() >= 2, notebook.diagnostics()
    ticks = waterfall.locator(".ytick text").all_text_contents()
    assert set(ticks) == {"profile", "slow"}, ticks

    graph = notebook.panel.locator(MERMAID_IMAGE)
    graph.wait_for()
    assert graph.evaluate("img => img.complete && img.naturalWidth > 0"), "mermaid image is empty"
    svg = unquote(graph.get_attribute("src") or "")
    assert "profile" in svg and "slow" in svg, svg[:500]

    waterfall.scroll_into_view_if_needed()
    notebook.screenshot("jupyterlab-orchestrate.png")

    assert demo.count("/users/1", method="GET") == 1
    assert demo.count("/delay/50", method="GET") == 1
    assert len(demo.log) == 2, [(r.method, r.path) for r in demo.log]
    assert notebook.outside == [], "the page reached outside JupyterLab"


def test_builder_form_runs_two_endpoints(notebook: LabNotebook, demo: DemoServer) -> None:
    """The issue's builder test: two endpoints filled in the form, Run, table and waterfall.

    The builder's contract: a container with class ``apiorch-builder``, an "Add endpoint"
    button, Text widgets with classes ``apiorch-endpoint-name`` and
    ``apiorch-endpoint-url`` (one pair per endpoint), a "Run" button, and a results Tab
    with class ``apiorch-results`` whose "Table" and "Timeline" tabs show the run table
    and the Plotly waterfall.
    """
    run_builder_with_two_endpoints(notebook, demo, "builder")


def run_builder_with_two_endpoints(notebook: LabNotebook, demo: DemoServer, name: str) -> None:
    """Fill two endpoints into the builder form, Run, and check the table, the waterfall and
    what the server saw; shared by the JupyterLab and Notebook 7 tests."""
    notebook.open(
        name,
        [_setup_cell(demo), "import apiorch_nb\nb = apiorch_nb.builder()\nb"],
    )
    notebook.run_all_cells()
    notebook.wait_until_executed()

    builder = notebook.panel.locator(".apiorch-builder")
    builder.wait_for()
    names = builder.locator(".apiorch-endpoint-name input")
    urls = builder.locator(".apiorch-endpoint-url input")
    add = _button(builder, "Add endpoint")
    # The form may start empty or with one blank endpoint; either way, make it two.
    for _ in range(2):
        if names.count() >= 2:
            break
        before = names.count()
        add.click()
        names.nth(before).wait_for()
    assert names.count() == 2, f"expected two endpoint rows, got {names.count()}"

    for i, (name, path) in enumerate((("profile", "/users/1"), ("slow", "/delay/50"))):
        names.nth(i).fill(name)
        names.nth(i).press("Tab")
        urls.nth(i).fill(demo.url + path)
        urls.nth(i).press("Tab")

    _button(builder, "Run").click()

    results = builder.locator(".apiorch-results")
    results.get_by_role("tab", name="Table", exact=True).click()
    results.locator(f"{TABLE} tbody tr").nth(1).wait_for()
    rows = _endpoint_rows(notebook, f".apiorch-results {TABLE}")
    assert set(rows) == {"profile", "slow"}, rows

    results.get_by_role("tab", name="Timeline", exact=True).click()
    waterfall = results.locator(WATERFALL)
    waterfall.locator(BARS).first.wait_for()
    assert waterfall.locator(BARS).count() >= 2, notebook.diagnostics()
    ticks = waterfall.locator(".ytick text").all_text_contents()
    assert set(ticks) == {"profile", "slow"}, ticks

    builder.scroll_into_view_if_needed()
    notebook.screenshot(f"{name}.png")

    assert demo.count("/users/1", method="GET") == 1
    assert demo.count("/delay/50", method="GET") == 1
    assert len(demo.log) == 2, [(r.method, r.path) for r in demo.log]
    assert notebook.outside == [], "the page reached outside the Jupyter server"
