"""Kernel-side completion inside ``%%orchestrate`` cells, through IPython's own completer."""

from __future__ import annotations

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell

from apiorch_nb import OrchestrationMode

ORCHESTRATE_MATCHER = "apiorch_nb.orchestrate"
MODES = sorted(m.value for m in OrchestrationMode)
OPTIONS = [
    "--allow-failures",
    "--cache",
    "--cache-ttl",
    "--dry-run",
    "--fail-fast",
    "--fields",
    "--file",
    "--input",
    "--limiter",
    "--map-timeout",
    "--max-concurrent",
    "--mode",
    "--over",
    "--quiet",
    "--rate-limit",
    "--total-timeout",
]
ANNOTATIONS = [
    "burst",
    "cache",
    "condition",
    "depends_on",
    "name",
    "on_error",
    "parser",
    "rate_limit",
    "retry",
    "retry_on",
    "timeout",
    "transform_input",
    "transform_output",
]
CELL_HEAD = (
    "%%orchestrate --mode hybrid\n"
    "###\n# @name login\nPOST http://127.0.0.1:1/auth\n"
    "### profile\nGET http://127.0.0.1:1/profile\n"
    "###\n# @name user\n"
)


def complete(ip: InteractiveShell, text: str, cursor: int | None = None) -> list[str]:
    """What the completer offers at `cursor` (default: the end), as inserted texts."""
    with provisionalcompleter():
        found = ip.Completer.completions(text, len(text) if cursor is None else cursor)
        return sorted({c.text for c in found})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%%orchestrate ", OPTIONS),
        ("%%orchestrate --m", ["--map-timeout", "--max-concurrent", "--mode"]),
        ("%%orchestrate r << --dry-run --al", ["--allow-failures"]),
        ("%%orchestrate --mode ", MODES),
        ("%%orchestrate --mode p", ["parallel", "pipeline"]),
        ("%%orchestrate -m fa", ["fanout"]),
    ],
)
def test_the_magic_line_completes_options_and_modes(
    ip: InteractiveShell, text: str, expected: list[str]
) -> None:
    assert complete(ip, text + "\n###\nGET http://127.0.0.1:1/x\n", len(text)) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("# @", ANNOTATIONS),
        ("# @re", ["retry", "retry_on"]),
        ("// @tr", ["transform_input", "transform_output"]),
    ],
)
def test_annotation_keys_complete_after_at(
    ip: InteractiveShell, typed: str, expected: list[str]
) -> None:
    assert complete(ip, CELL_HEAD + typed) == expected


def test_depends_on_offers_the_other_requests_of_the_cell_but_not_its_own(
    ip: InteractiveShell,
) -> None:
    text = CELL_HEAD + "# @depends_on "
    after = "\nGET http://127.0.0.1:1/user\n###\n# @name later\nGET http://127.0.0.1:1/later\n"
    assert complete(ip, text + after, len(text)) == ["later", "login", "profile"]
    text = CELL_HEAD + "# @depends_on login, pro"
    assert complete(ip, text + after, len(text)) == ["profile"]


def test_callable_annotations_offer_notebook_functions(ip: InteractiveShell) -> None:
    ip.user_ns["is_premium"] = lambda ctx: True
    ip.user_ns["is_active"] = lambda ctx: True
    ip.user_ns["is_set"] = {"not": "callable"}
    ip.user_ns["IsClass"] = type("IsClass", (), {})
    ip.user_ns["_is_private"] = lambda ctx: True
    assert complete(ip, CELL_HEAD + "# @condition is_") == ["is_active", "is_premium"]
    assert complete(ip, CELL_HEAD + "# @on_error is_p") == ["is_premium"]


def test_callables_are_the_users_own_not_what_ipython_put_in_the_namespace(
    ip: InteractiveShell,
) -> None:
    ip.user_ns["is_premium"] = lambda ctx: True
    ip.user_ns["open"] = lambda ctx: True  # the user's own `open` shadows IPython's
    assert complete(ip, CELL_HEAD + "# @condition ") == ["is_premium", "open"]


def test_disabling_the_matcher_by_its_identifier_takes_its_completions_away(
    ip: InteractiveShell,
) -> None:
    ip.Completer.disable_matchers = [ORCHESTRATE_MATCHER]
    try:
        assert "parallel" not in complete(ip, "%%orchestrate --mode p")
    finally:
        ip.Completer.disable_matchers = []
    assert "parallel" in complete(ip, "%%orchestrate --mode p")


@pytest.mark.parametrize(
    "text",
    [
        "x = 1\n# @re",
        "# @depends_on ",
        "print('--mo",
        "%orchestrate --mo",
        "%%timeit --mode ",
        "%%orchestrat",
        CELL_HEAD + "# @retry ",  # a plain value: nothing of ours to offer
        CELL_HEAD + "GET http://127.0.0.1:1/",
    ],
)
def test_nothing_is_added_outside_orchestrate_cells_or_where_it_has_nothing(
    ip: InteractiveShell, text: str
) -> None:
    ip.user_ns["retry_helper"] = lambda: None
    with_ours = complete(ip, text)
    ip.Completer.disable_matchers = [ORCHESTRATE_MATCHER]
    try:
        without_ours = complete(ip, text)
    finally:
        ip.Completer.disable_matchers = []
    assert with_ours == without_ours
