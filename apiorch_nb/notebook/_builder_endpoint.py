"""One endpoint's form in the builder: the widgets, loading an `APIEndpoint`, reading it back.

The form knows nothing of the other endpoints except through what the `Builder` hands it
(the choices for ``depends_on``, the notebook's callables). Its dependencies are kept as
the other forms' ids, not their names, so renaming an endpoint never rewires the graph.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from ..endpoint import _METHODS, DEFAULT_RETRY_ON, APIEndpoint
from ..errors import ConfigError
from . import _builder_fields as fields

Handler = Callable[[Any], None]
Guard = Callable[[Handler], Handler]

#: Engine field -> the label of the dropdown that picks a notebook callable for it.
CALLABLE_LABELS = {
    "condition": "Condition",
    "transform_input": "Transform input",
    "transform_output": "Transform output",
    "response_parser": "Parser",
    "error_handler": "Error handler",
}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
assert set(METHODS) == _METHODS
NONE = ""  # the dropdown value for "no callable"
_INVALID = "apiorch-invalid"
WIDE = {"description_width": "initial"}


def text_field(
    description: str, value: object = "", placeholder: str = "", width: str = "13em"
) -> w.Text:
    """A labelled text box; numbers are typed as text too, so the engine words the errors."""
    return w.Text(
        value=str(value),
        description=description,
        placeholder=placeholder,
        style=WIDE,
        layout=w.Layout(width=width),
    )


def _button(description: str, tooltip: str) -> w.Button:
    return w.Button(description=description, tooltip=tooltip, layout=w.Layout(width="auto"))


class KeyValueRows:
    """Editable name/value rows (headers, params) with an add button and a remove per row."""

    def __init__(self, title: str, add: str, on_change: Callable[[], None], guard: Guard) -> None:
        self._on_change = on_change
        self._guard = guard
        self.rows: list[tuple[w.Text, w.Text, w.HBox]] = []
        self.add_button = _button(add, f"Add a row to {title.lower()}")
        self.add_button.on_click(guard(lambda _: self.add()))
        self._rows_box = w.VBox()
        self.box = w.VBox([w.HTML(f"<b>{title}</b>"), self._rows_box, self.add_button])

    def add(self, key: str = "", value: str = "") -> None:
        name = w.Text(value=key, placeholder="name", layout=w.Layout(width="14em"))
        text = w.Text(value=value, placeholder="value", layout=w.Layout(width="28em"))
        remove = _button("✕", "Remove this row")
        row = w.HBox([name, text, remove])
        entry = (name, text, row)
        remove.on_click(self._guard(lambda _: self.remove(entry)))
        for widget in (name, text):
            widget.observe(self._guard(lambda _: self._on_change()), names="value")
        self.rows.append(entry)
        self._rows_box.children = [r for _, _, r in self.rows]
        self._on_change()

    def remove(self, entry: tuple[w.Text, w.Text, w.HBox]) -> None:
        self.rows.remove(entry)
        self._rows_box.children = [r for _, _, r in self.rows]
        self._on_change()

    def set(self, pairs: list[tuple[str, str]]) -> None:
        self.rows.clear()
        for key, value in pairs:
            self.add(key, value)
        self._rows_box.children = [r for _, _, r in self.rows]

    def pairs(self) -> list[tuple[str, str]]:
        return [(key.value, value.value) for key, value, _ in self.rows]


class EndpointForm:
    """The widgets of one endpoint; `read` turns them into `APIEndpoint` keyword arguments.

    `actions` receives ``"up"``, ``"down"``, ``"duplicate"`` or ``"remove"`` with this form.
    """

    def __init__(
        self,
        uid: int,
        on_change: Callable[[], None],
        actions: Callable[[str, EndpointForm], None],
        guard: Guard,
    ) -> None:
        self.uid = uid
        self._on_change = on_change
        self.pinned: dict[str, Callable[..., Any]] = {}  # loaded callables not in the notebook
        self._dep_order: list[int] = []
        self.name = text_field("Name", placeholder="request_1", width="16em")
        self.name.add_class("apiorch-endpoint-name")
        self.method = w.Dropdown(
            options=METHODS, value="GET", description="Method", layout=w.Layout(width="11em")
        )
        self.url = text_field("URL", placeholder="https://api.example.com/path", width="32em")
        self.url.add_class("apiorch-endpoint-url")
        self.headers = KeyValueRows("Headers", "Add header", on_change, guard)
        self.params = KeyValueRows("Params", "Add param", on_change, guard)
        self.body = w.Textarea(
            description="Body", placeholder='{"json": "or text"}', layout=w.Layout(width="48em")
        )
        self.timeout = text_field("Timeout s", "30")
        self.retries = text_field("Retries", "3", width="9em")
        self.retry_delay = text_field("Retry delay s", "1")
        retry_on = ", ".join(str(s) for s in DEFAULT_RETRY_ON)
        self.retry_on = text_field("Retry on", retry_on, placeholder="off", width="22em")
        self.rate_limit = text_field("Rate limit", placeholder="none", width="10em")
        self.rate_window = text_field("per s", placeholder="run's window", width="12em")
        self.burst = text_field("Burst /s", placeholder="none", width="10em")
        self.cache_ttl = text_field("Cache TTL s", placeholder="run's TTL", width="14em")
        self.depends_on = w.SelectMultiple(options=[], description="Depends on", rows=3, style=WIDE)
        self.callables = {
            field: w.Dropdown(options=[("(none)", NONE)], value=NONE, description=label, style=WIDE)
            for field, label in CALLABLE_LABELS.items()
        }
        self.errors = w.HTML()
        self.errors.add_class("apiorch-endpoint-errors")
        #: Engine field -> the widget that edits it (errors are marked on these).
        self.fields: dict[str, w.DOMWidget] = {
            "name": self.name,
            "method": self.method,
            "url": self.url,
            "headers": self.headers.box,
            "params": self.params.box,
            "body": self.body,
            "timeout": self.timeout,
            "retry_count": self.retries,
            "retry_delay": self.retry_delay,
            "retry_on": self.retry_on,
            "rate_limit": self.rate_limit,
            "rate_limit_window": self.rate_window,
            "burst_limit": self.burst,
            "cache_ttl": self.cache_ttl,
            "depends_on": self.depends_on,
            **self.callables,
        }
        for widget in self.fields.values():
            if hasattr(widget, "value"):
                widget.observe(guard(self._changed), names="value")
        #: "up", "down", "duplicate", "remove" -> the button on the form's first row.
        self.buttons: dict[str, w.Button] = {}
        for action, label, tip in (
            ("up", "Up", "Move this endpoint up"),
            ("down", "Down", "Move this endpoint down"),
            ("duplicate", "Duplicate", "Add a copy of this endpoint below it"),
            ("remove", "Remove", "Remove this endpoint"),
        ):
            button = self.buttons[action] = _button(label, tip)
            button.on_click(guard(lambda _, a=action: actions(a, self)))
        details = w.VBox(
            [
                self.headers.box,
                self.params.box,
                self.body,
                w.HBox([self.timeout, self.retries, self.retry_delay, self.retry_on]),
                w.HBox([self.rate_limit, self.rate_window, self.burst, self.cache_ttl]),
                self.depends_on,
                w.HBox(list(self.callables.values())[:3], layout=w.Layout(flex_flow="row wrap")),
                w.HBox(list(self.callables.values())[3:], layout=w.Layout(flex_flow="row wrap")),
            ]
        )
        self.details = w.Accordion(children=[details], titles=("Details",), selected_index=None)
        self.box = w.VBox(
            [
                w.HBox(
                    [self.name, self.method, self.url, *self.buttons.values()],
                    layout=w.Layout(flex_flow="row wrap"),
                ),
                self.errors,
                self.details,
            ],
            layout=w.Layout(border="1px solid #dddddd", padding="4px", margin="2px 0"),
        )
        self.box.add_class("apiorch-endpoint")

    def _changed(self, change: Any) -> None:
        if change["owner"] is self.depends_on:
            chosen = list(change["new"])
            kept = [uid for uid in self._dep_order if uid in chosen]
            self._dep_order = kept + [uid for uid in chosen if uid not in kept]
        self._on_change()

    # -- loading ---------------------------------------------------------------------------

    def load(self, ep: APIEndpoint, namespace: Mapping[str, Any]) -> None:
        """Show `ep` (all but ``depends_on``, which the builder sets once every form exists).

        Raises:
            ConfigError: a body the form can't edit.
        """
        where = f"endpoint {ep.name!r}"
        self.name.value = ep.name
        self.method.value = ep.method
        self.url.value = ep.url
        self.headers.set([(str(k), str(v)) for k, v in ep.headers.items()])
        self.params.set(fields.param_rows(ep.params))
        self.body.value = fields.body_text(ep.body, where)
        self.timeout.value = fields.number_text(ep.timeout)
        self.retries.value = str(ep.retry_count)
        self.retry_delay.value = fields.number_text(ep.retry_delay)
        self.retry_on.value = ", ".join(str(s) for s in sorted(ep.retry_on)) or "off"
        self.rate_limit.value = fields.opt_text(ep.rate_limit)
        self.rate_window.value = fields.opt_text(ep.rate_limit_window)
        self.burst.value = fields.opt_text(ep.burst_limit)
        self.cache_ttl.value = fields.opt_text(ep.cache_ttl)
        for field, dropdown in self.callables.items():
            func = getattr(ep, field)
            key = NONE if func is None else self._key_for(func, namespace)
            _set_options(dropdown, [*_keys(dropdown), key])
            dropdown.value = key

    def _key_for(self, func: Callable[..., Any], namespace: Mapping[str, Any]) -> str:
        """The notebook name holding `func`, else a pinned label that keeps the object."""
        name = getattr(func, "__name__", None)
        if isinstance(name, str) and namespace.get(name) is func:
            return name
        for key, value in namespace.items():
            if value is func and not key.startswith("_"):
                return key
        label = f"{name if isinstance(name, str) else type(func).__name__} (loaded)"
        self.pinned[label] = func
        return label

    def copy_from(self, other: EndpointForm, name: str) -> None:
        """Take every value of `other` (a duplicate), under a new name."""
        self.pinned.update(other.pinned)
        self.name.value = name
        for field, widget in other.fields.items():
            if field in ("name", "depends_on", "headers", "params"):
                continue
            mine = self.fields[field]
            if isinstance(mine, w.Dropdown) and field in self.callables:
                _set_options(mine, list(_keys(widget)))
            mine.value = widget.value
        self.headers.set(other.headers.pairs())
        self.params.set(other.params.pairs())

    # -- the builder keeps these in sync ---------------------------------------------------

    @property
    def dependencies(self) -> list[int]:
        """The chosen dependencies' form ids, in the order they were chosen or loaded."""
        chosen = set(self.depends_on.value)
        return [uid for uid in self._dep_order if uid in chosen]

    def set_dependencies(self, uids: list[int]) -> None:
        self._dep_order = list(uids)
        self.depends_on.value = tuple(uids)

    def set_dependency_options(self, others: list[tuple[str, int]]) -> None:
        """The other endpoints as (name, id); the selection survives renames and moves."""
        if list(self.depends_on.options) == others:
            return
        known = {uid for _, uid in others}
        keep = [uid for uid in self._dep_order if uid in known]
        self.depends_on.options = others  # resets the selection: restored next
        self.depends_on.value = tuple(keep)
        self._dep_order = keep

    def set_callable_options(self, names: list[str]) -> None:
        """Offer `names` (the notebook's callables) plus what is chosen or pinned already."""
        for dropdown in self.callables.values():
            current = dropdown.value
            keys = [*names, *self.pinned]
            if current != NONE and current not in keys:
                keys.append(current)  # gone from the notebook: kept, and `read` says so
            _set_options(dropdown, keys)
            dropdown.value = current

    # -- reading ---------------------------------------------------------------------------

    def read(self, namespace: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """`APIEndpoint` keyword arguments (all but ``depends_on``) and the errors found
        before the engine sees them (rows, missing callables), by field."""
        where = f"endpoint {self.name.value!r}"
        errors: dict[str, str] = {}
        body = fields.body(self.body.value)
        try:
            head = fields.with_json_content_type(fields.headers(self.headers.pairs(), where), body)
        except ConfigError as exc:
            errors["headers"], head = str(exc), {}
        try:
            query = fields.params(self.params.pairs(), where)
        except ConfigError as exc:
            errors["params"], query = str(exc), {}
        kwargs: dict[str, Any] = {
            "name": self.name.value,
            "url": self.url.value.strip(),
            "method": self.method.value,
            "headers": head,
            "params": query,
            "body": body,
            "timeout": fields.number(self.timeout.value, default=30.0),
            "retry_count": fields.number(self.retries.value, integer=True, default=3),
            "retry_delay": fields.number(self.retry_delay.value, default=1.0),
            "retry_on": fields.statuses(self.retry_on.value),
            "rate_limit": fields.number(self.rate_limit.value, integer=True),
            "rate_limit_window": fields.number(self.rate_window.value),
            "burst_limit": fields.number(self.burst.value, integer=True),
            "cache_ttl": fields.number(self.cache_ttl.value),
        }
        for field, dropdown in self.callables.items():
            key = dropdown.value
            func = namespace.get(key) if key in namespace else self.pinned.get(key)
            if key != NONE and not callable(func):
                label = CALLABLE_LABELS[field].lower()
                errors[field] = (
                    f"{where}: {label}: nothing callable named {key!r} in the notebook "
                    "(define it, then Refresh functions)"
                )
                func = None
            kwargs[field] = func if key != NONE else None
        return kwargs, errors

    def show_errors(self, errors: Mapping[str, str]) -> None:
        """Mark each field with an error and list the messages under the form's first row."""
        for field, widget in self.fields.items():
            mark(widget, field in errors)
        if field_errors := list(dict.fromkeys(errors.values())):
            items = "".join(f"<li>{html.escape(m)}</li>" for m in field_errors)
            self.errors.value = f'<ul style="color:#d62728;margin:0">{items}</ul>'
        else:
            self.errors.value = ""


def mark(widget: w.DOMWidget, invalid: bool) -> None:
    """Outline a field with an error in red and give it the ``apiorch-invalid`` class."""
    if invalid and _INVALID not in widget._dom_classes:
        widget.add_class(_INVALID)
        widget.layout.border = "1px solid #d62728"
    elif not invalid and _INVALID in widget._dom_classes:
        widget.remove_class(_INVALID)
        widget.layout.border = None


def _keys(dropdown: w.Dropdown) -> list[str]:
    return [value for _, value in dropdown.options if value != NONE]


def _set_options(dropdown: w.Dropdown, keys: list[str]) -> None:
    unique = list(dict.fromkeys(k for k in keys if k != NONE))
    options = [("(none)", NONE), *((k, k) for k in unique)]
    if list(dropdown.options) != options:
        current = dropdown.value
        dropdown.options = options  # resets the value: restored next
        dropdown.value = current if current in (NONE, *unique) else NONE
