"""The notebook layer: ``%load_ext apiorch_nb`` registers everything here; unload removes it.

It depends on the engine; the engine never imports this package.
"""

from __future__ import annotations

from typing import Any

from .loop import enable_asyncio_run

__all__ = ["enable_asyncio_run", "load_ipython_extension", "unload_ipython_extension"]

_STATE_KEY = "_apiorch_nb_extension"


def load_ipython_extension(shell: Any) -> None:
    """Register the magics, the cell rewrite, the run and map displays, live progress,
    completion and the hint."""
    from ..enrich import MapRun
    from ..orchestrator import APIOrchestrator
    from ..run import Run
    from ._map_progress import map_progress_observer
    from .complete import make_matcher
    from .display import show_map_run, show_run
    from .loop import AsyncioRunHint, InterruptWakesLoop, rewrite_cell
    from .magics import OrchestrateMagics
    from .progress import progress_observer

    if getattr(shell, _STATE_KEY, None) is not None:
        return  # already loaded: IPython calls us again on %reload_ext after unloading
    magics = OrchestrateMagics(shell=shell)
    shell.register_magics(magics)
    shell.input_transformers_cleanup.append(rewrite_cell)
    formatter = shell.display_formatter.ipython_display_formatter
    previous_display = formatter.for_type(Run, show_run)
    previous_map_display = formatter.for_type(MapRun, show_map_run)
    matcher = None
    if getattr(shell, "Completer", None) is not None:
        matcher = make_matcher(lambda: _user_names(shell))
        shell.Completer.custom_matchers.append(matcher)
    hint = AsyncioRunHint(shell)
    hint.install()
    wakeup = InterruptWakesLoop()
    wakeup.install()
    previous_observers = (APIOrchestrator.default_observer, APIOrchestrator.default_map_observer)
    # live progress for every execute and map, also a plain `await orchestrator.map(df)`
    APIOrchestrator.default_observer = progress_observer
    APIOrchestrator.default_map_observer = map_progress_observer
    displays = (previous_display, previous_map_display)
    setattr(shell, _STATE_KEY, (magics, displays, matcher, hint, wakeup, previous_observers))


def unload_ipython_extension(shell: Any) -> None:
    """Remove everything `load_ipython_extension` added, leaving the shell as it was."""
    from ..enrich import MapRun
    from ..orchestrator import APIOrchestrator
    from ..run import Run
    from .loop import rewrite_cell

    state = getattr(shell, _STATE_KEY, None)
    if state is None:
        return
    magics, displays, matcher, hint, wakeup, previous_observers = state
    for kind in ("cell", "line"):
        shell.magics_manager.magics[kind].pop("orchestrate", None)
    shell.magics_manager.magics["line"].pop("orchestrate_builder", None)  # the builder's
    shell.magics_manager.registry.pop(type(magics).__name__, None)
    if magics in shell.configurables:  # Magics.__init__ added it; %config would still reach it
        shell.configurables.remove(magics)
    if rewrite_cell in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(rewrite_cell)
    formatter = shell.display_formatter.ipython_display_formatter
    for kind, previous_display in zip((Run, MapRun), displays, strict=True):
        formatter.type_printers.pop(kind, None)
        if previous_display is not None:
            formatter.for_type(kind, previous_display)
    if matcher is not None and matcher in shell.Completer.custom_matchers:
        shell.Completer.custom_matchers.remove(matcher)
    hint.uninstall()
    wakeup.uninstall()
    APIOrchestrator.default_observer, APIOrchestrator.default_map_observer = previous_observers
    magics.backends.close()
    delattr(shell, _STATE_KEY)


def _user_names(shell: Any) -> dict[str, Any]:
    """The notebook's own names, without those IPython put there (``exit``, ``get_ipython``),
    unless the user rebound them: the same rule as ``%who``."""
    hidden = shell.user_ns_hidden
    return {k: v for k, v in shell.user_ns.items() if k not in hidden or hidden[k] is not v}
