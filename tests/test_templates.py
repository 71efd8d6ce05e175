"""`{placeholder}` templates in url, params, headers and body.

End-to-end tests assert what the demo server received; unit tests drive the functions of
`apiorch_nb._template` directly.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CallState,
    ConfigError,
    OrchestrationMode,
    TemplateError,
)
from apiorch_nb._template import Context, has_placeholders, lookup, render
from apiorch_nb.demo import DemoServer

FAST = {"retry_count": 0, "timeout": 5.0}


async def run(
    endpoints: list[APIEndpoint], data: Any = None, mode: str = "sequential", **config: Any
) -> tuple[Any, APIOrchestrator]:
    orchestrator = APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints, mode=mode, **config))
    async with orchestrator:
        return await orchestrator.execute(data), orchestrator


# -- filled from the run input --------------------------------------------------------------


async def test_url_placeholder_is_filled_from_the_input(demo: DemoServer) -> None:
    result, _ = await run(
        [APIEndpoint(name="user", url=demo.url + "/users/{user_id}", **FAST)], {"user_id": 3}
    )
    assert result["user"]["id"] == 3
    assert [r.path for r in demo.log] == ["/users/3"]


async def test_whole_url_can_be_a_placeholder(demo: DemoServer) -> None:
    result, _ = await run(
        [APIEndpoint(name="d", url="{base}/data/{name}", **FAST)],
        {"base": demo.url, "name": "abc"},
    )
    assert result["d"] == {"source": "abc", "value": 3}


async def test_params_and_headers_are_filled(demo: DemoServer) -> None:
    ep = APIEndpoint(
        name="probe",
        url=demo.url + "/echo",
        params={"user_id": "{user_id}", "q": "name:{name}"},
        headers={"X-User": "{user_id}", "X-Trace": "trace-{name}"},
        **FAST,
    )
    await run([ep], {"user_id": 42, "name": "ada"})
    (seen,) = demo.requests("/echo")
    assert seen.query == {"user_id": "42", "q": "name:ada"}
    assert seen.headers["X-User"] == "42"
    assert seen.headers["X-Trace"] == "trace-ada"


async def test_whole_string_placeholder_in_body_keeps_its_type(demo: DemoServer) -> None:
    ep = APIEndpoint(
        name="probe",
        url=demo.url + "/echo",
        method="POST",
        body={
            "id": "{user_id}",
            "ratio": "{ratio}",
            "flag": "{flag}",
            "tags": "{tags}",
            "nested": {"id": "{user_id}", "label": "user-{user_id}"},
            "list": ["{user_id}", "#{user_id}"],
            "none": "{nothing}",
        },
        **FAST,
    )
    await run([ep], {"user_id": 7, "ratio": 0.5, "flag": True, "tags": ["a", "b"], "nothing": None})
    (seen,) = demo.requests("/echo")
    assert seen.json == {
        "id": 7,
        "ratio": 0.5,
        "flag": True,
        "tags": ["a", "b"],
        "nested": {"id": 7, "label": "user-7"},
        "list": [7, "#7"],
        "none": None,
    }


async def test_body_keys_may_be_templated(demo: DemoServer) -> None:
    ep = APIEndpoint(
        name="probe", url=demo.url + "/echo", method="POST", body={"{key}": "v"}, **FAST
    )
    await run([ep], {"key": "dynamic"})
    assert demo.requests("/echo")[0].json == {"dynamic": "v"}


async def test_double_braces_are_literal_braces(demo: DemoServer) -> None:
    ep = APIEndpoint(
        name="probe",
        url=demo.url + "/echo",
        method="POST",
        params={"q": "{{raw}}"},
        headers={"X-Fmt": "{{x}}-{x}"},
        body={"text": "{{not a placeholder}}", "mixed": "{{{x}}}", "json": '{"a": 1}'},
        **FAST,
    )
    await run([ep], {"x": 5})
    (seen,) = demo.requests("/echo")
    assert seen.query == {"q": "{raw}"}
    assert seen.headers["X-Fmt"] == "{x}-5"
    assert seen.json == {"text": "{not a placeholder}", "mixed": "{5}", "json": '{"a": 1}'}


async def test_braces_that_are_not_placeholders_are_sent_untouched(demo: DemoServer) -> None:
    body = {"shape": "{x: 1}", "spaced": "{ user }", "closing": "a}b", "digit": "{1}"}
    ep = APIEndpoint(name="probe", url=demo.url + "/echo", method="POST", body=body, **FAST)
    await run([ep], {"x": 1, "user": 2})
    assert demo.requests("/echo")[0].json == body


async def test_double_braces_are_unescaped_even_without_placeholders(demo: DemoServer) -> None:
    body = {"template": "{{ user }}"}
    ep = APIEndpoint(name="probe", url=demo.url + "/echo", method="POST", body=body, **FAST)
    await run([ep], {})
    assert demo.requests("/echo")[0].json == {"template": "{ user }"}


async def test_tuple_param_values_are_templated_and_sent_as_repeated_keys(
    demo: DemoServer,
) -> None:
    ep = APIEndpoint(
        name="probe",
        url=demo.url + "/echo",
        params={"id": ("{a}", "{b}")},
        response_parser=lambda r: r.url,
        **FAST,
    )
    result, _ = await run([ep], {"a": 1, "b": 2})
    assert result["probe"].endswith("/echo?id=1&id=2")


# -- filled from earlier results ------------------------------------------------------------


async def test_dotted_path_reads_an_earlier_endpoints_result(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="user", url=demo.url + "/users/{user_id}", **FAST),
        APIEndpoint(
            name="posts",
            url=demo.url + "/users/{user.id}/posts",
            params={"type": "{user.user_type}"},
            **FAST,
        ),
    ]
    result, _ = await run(endpoints, {"user_id": 4})
    assert [r.path for r in demo.log] == ["/users/4", "/users/4/posts"]
    assert demo.log[1].query == {"type": "basic"}
    assert [p["user_id"] for p in result["posts"]["posts"]] == [4, 4, 4]


async def test_list_indices_in_paths(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="users", url=demo.url + "/users", params={"limit": 3}, **FAST),
        APIEndpoint(
            name="probe",
            url=demo.url + "/users/{users.users.1.id}",
            headers={"X-Last": "{users.users.-1.email}"},
            **FAST,
        ),
    ]
    result, _ = await run(endpoints)
    assert result["probe"]["id"] == 2
    assert demo.requests("/users/2")[0].headers["X-Last"] == "user3@example.com"


async def test_whole_result_object_goes_into_the_body(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="user", url=demo.url + "/users/5", **FAST),
        APIEndpoint(
            name="enrich",
            url=demo.url + "/enrich",
            method="POST",
            body={"who": "{user}", "id": "{user.id}"},
            **FAST,
        ),
    ]
    result, _ = await run(endpoints)
    sent = demo.requests("/enrich")[0].json
    assert sent["id"] == 5
    assert sent["who"] == result["user"]
    assert result["enrich"]["enriched"] is True


async def test_pipeline_templates_read_the_previous_output(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="auth", url=demo.url + "/auth", method="POST", **FAST),
        APIEndpoint(
            name="me",
            url=demo.url + "/user",
            headers={"Authorization": "Bearer {token}"},
            **FAST,
        ),
    ]
    result, _ = await run(endpoints, {"username": "ada"}, mode="pipeline")
    assert demo.requests("/user")[0].headers["Authorization"] == "Bearer demo-token-ada"
    assert result["me"] == {"id": 1, "username": "ada"}


async def test_lookup_order_is_input_then_results_then_run_input(demo: DemoServer) -> None:
    """The endpoint's (shaped) input wins over an earlier result of the same name, and an
    earlier result wins over the run input."""
    body = {"x": "{x}", "only_run": "{only_run}", "shaped": "{shaped}"}
    endpoints = [
        APIEndpoint(name="x", url=demo.url + "/data/abc", **FAST),
        # input is the run input, which has "x": the input layer wins over results["x"]
        APIEndpoint(name="plain", url=demo.url + "/echo", method="POST", body=body, **FAST),
        # shaped input without "x": results["x"] wins over the run input's "x"
        APIEndpoint(
            name="shaped_input",
            url=demo.url + "/echo",
            method="POST",
            body=body,
            transform_input=lambda d: {"shaped": True},
            **FAST,
        ),
        # shaped input with "x": the shaped input wins over everything
        APIEndpoint(
            name="shaped_x",
            url=demo.url + "/echo",
            method="POST",
            body=body,
            transform_input=lambda d: {"shaped": 1, "x": "from-input"},
            **FAST,
        ),
    ]
    await run(endpoints, {"x": "from-run", "only_run": "r", "shaped": 0})
    plain, shaped_input, shaped_x = (r.json for r in demo.requests("/echo"))
    assert plain == {"x": "from-run", "only_run": "r", "shaped": 0}
    assert shaped_input == {"x": {"source": "abc", "value": 3}, "only_run": "r", "shaped": True}
    assert shaped_x == {"x": "from-input", "only_run": "r", "shaped": 1}


# -- unresolved placeholders ----------------------------------------------------------------


async def test_unresolved_placeholder_is_raised_from_execute_and_recorded(
    demo: DemoServer,
) -> None:
    endpoints = [
        APIEndpoint(name="first", url=demo.url + "/users/1", **FAST),
        APIEndpoint(
            name="profile",
            url=demo.url + "/users/{account.id}",
            error_handler=lambda e: "rescued?",
            **FAST,
        ),
        APIEndpoint(name="after", url=demo.url + "/users/2", **FAST),
    ]
    orchestrator = APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints))
    async with orchestrator:
        with pytest.raises(TemplateError) as info:
            await orchestrator.execute({"user_id": 1})
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, KeyError)
    assert (err.endpoint, err.placeholder, err.field) == ("profile", "account.id", "url")
    assert str(err).startswith("endpoint 'profile': placeholder {account.id} in url is not filled")
    run_ = orchestrator.last_run
    assert run_ is not None
    assert run_.error is err
    record = run_.records["profile"]
    assert record.state is CallState.FAILED
    assert record.error is err
    assert record.rescued is False  # a configuration error is never rescued
    assert record.attempts == []  # nothing was sent for it
    assert run_.records["first"].state is CallState.OK
    assert run_.records["after"].state is CallState.CANCELLED
    assert [r.path for r in demo.log] == ["/users/1"]


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ({"params": {"q": "{missing}"}}, "params.q"),
        ({"headers": {"X-Id": "id-{missing}"}}, "headers.X-Id"),
        ({"body": {"outer": {"inner": "{missing}"}}, "method": "POST"}, "body.outer.inner"),
        ({"body": "{missing}", "method": "POST"}, "body"),
    ],
)
async def test_template_error_names_the_field(
    demo: DemoServer, where: dict[str, Any], field: str
) -> None:
    ep = APIEndpoint(name="ep", url=demo.url + "/echo", **where, **FAST)
    with pytest.raises(TemplateError) as info:
        await run([ep], {"present": 1})
    assert info.value.field == field
    assert info.value.placeholder == "missing"
    assert f"in {field} " in str(info.value)
    assert demo.log == []


async def test_a_reference_to_a_later_endpoint_waits_for_it(demo: DemoServer) -> None:
    endpoints = [
        APIEndpoint(name="early", url=demo.url + "/users/{late.id}", **FAST),
        APIEndpoint(name="late", url=demo.url + "/users/2", **FAST),
    ]
    for mode in (OrchestrationMode.PARALLEL, OrchestrationMode.SEQUENTIAL):
        demo.reset()
        result, _ = await run(endpoints, mode=mode)
        assert result["early"]["id"] == 2
        # the reference is an edge: `late` is sent first, then `early` with its result
        assert [r.path for r in demo.log] == ["/users/2", "/users/2"]
        assert list(result) == ["early", "late"]  # results stay in endpoint order


def test_template_references_that_close_a_cycle_are_refused() -> None:
    endpoints = [
        APIEndpoint(name="a", url="http://127.0.0.1:1/{b.id}"),
        APIEndpoint(name="b", url="http://127.0.0.1:1/x", params={"a": "{a.id}"}),
    ]
    config = APIOrchestrationConfig(endpoints=endpoints, mode=OrchestrationMode.HYBRID)
    with pytest.raises(ConfigError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        APIOrchestrator(config)


async def test_skipped_endpoint_never_fills_its_templates(demo: DemoServer) -> None:
    ep = APIEndpoint(
        name="maybe",
        url=demo.url + "/users/{missing}",
        condition=lambda ctx: "missing" in ctx,
        **FAST,
    )
    result, orchestrator = await run([ep], {"other": 1}, mode=OrchestrationMode.CONDITIONAL)
    assert result == {}
    assert orchestrator.last_run is not None
    assert orchestrator.last_run.records["maybe"].state is CallState.SKIPPED


async def test_filled_url_must_still_be_http(demo: DemoServer) -> None:
    ep = APIEndpoint(name="ep", url="{target}", **FAST)
    with pytest.raises(ConfigError, match=r"endpoint 'ep': url must be http\(s\) after templating"):
        await run([ep], {"target": "ftp://example.com"})


# -- unit: Context ---------------------------------------------------------------------------


def test_context_looks_in_input_then_results_then_run_input() -> None:
    ctx = Context({"a": "input"}, {"a": "result", "b": "result"}, {"a": "run", "b": "run", "c": 3})
    assert (ctx["a"], ctx["b"], ctx["c"]) == ("input", "result", 3)
    assert ctx.get("zzz") is None
    assert "c" in ctx and "zzz" not in ctx
    with pytest.raises(KeyError):
        ctx["zzz"]


def test_context_iterates_each_key_once_in_layer_order() -> None:
    ctx = Context({"a": 1}, {"b": 2, "a": 0}, {"c": 3, "b": 0})
    assert list(ctx) == ["a", "b", "c"]
    assert len(ctx) == 3
    assert dict(ctx) == {"a": 1, "b": 2, "c": 3}


def test_context_skips_non_mapping_inputs_and_keeps_attributes() -> None:
    ctx = Context([1, 2], {"r": 1}, "text")
    assert dict(ctx) == {"r": 1}
    assert ctx.input == [1, 2]
    assert ctx.run_input == "text"
    assert ctx.results == {"r": 1}


def test_context_with_input_equal_to_run_input_is_not_searched_twice() -> None:
    data = {"a": 1}
    ctx = Context(data, {}, data)
    assert len(ctx._layers()) == 2
    assert list(ctx) == ["a"]


def test_context_repr_names_results_not_values() -> None:
    text = repr(Context({"a": 1}, {"user": {"secret": "x"}}, None))
    assert text == "Context(input={'a': 1}, results=['user'])"


# -- unit: has_placeholders ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{x}", True),
        ("a/{x.y.0}/b", True),
        ("{{", True),  # literal braces still need rendering
        ("plain", False),
        ('{"a": 1}', False),
        ("{1abc}", False),
        ("{ x }", False),
        ({"k": "{x}"}, True),
        ({"{k}": "v"}, True),
        ({"k": {"deep": ["{x}"]}}, True),
        (["a", "{x}"], True),
        (("a", "{x}"), True),
        ({"k": "v"}, False),
        (None, False),
        (42, False),
    ],
)
def test_has_placeholders(value: Any, expected: bool) -> None:
    assert has_placeholders(value) is expected


# -- unit: lookup ----------------------------------------------------------------------------


def test_lookup_follows_mappings_lists_and_attributes() -> None:
    ctx = {
        "user": {"id": 7, "tags": ["a", "b", "c"]},
        "obj": SimpleNamespace(name="n", inner={"k": "v"}),
        "rows": [{"id": 1}, {"id": 2}],
    }
    assert lookup(ctx, "user") == {"id": 7, "tags": ["a", "b", "c"]}
    assert lookup(ctx, "user.id") == 7
    assert lookup(ctx, "user.tags.0") == "a"
    assert lookup(ctx, "user.tags.-1") == "c"
    assert lookup(ctx, "obj.name") == "n"
    assert lookup(ctx, "obj.inner.k") == "v"
    assert lookup(ctx, "rows.1.id") == 2


@pytest.mark.parametrize(
    "path", ["nope", "user.nope", "user.tags.3", "user.tags.-4", "user.tags.x", "user.id.more"]
)
def test_lookup_of_a_missing_path_is_the_missing_marker(path: str) -> None:
    from apiorch_nb._template import _MISSING

    assert lookup({"user": {"id": 7, "tags": ["a", "b", "c"]}}, path) is _MISSING


def test_lookup_distinguishes_none_from_missing() -> None:
    from apiorch_nb._template import _MISSING

    assert lookup({"a": None}, "a") is None
    assert lookup({"a": {"b": None}}, "a.b") is None
    assert lookup({"a": None}, "a.b") is _MISSING


# -- unit: render ----------------------------------------------------------------------------


def test_render_strings() -> None:
    ctx = {"id": 7, "name": "ada", "user": {"id": 3}}
    assert render("{id}", ctx, "ep", "url") == 7
    assert render("/users/{id}", ctx, "ep", "url") == "/users/7"
    assert render("{name}-{user.id}", ctx, "ep", "url") == "ada-3"
    assert render("{{id}}", ctx, "ep", "url") == "{id}"
    assert render("{{{id}}}", ctx, "ep", "url") == "{7}"
    assert render("}}{{", ctx, "ep", "url") == "}{"
    assert render("no braces", ctx, "ep", "url") == "no braces"


def test_render_containers_keeps_non_strings() -> None:
    ctx = {"id": 7, "k": "key"}
    value = {"a": "{id}", "{k}": [1, "{id}", None, {"b": "x{id}"}], "n": 1.5, "t": True}
    assert render(value, ctx, "ep", "body") == {
        "a": 7,
        "key": [1, 7, None, {"b": "x7"}],
        "n": 1.5,
        "t": True,
    }
    assert render(("{id}", "x"), ctx, "ep", "params") == (7, "x")
    assert render(None, ctx, "ep", "body") is None
    assert render(b"{id}", ctx, "ep", "body") == b"{id}"


def test_render_does_not_mutate_the_template() -> None:
    template = {"a": ["{id}"]}
    render(template, {"id": 1}, "ep", "body")
    assert template == {"a": ["{id}"]}


@pytest.mark.parametrize(
    ("value", "field", "placeholder"),
    [
        ("{missing}", "url", "missing"),
        ("/x/{user.nope}", "url", "user.nope"),
        ({"outer": {"inner": "{missing}"}}, "body.outer.inner", "missing"),
        ({"outer": ["{missing}"]}, "body.outer", "missing"),
    ],
)
def test_render_missing_raises_template_error(value: Any, field: str, placeholder: str) -> None:
    root = field.split(".")[0]
    with pytest.raises(TemplateError) as info:
        render(value, {"user": {"id": 1}}, "svc", root)
    err = info.value
    assert (err.endpoint, err.placeholder, err.field) == ("svc", placeholder, field)
    assert str(err) == (
        f"endpoint 'svc': placeholder {{{placeholder}}} in {field} is not filled by the input "
        "data or by an earlier endpoint's result"
    )


def test_none_in_a_url_is_an_error_but_json_null_elsewhere() -> None:
    ctx = {"id": None}
    with pytest.raises(TemplateError, match=r"placeholder \{id\} in url is None"):
        render("http://h/users/{id}", ctx, "user", "url")
    assert render("q={id}", ctx, "user", "params.q") == "q=null"
    assert render({"id": "{id}"}, ctx, "user", "body") == {"id": None}
