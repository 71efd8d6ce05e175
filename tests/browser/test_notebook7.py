"""The notebook layer in Notebook 7 (``/notebooks/<file>.ipynb``), driven through chromium.

Issue 4: the builder works in JupyterLab 4 and in Notebook 7 with ipywidgets 8. The same
server serves both UIs; these tests open the notebook in Notebook 7's page and run it from
its Run menu, with the same waits and assertions as the JupyterLab tests.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from apiorch_nb.demo import DemoServer

from .conftest import LabNotebook
from .test_jupyterlab import (
    BARS,
    MERMAID_IMAGE,
    ORCHESTRATE_CELL,
    TABLE,
    WATERFALL,
    _endpoint_rows,
    _setup_cell,
    run_builder_with_two_endpoints,
)

pytestmark = pytest.mark.timeout(300)

#: The graph's text/plain fallback. Notebook 7 (7.6) bundles no output renderer for
#: text/vnd.mermaid (JupyterLab 4.1+ does), so there the graph shows as this text.
GRAPH_TEXT = ".jp-RenderedText[data-mime-type='text/plain']:has-text('dependency graph')"


def test_notebook7_orchestrate_cell_renders_table_waterfall_and_graph(
    notebook7: LabNotebook, demo: DemoServer
) -> None:
    notebook7.open("nb7-orchestrate", [_setup_cell(demo), ORCHESTRATE_CELL])
    notebook7.run_all_cells()
    notebook7.wait_until_executed()

    notebook7.panel.locator(TABLE).wait_for()
    rows = _endpoint_rows(notebook7, TABLE)
    assert set(rows) == {"profile", "slow"}, rows
    assert "/users/1" in rows["profile"]
    assert "/delay/50" in rows["slow"]

    waterfall = notebook7.panel.locator(WATERFALL)
    waterfall.locator(BARS).first.wait_for()
    assert waterfall.locator(BARS).count() >= 2, notebook7.diagnostics()
    ticks = waterfall.locator(".ytick text").all_text_contents()
    assert set(ticks) == {"profile", "slow"}, ticks

    # The mermaid diagram if this Notebook renders text/vnd.mermaid, else its text fallback.
    mermaid = notebook7.panel.locator(MERMAID_IMAGE)
    graph = mermaid.or_(notebook7.panel.locator(GRAPH_TEXT))
    graph.first.wait_for()
    if mermaid.count():
        assert mermaid.evaluate("img => img.complete && img.naturalWidth > 0"), "empty image"
        shown = unquote(mermaid.get_attribute("src") or "")
    else:
        shown = graph.first.inner_text()
    assert "profile" in shown and "slow" in shown, shown[:500]

    waterfall.scroll_into_view_if_needed()
    notebook7.screenshot("notebook7-orchestrate.png")

    assert demo.count("/users/1", method="GET") == 1
    assert demo.count("/delay/50", method="GET") == 1
    assert len(demo.log) == 2, [(r.method, r.path) for r in demo.log]
    assert notebook7.outside == [], "the page reached outside the Jupyter server"


def test_notebook7_builder_form_runs_two_endpoints(
    notebook7: LabNotebook, demo: DemoServer
) -> None:
    """The issue's builder test, in Notebook 7: two endpoints in the form, Run, table and
    waterfall (the builder's contract is in test_jupyterlab.py)."""
    run_builder_with_two_endpoints(notebook7, demo, "notebook7-builder")
