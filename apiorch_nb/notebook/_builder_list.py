"""The builder's ordered list of endpoint forms: add, remove, duplicate, move, load.

The list order is the run order (sequential, pipeline and conditional modes follow it). It
also keeps every form's ``depends_on`` choices (the other forms, by id) and callable
choices (the notebook's callables) up to date.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import ipywidgets as w

from ..endpoint import APIEndpoint
from ._builder_endpoint import EndpointForm, Guard


class EndpointList(Sequence[EndpointForm]):
    """The endpoint forms in run order; ``builder.endpoints``.

    Every change ends in one validation of the whole builder (`batch` wraps it).
    """

    def __init__(
        self,
        namespace: Callable[[], Mapping[str, Any]],
        on_change: Callable[[], None],
        guard: Guard,
        batch: Callable[[], AbstractContextManager[None]],
        hidden: Callable[[], Mapping[str, Any]],
    ) -> None:
        self._namespace = namespace
        self._on_change = on_change
        self._guard = guard
        self._batch = batch
        self._hidden = hidden
        self._forms: list[EndpointForm] = []
        self._next_uid = 0
        self.box = w.VBox()
        self.box.add_class("apiorch-endpoints")

    def __len__(self) -> int:
        return len(self._forms)

    def __getitem__(self, index: Any) -> Any:
        return self._forms[index]

    def __iter__(self) -> Iterator[EndpointForm]:
        return iter(list(self._forms))

    def add(self, endpoint: APIEndpoint | None = None) -> EndpointForm:
        """Add a form at the end: `endpoint`'s values, or a blank GET named ``request_N``."""
        with self._batch():
            form = self._new_form()
            if endpoint is not None:
                form.load(endpoint, self._namespace())
            else:
                form.name.value = self._unused_name("request_", len(self._forms) + 1)
            self._forms.append(form)
            form.set_callable_options(self.callable_names())
        return form

    def remove(self, form: EndpointForm) -> None:
        """Remove `form`; the other endpoints stop depending on it."""
        with self._batch():
            self._forms.remove(form)

    def duplicate(self, form: EndpointForm) -> EndpointForm:
        """Insert a copy of `form` right after it, named ``<name>_copy``."""
        with self._batch():
            copy = self._new_form()
            copy.copy_from(form, self._unused_name(f"{form.name.value}_copy", 2, bare=True))
            copy.set_callable_options(self.callable_names())
            self._forms.insert(self._forms.index(form) + 1, copy)
            self.sync()
            copy.set_dependencies(form.dependencies)
        return copy

    def move(self, form: EndpointForm, offset: int) -> None:
        """Move `form` up (negative `offset`) or down."""
        with self._batch():
            i = self._forms.index(form)
            j = min(max(i + offset, 0), len(self._forms) - 1)
            self._forms.insert(j, self._forms.pop(i))

    def replace(self, endpoints: Sequence[APIEndpoint]) -> None:
        """Forms for `endpoints` instead of the current ones (all or nothing).

        Raises:
            ConfigError: an endpoint the form can't show (a binary body).
        """
        with self._batch():
            namespace = self._namespace()
            forms = []
            for endpoint in endpoints:
                form = self._new_form()
                form.load(endpoint, namespace)
                forms.append(form)
            self._forms = forms
            self.sync()
            uid = {form.name.value: form.uid for form in forms}
            for form, endpoint in zip(forms, endpoints, strict=True):
                form.set_dependencies([uid[name] for name in endpoint.depends_on])
            self.refresh_callables()

    def refresh_callables(self) -> None:
        """Offer the callables now in the namespace in every callable dropdown."""
        names = self.callable_names()
        with self._batch():
            for form in self._forms:
                form.set_callable_options(names)

    def callable_names(self) -> list[str]:
        """The namespace's functions and callable objects (not classes, not modules, not
        private or IPython's own names)."""
        hidden = self._hidden()
        return sorted(
            name
            for name, value in list(self._namespace().items())
            if isinstance(name, str)
            and not name.startswith("_")
            and not (name in hidden and hidden[name] is value)
            and callable(value)
            and not isinstance(value, type)
            and not inspect.ismodule(value)
        )

    def sync(self) -> None:
        """Show the forms in order; offer each the others as dependencies, by current name."""
        self.box.children = [form.box for form in self._forms]
        labels = {f.uid: f.name.value.strip() or f"#{i + 1}" for i, f in enumerate(self._forms)}
        for form in self._forms:
            others = [(labels[o.uid], o.uid) for o in self._forms if o is not form]
            form.set_dependency_options(others)

    def _action(self, action: str, form: EndpointForm) -> None:
        if action == "remove":
            self.remove(form)
        elif action == "duplicate":
            self.duplicate(form)
        else:
            self.move(form, -1 if action == "up" else 1)

    def _new_form(self) -> EndpointForm:
        self._next_uid += 1
        return EndpointForm(self._next_uid, self._on_change, self._action, self._guard)

    def _unused_name(self, stem: str, n: int, *, bare: bool = False) -> str:
        taken = {form.name.value for form in self._forms}
        if bare and stem not in taken:
            return stem
        while f"{stem}{n}" in taken:
            n += 1
        return f"{stem}{n}"
