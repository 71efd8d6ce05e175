"""The `.http` cell language: parsing, annotations, templates, escaping, export, round trip."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apiorch_nb import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, CellSyntaxError
from apiorch_nb._template import render
from apiorch_nb.demo import DemoServer
from apiorch_nb.endpoint import DEFAULT_RETRY_ON
from apiorch_nb.errors import ConfigError
from apiorch_nb.httpfile import (
    CompiledHttp,
    HttpDocument,
    compile_http,
    load_http,
    parse_http,
    to_http,
)

BASE = "http://api.test"


def doc(text: str, *, first_line: int = 1) -> HttpDocument:
    return parse_http(textwrap.dedent(text).strip("\n"), first_line=first_line)


def compiled(text: str, **kwargs: Any) -> CompiledHttp:
    kwargs.setdefault("environ", {})
    return compile_http(doc(text, first_line=kwargs.pop("first_line", 1)), **kwargs)


def endpoints(text: str, **kwargs: Any) -> dict[str, APIEndpoint]:
    return {ep.name: ep for ep in compiled(text, **kwargs).endpoints}


def one(text: str, **kwargs: Any) -> APIEndpoint:
    (ep,) = compiled(text, **kwargs).endpoints
    return ep


def caret(exc: pytest.ExceptionInfo[CellSyntaxError]) -> tuple[int, int]:
    """(column, width) of the caret under the quoted source line."""
    last = str(exc.value).splitlines()[-1]
    marks = last[4:]
    return len(marks) - len(marks.lstrip(" ")), marks.count("^")


def fails(text: str, *, parse_only: bool = False, **kwargs: Any) -> pytest.ExceptionInfo[Any]:
    with pytest.raises(CellSyntaxError) as exc:
        if parse_only:
            doc(text, first_line=kwargs.get("first_line", 1))
        else:
            compiled(text, **kwargs)
    return exc


# -- structure -------------------------------------------------------------------------


def test_separators_split_requests_and_text_after_hashes_is_a_title() -> None:
    parsed = doc(
        f"""
        @base = {BASE}
        # a comment before the first request

        ### Log in
        POST {{{{base}}}}/auth

        ### users
        GET {{{{base}}}}/users
        #### more hashes still separate
        GET {{{{base}}}}/posts
        """
    )
    assert [r.title for r in parsed.requests] == ["Log in", "users", "more hashes still separate"]
    assert [r.name for r in parsed.requests] == ["request_1", "users", "request_3"]
    assert parsed.variables["base"].value == BASE
    assert parsed.variables["base"].line == 1


def test_name_annotation_beats_the_title() -> None:
    parsed = doc(
        f"""
        ### users
        # @name people
        GET {BASE}/users
        """
    )
    assert parsed.requests[0].name == "people"
    assert parsed.requests[0].title == "users"


def test_a_request_without_separator_at_the_top_is_request_1() -> None:
    assert doc(f"GET {BASE}/a").requests[0].name == "request_1"


def test_method_defaults_to_get_is_case_insensitive_and_http_version_is_dropped() -> None:
    parsed = doc(
        f"""
        {BASE}/a
        ###
        post {BASE}/b HTTP/1.1
        ###
        Delete {BASE}/c HTTP/2
        """
    )
    assert [(r.method, r.url) for r in parsed.requests] == [
        ("GET", f"{BASE}/a"),
        ("POST", f"{BASE}/b"),
        ("DELETE", f"{BASE}/c"),
    ]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_every_method_is_accepted(method: str) -> None:
    assert one(f"{method} {BASE}/x").method == method


def test_unknown_method_points_at_it() -> None:
    exc = fails(f"###\nFETCH {BASE}/x", parse_only=True)
    assert exc.value.line == 2
    assert "unknown method 'FETCH'" in exc.value.problem
    assert caret(exc) == (0, 5)


def test_a_line_that_is_no_request_line_is_an_error() -> None:
    exc = fails("GET /relative/path", parse_only=True)
    assert "absolute URL" in exc.value.problem
    assert caret(exc) == (4, len("/relative/path"))


def test_hash_and_slash_comments_are_ignored_everywhere_outside_the_body() -> None:
    ep = one(
        f"""
        # leading comment
        // another one
        GET {BASE}/x
        # a comment between headers
        Accept: application/json
        // and another
        X-Trace: 1
        """
    )
    assert ep.headers == {"Accept": "application/json", "X-Trace": "1"}
    assert ep.body is None


def test_query_continuation_lines_indented_or_not_become_params() -> None:
    ep = one(
        f"""
        GET {BASE}/search
            ?q=hello%20world
          &page=2&size=10
        &tag=a
        &tag=b
        &plus=a+b
        &flag
        Accept: */*
        """
    )
    assert ep.url == f"{BASE}/search"
    assert ep.params == {
        "q": "hello world",
        "page": "2",
        "size": "10",
        "tag": ["a", "b"],
        "plus": "a b",
        "flag": "",
    }
    assert ep.headers == {"Accept": "*/*"}


def test_query_in_the_url_itself_stays_in_the_url() -> None:
    assert one(f"GET {BASE}/x?a=1&b=2").url == f"{BASE}/x?a=1&b=2"


def test_headers_end_at_a_blank_line_and_the_body_runs_to_the_next_separator() -> None:
    parsed = doc(
        f"""
        POST {BASE}/notes
        Content-Type: text/plain

        first line
        # not a comment: part of the body
        @not = a variable


        ###
        GET {BASE}/x
        """
    )
    note = parsed.requests[0]
    assert note.body == "first line\n# not a comment: part of the body\n@not = a variable"
    assert note.body_line == 4
    assert parsed.variables == {}
    assert note.headers == [("Content-Type", "text/plain")]
    assert note.header_lines == [2]


def test_a_body_without_blank_line_before_it_is_an_error() -> None:
    exc = fails(f'POST {BASE}/x\n{{"a": 1}}', parse_only=True)
    assert exc.value.line == 2
    assert "blank line between the headers and the body" in exc.value.problem


def test_a_query_line_after_headers_is_explained() -> None:
    exc = fails(f"GET {BASE}/x\nAccept: */*\n?a=1", parse_only=True)
    assert exc.value.line == 3
    assert "directly below the request line" in exc.value.problem


def test_body_from_a_file_is_refused_clearly() -> None:
    exc = fails(f"POST {BASE}/x\nContent-Type: text/xml\n\n< ./payload.xml", parse_only=True)
    assert exc.value.line == 4
    assert "`< path`" in exc.value.problem
    # An XML body is not a file reference.
    assert one(f"POST {BASE}/x\nContent-Type: text/xml\n\n<root/>").body == "<root/>"


def test_variables_may_stand_between_requests() -> None:
    eps = endpoints(
        f"""
        @a = 1
        ###
        GET {BASE}/{{{{a}}}}/{{{{b}}}}
        ###
        @b = 2
        GET {BASE}/{{{{b}}}}
        """
    )
    assert [ep.url for ep in eps.values()] == [f"{BASE}/1/2", f"{BASE}/2"]


def test_duplicate_request_names_name_both_lines() -> None:
    exc = fails(
        f"""
        # @name users
        GET {BASE}/a
        ### users
        GET {BASE}/b
        """,
        parse_only=True,
    )
    assert exc.value.line == 3
    assert "'users' is already used on line 1" in exc.value.problem


def test_generated_names_can_clash_with_chosen_ones() -> None:
    exc = fails(f"# @name request_2\nGET {BASE}/a\n###\nGET {BASE}/b", parse_only=True)
    assert "already used on line 1" in exc.value.problem


def test_duplicate_variables_and_bad_variable_lines_are_errors() -> None:
    exc = fails("@a = 1\n@a = 2", parse_only=True)
    assert exc.value.line == 2
    assert exc.value.problem == "variable @a is already defined on line 1"
    exc = fails("@ = 1", parse_only=True)
    assert "`@name = value`" in exc.value.problem


def test_first_line_shifts_every_line_number() -> None:
    exc = fails(f"GET {BASE}/a\n###\n# @bogus 1\nGET {BASE}/b", parse_only=True, first_line=2)
    assert exc.value.line == 4
    parsed = doc(f"@x = 1\nGET {BASE}/a\nAccept: */*", first_line=2)
    assert parsed.variables["x"].line == 2
    assert parsed.requests[0].line == 3
    assert parsed.requests[0].header_lines == [4]


def test_annotations_must_come_before_the_request_line() -> None:
    exc = fails(f"GET {BASE}/a\n# @retry 2", parse_only=True)
    assert exc.value.line == 2
    assert "above the request line (line 1)" in exc.value.problem


def test_an_annotation_without_a_request_is_an_error() -> None:
    exc = fails(f"# @name lonely\n###\nGET {BASE}/a", parse_only=True)
    assert exc.value.line == 1
    assert "no request below it" in exc.value.problem


def test_a_comment_that_merely_mentions_an_at_sign_is_a_comment() -> None:
    assert one(f"# ask @alice about this\n# mail me@example.com\nGET {BASE}/a").name == "request_1"


# -- annotations -----------------------------------------------------------------------


def annotated(*lines: str, **kwargs: Any) -> APIEndpoint:
    eps = endpoints(
        "\n".join(["# @name first", f"GET {BASE}/first", "###", *lines, f"GET {BASE}/x"]),
        **kwargs,
    )
    return eps[next(name for name in eps if name != "first")]


def annotation_error(line: str, **kwargs: Any) -> pytest.ExceptionInfo[Any]:
    with pytest.raises(CellSyntaxError) as exc:
        annotated(line, **kwargs)
    assert exc.value.line == 4
    return exc


def test_unannotated_requests_keep_the_endpoint_defaults() -> None:
    ep = annotated()
    assert (ep.retry_count, ep.retry_delay, ep.timeout) == (3, 1.0, 30.0)
    assert ep.retry_on == frozenset(DEFAULT_RETRY_ON)
    assert (ep.rate_limit, ep.rate_limit_window, ep.burst_limit, ep.cache_ttl) == (None,) * 4
    assert ep.depends_on == []


def test_name_annotation_must_be_a_usable_name() -> None:
    exc = annotation_error("# @name two words")
    assert caret(exc)[0] == len("# @name ")
    assert "letters, digits" in exc.value.problem
    assert annotated("# @name my-request_2").name == "my-request_2"


@pytest.mark.parametrize("value", ["first", "first,", " first , "])
def test_depends_on_names_requests(value: str) -> None:
    assert annotated(f"# @depends_on {value}").depends_on == ["first"]


def test_depends_on_accepts_comma_and_space_separated_names() -> None:
    eps = endpoints(
        f"""
        # @name a
        GET {BASE}/a
        ###
        # @name b
        GET {BASE}/b
        ###
        # @name c
        # @depends_on a, b
        GET {BASE}/c
        ###
        # @name d
        # @depends_on b a
        GET {BASE}/d
        """
    )
    assert eps["c"].depends_on == ["a", "b"]
    assert eps["d"].depends_on == ["b", "a"]


def test_depends_on_an_unknown_name_points_at_it_and_suggests() -> None:
    exc = annotation_error("# @depends_on firts")
    assert "'firts', which is not a request in this cell" in exc.value.problem
    assert "did you mean first?" in exc.value.problem
    assert caret(exc) == (len("# @depends_on "), 5)


def test_depends_on_itself_is_an_error() -> None:
    exc = fails(f"# @name me\n# @depends_on me\nGET {BASE}/x")
    assert "names the request itself" in exc.value.problem
    assert (exc.value.line, caret(exc)) == (2, (len("# @depends_on "), 2))


@pytest.mark.parametrize(
    ("value", "count", "delay"),
    [("3", 3, 1.0), ("0", 0, 1.0), ("3 0.5", 3, 0.5), ("2 500ms", 2, 0.5), ("5 2s", 5, 2.0)],
)
def test_retry_sets_count_and_delay(value: str, count: int, delay: float) -> None:
    ep = annotated(f"# @retry {value}")
    assert (ep.retry_count, ep.retry_delay) == (count, delay)


@pytest.mark.parametrize(
    ("value", "column", "message"),
    [
        ("x", 9, "expects `@retry COUNT [DELAY]`"),
        ("3 soon", 11, "expects a delay like"),
        ("1 2 3", 9, "expects `@retry COUNT [DELAY]`"),
        ("-1", 9, "expects `@retry COUNT [DELAY]`"),
    ],
)
def test_retry_rejects_bad_values(value: str, column: int, message: str) -> None:
    exc = annotation_error(f"# @retry {value}")
    assert message in exc.value.problem
    assert caret(exc)[0] == column


@pytest.mark.parametrize(
    ("value", "statuses"),
    [("429, 503", {429, 503}), ("500 502", {500, 502}), ("418", {418}), ("off", set())],
)
def test_retry_on_takes_status_codes(value: str, statuses: set[int]) -> None:
    assert annotated(f"# @retry_on {value}").retry_on == frozenset(statuses)


@pytest.mark.parametrize(("value", "bad"), [("429, abc", "abc"), ("99", "99"), ("429 600", "600")])
def test_retry_on_rejects_what_is_no_status(value: str, bad: str) -> None:
    exc = annotation_error(f"# @retry_on {value}")
    assert f"got {bad!r}" in exc.value.problem
    assert caret(exc) == (len("# @retry_on ") + value.index(bad), len(bad))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), ("5s", 5.0), ("1.5", 1.5), ("500ms", 0.5), ("2m", 120.0), ("2 sec", 2.0)],
)
def test_timeout_takes_seconds_with_optional_units(value: str, seconds: float) -> None:
    assert annotated(f"# @timeout {value}").timeout == seconds


@pytest.mark.parametrize(
    ("value", "message"), [("0", "more than 0"), ("soon", "expects a timeout like"), ("", "")]
)
def test_timeout_rejects_bad_values(value: str, message: str) -> None:
    exc = annotation_error(f"# @timeout {value}".rstrip())
    assert message in exc.value.problem


@pytest.mark.parametrize(
    ("value", "limit", "window"),
    [
        ("10/min", 10, 60.0),
        ("10/m", 10, 60.0),
        ("5/s", 5, 1.0),
        ("5/sec", 5, 1.0),
        ("5/second", 5, 1.0),
        ("100/hour", 100, 3600.0),
        ("100/h", 100, 3600.0),
        ("2/minute", 2, 60.0),
        ("10/30s", 10, 30.0),
        ("10 / 2min", 10, 120.0),
        ("7", 7, None),
    ],
)
def test_rate_limit_sets_count_and_window(value: str, limit: int, window: float | None) -> None:
    ep = annotated(f"# @rate_limit {value}")
    assert (ep.rate_limit, ep.rate_limit_window) == (limit, window)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10/fortnight", "unknown unit 'fortnight'"),
        ("x/min", "expects `@rate_limit N/UNIT`"),
        ("0/min", "at least 1"),
        ("10/", "expects `@rate_limit N/UNIT`"),
    ],
)
def test_rate_limit_rejects_bad_values(value: str, message: str) -> None:
    exc = annotation_error(f"# @rate_limit {value}")
    assert message in exc.value.problem


def test_rate_limit_unit_error_points_at_the_unit() -> None:
    exc = annotation_error("# @rate_limit 10/fortnight")
    assert caret(exc) == (len("# @rate_limit 10/"), len("fortnight"))


def test_burst_sets_burst_limit_and_refuses_non_positive_numbers() -> None:
    assert annotated("# @burst 2").burst_limit == 2
    for bad in ("0", "two", "1.5"):
        assert "whole number" in annotation_error(f"# @burst {bad}").value.problem


@pytest.mark.parametrize(
    ("value", "ttl"), [("300", 300.0), ("5m", 300.0), ("1h", 3600.0), ("off", 0.0), ("0", 0.0)]
)
def test_cache_sets_cache_ttl(value: str, ttl: float) -> None:
    assert annotated(f"# @cache {value}").cache_ttl == ttl


def test_cache_rejects_what_is_no_duration() -> None:
    exc = annotation_error("# @cache forever")
    assert "expects a cache TTL like" in exc.value.problem
    assert caret(exc) == (len("# @cache "), len("forever"))


def is_premium(context: Any) -> bool:
    return True


def shape(value: Any) -> Any:
    return value


def rescue(exc: Exception) -> Any:
    return {"rescued": True}


class Helpers:
    label = "helper"

    @staticmethod
    def parse(response: Any) -> Any:
        return response.json()


NAMESPACE: dict[str, Any] = {
    "is_premium": is_premium,
    "shape": shape,
    "rescue": rescue,
    "helpers": Helpers(),
    "limit": 5,
}


@pytest.mark.parametrize(
    ("annotation", "field", "expected"),
    [
        ("condition is_premium", "condition", is_premium),
        ("transform_input shape", "transform_input", shape),
        ("transform_output shape", "transform_output", shape),
        ("parser helpers.parse", "response_parser", Helpers.parse),
        ("on_error rescue", "error_handler", rescue),
    ],
)
def test_callables_come_from_the_namespace_by_name(
    annotation: str, field: str, expected: Callable[..., Any]
) -> None:
    ep = annotated(f"# @{annotation}", namespace=NAMESPACE)
    assert getattr(ep, field) is expected


def test_a_missing_callable_is_an_error_with_a_suggestion() -> None:
    exc = annotation_error("# @condition is_premum", namespace=NAMESPACE)
    assert "'is_premum', which is not defined in the notebook" in exc.value.problem
    assert "did you mean is_premium?" in exc.value.problem
    assert caret(exc) == (len("# @condition "), len("is_premum"))


def test_a_callable_annotation_refuses_what_is_not_callable() -> None:
    exc = annotation_error("# @on_error limit", namespace=NAMESPACE)
    assert "'limit', a int, not a function" in exc.value.problem
    exc = annotation_error("# @parser helpers._secret", namespace=NAMESPACE)
    assert "has no attribute '_secret'" in exc.value.problem


def test_cell_text_is_never_evaluated() -> None:
    exc = annotation_error("# @condition (lambda c: True)", namespace=NAMESPACE)
    assert "not defined in the notebook" in exc.value.problem


def test_unknown_annotation_suggests_the_closest_one() -> None:
    exc = fails(f"# @retries 3\nGET {BASE}/x", parse_only=True)
    assert exc.value.line == 1
    assert "unknown annotation @retries; did you mean @retry?" in exc.value.problem
    assert caret(exc) == (2, len("@retries"))


def test_hyphenated_spellings_are_accepted() -> None:
    ep = annotated("# @depends-on first", "# @retry-on 503", "# @rate-limit 3/s")
    assert (ep.depends_on, ep.retry_on, ep.rate_limit) == (["first"], frozenset({503}), 3)


def test_rest_client_annotations_are_accepted_and_ignored() -> None:
    parsed = doc(
        f"""
        # @no-redirect
        # @no-cookie-jar
        # @no-log
        # @note careful
        # @prompt username Your name
        # @prompt password
        # @connection-timeout 2 m
        GET {BASE}/x
        """
    )
    assert "no-redirect" in parsed.requests[0].annotations
    ep = compile_http(parsed, environ={}).endpoints[0]
    assert (ep.timeout, ep.retry_count) == (30.0, 3)


def test_an_annotation_given_twice_names_the_first() -> None:
    exc = fails(f"# @retry 1\n# @retry 2\nGET {BASE}/x", parse_only=True)
    assert exc.value.line == 2
    assert "first on line 1" in exc.value.problem


def test_annotation_values_may_use_an_equals_sign() -> None:
    assert one(f"# @name = login\nGET {BASE}/x").name == "login"


# -- templates: requests in the cell -------------------------------------------------

LOGIN = f"""
# @name login
POST {BASE}/auth
"""


@pytest.mark.parametrize(
    ("reference", "placeholder"),
    [
        ("login.response.body.$.token", "{login.token}"),
        ("login.response.body.$.data.items[0].id", "{login.data.items.0.id}"),
        ("login.response.body.$['data'][\"id\"]", "{login.data.id}"),
        ("login.response.body.$.items[-1]", "{login.items.-1}"),
        ("login.response.body", "{login}"),
        ("login.response.body.$", "{login}"),
        ("login.response.body.*", "{login}"),
        ("login.token", "{login.token}"),
        ("login.data.items[0]", "{login.data.items.0}"),
        ("login", "{login}"),
        (" login.token ", "{login.token}"),
    ],
)
def test_references_to_requests_become_engine_placeholders(
    reference: str, placeholder: str
) -> None:
    eps = endpoints(LOGIN + f"###\n# @name user\nGET {BASE}/u\nX-Ref: {{{{{reference}}}}}")
    assert eps["user"].headers["X-Ref"] == placeholder


def test_a_reference_adds_an_implicit_dependency_after_the_explicit_ones() -> None:
    eps = endpoints(
        f"""
        # @name a
        GET {BASE}/a
        ###
        # @name login
        POST {BASE}/auth
        ###
        # @name user
        # @depends_on a
        GET {BASE}/u/{{{{login.id}}}}
        Authorization: Bearer {{{{login.response.body.$.token}}}}

        {{"again": "{{{{a.x}}}}"}}
        """
    )
    assert eps["user"].depends_on == ["a", "login"]
    assert eps["a"].depends_on == []


def test_a_reference_may_point_to_a_later_request() -> None:
    eps = endpoints(
        f"""
        # @name user
        GET {BASE}/u
        Authorization: Bearer {{{{login.token}}}}
        ###
        # @name login
        POST {BASE}/auth
        """
    )
    assert eps["user"].depends_on == ["login"]


def test_a_reference_cycle_is_an_error_naming_the_line_that_closes_it() -> None:
    exc = fails(
        f"""
        # @name a
        GET {BASE}/a?x={{{{b.x}}}}
        ###
        # @name b
        # @depends_on a
        GET {BASE}/b
        """
    )
    assert exc.value.line == 5
    assert "dependency cycle: a -> b -> a" in exc.value.problem
    assert caret(exc) == (len("# @depends_on "), 1)
    exc = fails(
        f"""
        # @name a
        GET {BASE}/a/{{{{b.x}}}}
        ###
        # @name b
        GET {BASE}/b/{{{{a.y}}}}
        """
    )
    assert exc.value.line == 5
    assert "dependency cycle: a -> b -> a" in exc.value.problem
    assert caret(exc) == (len(f"GET {BASE}/b/"), len("{{a.y}}"))


def test_response_headers_and_request_parts_cannot_be_referenced() -> None:
    for ref, message in [
        ("login.response.headers.X-Token", "response headers can't be referenced"),
        ("login.request.body.$.x", "parts of a request can't be referenced"),
        ("login.response", "expected {{login.response.body…}}"),
        ("login.response.body.//token", "XPath is not supported"),
        ("login.response.body.token", "only JSONPath"),
        ("login.response.body.$..token", "can't read the path"),
        ("login.response.body.$.a b", "can't be referenced"),
    ]:
        exc = fails(LOGIN + f"###\nGET {BASE}/u\nX: {{{{{ref}}}}}")
        assert message in exc.value.problem, ref
        assert exc.value.line == 5


def test_a_request_cannot_reference_itself() -> None:
    exc = fails(f"# @name me\nGET {BASE}/{{{{me.id}}}}")
    assert "can't use its own response" in exc.value.problem


# -- templates: the other sources, in order ---------------------------------------


def test_file_variables_are_substituted_and_may_reference_each_other() -> None:
    ep = one(
        """
        @host = api.test
        @base = http://{{host}}
        @users = {{base}}/users
        GET {{users}}/1
        """
    )
    assert ep.url == "http://api.test/users/1"


def test_a_variable_cycle_is_an_error_even_if_unused() -> None:
    exc = fails(f"@a = x{{{{b}}}}\n@b = {{{{a}}}}\nGET {BASE}/x")
    assert exc.value.line == 2
    assert "variable cycle: a -> b -> a" in exc.value.problem
    assert caret(exc) == (len("@b = "), len("{{a}}"))


def test_a_variable_holding_a_reference_adds_the_dependency_where_it_is_used() -> None:
    eps = endpoints(
        f"""
        @auth = Bearer {{{{login.token}}}}
        # @name login
        POST {BASE}/auth
        ###
        # @name user
        GET {BASE}/u
        Authorization: {{{{auth}}}}
        """
    )
    assert eps["user"].headers["Authorization"] == "Bearer {login.token}"
    assert eps["user"].depends_on == ["login"]
    assert eps["login"].depends_on == []


def test_input_keys_become_placeholders() -> None:
    ep = one(
        f"GET {BASE}/users/{{{{user_id}}}}?expand={{{{user.profile[0]}}}}",
        input_keys=["user_id", "user"],
    )
    assert ep.url == f"{BASE}/users/{{user_id}}?expand={{user.profile.0}}"


def test_namespace_values_are_substituted_by_type() -> None:
    namespace = {
        "s": "text",
        "i": 7,
        "f": 0.5,
        "b": True,
        "n": None,
        "d": {"k": [1, {"deep": "v"}]},
        "l": [1, "a"],
        "obj": Helpers(),
    }
    ep = one(
        f"""
        POST {BASE}/x
        Content-Type: text/plain

        {{{{s}}}}|{{{{i}}}}|{{{{f}}}}|{{{{b}}}}|{{{{n}}}}|{{{{l}}}}|{{{{d.k[1].deep}}}}|{{{{obj.label}}}}
        """,
        namespace=namespace,
    )
    assert render(ep.body, {}, "x", "body") == ('text|7|0.5|true|null|[1, "a"]|v|helper')


def test_namespace_paths_and_types_are_checked() -> None:
    exc = fails(f"GET {BASE}/{{{{d.missing}}}}", namespace={"d": {"k": 1}})
    assert "no field or item 'missing'" in exc.value.problem
    exc = fails(f"GET {BASE}/{{{{when}}}}", namespace={"when": object()})
    assert "is a object; a template takes str" in exc.value.problem


def test_environment_variables_are_the_last_source() -> None:
    assert one(f"GET {BASE}/{{{{REGION}}}}", environ={"REGION": "eu"}).url == f"{BASE}/eu"


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"request": True, "variable": "var", "input": True, "ns": "ns", "env": "env"}, "{x.id}"),
        ({"variable": "var", "input": True, "ns": "ns", "env": "env"}, "var"),
        ({"input": True, "ns": "ns", "env": "env"}, "{x}"),
        ({"ns": "ns", "env": "env"}, "ns"),
        ({"env": "env"}, "env"),
    ],
)
def test_the_earlier_source_wins_when_a_name_is_defined_twice(
    sources: dict[str, Any], expected: str
) -> None:
    lines = []
    if "variable" in sources:
        lines.append(f"@x = {sources['variable']}")
    if sources.get("request"):
        lines += ["# @name x", f"GET {BASE}/x", "###"]
    lines += [
        "# @name probe",
        f"GET {BASE}/probe",
        "X-Value: {{x.id}}" if sources.get("request") else "X-Value: {{x}}",
    ]
    eps = endpoints(
        "\n".join(lines),
        input_keys=["x"] if sources.get("input") else [],
        namespace={"x": sources["ns"]} if "ns" in sources else {},
        environ={"x": sources["env"]} if "env" in sources else {},
    )
    assert eps["probe"].headers["X-Value"] == expected


def test_an_unresolved_template_names_the_line_points_at_it_and_says_where_it_looked() -> None:
    exc = fails(f"GET {BASE}/x\nX-Trace: id-{{{{ trace_id }}}}", first_line=2)
    assert exc.value.line == 3
    assert exc.value.problem.startswith(
        "{{trace_id}} is not a request in this cell, a @variable, an input field, "
        "a notebook variable or an environment variable"
    )
    assert caret(exc) == (len("X-Trace: id-"), len("{{ trace_id }}"))
    assert str(exc.value).startswith("line 3: ")
    assert "X-Trace: id-{{ trace_id }}" in str(exc.value)


def test_an_unresolved_template_suggests_a_close_name() -> None:
    exc = fails(f"GET {BASE}/{{{{user_idd}}}}", input_keys=["user_id"])
    assert "did you mean {{user_id}}?" in exc.value.problem


def test_an_unresolved_template_in_a_body_names_the_body_line() -> None:
    exc = fails(f'POST {BASE}/x\n\n{{\n  "a": 1,\n  "b": "{{{{nope}}}}"\n}}')
    assert exc.value.line == 5
    assert caret(exc) == (len('  "b": "'), len("{{nope}}"))


def test_an_unclosed_template_is_literal_text() -> None:
    ep = one(f"POST {BASE}/x\nContent-Type: text/plain\n\nhello {{{{world")
    assert render(ep.body, {}, "x", "body") == "hello {{world"


# -- templates: system variables ------------------------------------------------------


def test_secret_becomes_a_placeholder_and_is_collected_never_its_value() -> None:
    result = compiled(
        f"GET {BASE}/x\n"
        "Authorization: Bearer {{$secret API_TOKEN}}\n"
        "X-Other: {{$secret OTHER}}",
        environ={"API_TOKEN": "s3cr3t-value"},
    )
    ep = result.endpoints[0]
    assert ep.headers["Authorization"] == "Bearer {$secrets.API_TOKEN}"
    assert result.secret_names == {"API_TOKEN", "OTHER"}
    assert "s3cr3t-value" not in repr(ep.__dict__)


def test_secret_needs_one_name() -> None:
    assert "{{$secret NAME}}" in fails(f"GET {BASE}/{{{{$secret}}}}").value.problem
    assert "{{$secret NAME}}" in fails(f"GET {BASE}/{{{{$secret a-b}}}}").value.problem


def test_process_env_reads_the_environment_or_fails() -> None:
    env = {"HOME_DIR": "/home/u"}
    assert one(f"GET {BASE}/{{{{$processEnv HOME_DIR}}}}", environ=env).url == f"{BASE}//home/u"
    assert one(f"GET {BASE}/{{{{$env HOME_DIR}}}}", environ=env).url == f"{BASE}//home/u"
    exc = fails(f"GET {BASE}/{{{{$processEnv MISSING}}}}", environ=env)
    assert "environment variable MISSING is not set" in exc.value.problem


def test_guid_timestamp_and_random_int_are_filled_at_compile_time() -> None:
    ep = one(
        f"GET {BASE}/x\nX-Id: {{{{$guid}}}}\nX-T: {{{{$timestamp}}}}\n"
        "X-Ago: {{$timestamp -1 d}}\nX-R: {{$randomInt 5 7}}"
    )
    uuid.UUID(ep.headers["X-Id"])
    assert abs(int(ep.headers["X-T"]) - time.time()) < 5
    assert abs(int(ep.headers["X-T"]) - int(ep.headers["X-Ago"]) - 86400) < 5
    assert ep.headers["X-R"] in {"5", "6"}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("$randomInt 5", "{{$randomInt MIN MAX}}"),
        ("$randomInt 5 5", "MIN < MAX"),
        ("$timestamp 1 fortnight", "UNIT one of"),
        ("$datetime iso8601", "unknown system variable $datetime"),
        ("", "empty template"),
    ],
)
def test_bad_system_variables_are_errors(expr: str, message: str) -> None:
    assert message in fails(f"GET {BASE}/x\nX: {{{{{expr}}}}}").value.problem


# -- escaping and bodies -----------------------------------------------------------------


def test_json_body_braces_are_escaped_so_rendering_gives_back_the_json() -> None:
    source = {"pattern": "a{b}c", "nested": {"tpl": "}{", "list": ["{", "}}"]}, "n": 1.5}
    ep = one(f"POST {BASE}/x\n\n{json.dumps(source)}")
    assert ep.body["pattern"] == "a{{b}}c"
    assert render(ep.body, {}, "x", "body") == source
    assert ep.headers == {"Content-Type": "application/json"}


def test_a_json_body_mixes_literal_braces_and_placeholders() -> None:
    ep = one(
        f"""
        POST {BASE}/x

        {{"id": {{{{user.id}}}}, "label": "user {{{{user.name}}}} {{x}}",
         "{{{{key}}}}": [{{{{n}}}}]}}
        """,
        input_keys=["user", "key"],
        namespace={"n": 3},
    )
    assert ep.body == {"id": "{user.id}", "label": "user {user.name} {{x}}", "{key}": [3]}
    context = {"user": {"id": 7, "name": "ada"}, "key": "k"}
    assert render(ep.body, context, "x", "body") == {"id": 7, "label": "user ada {x}", "k": [3]}


def test_substituted_values_are_json_escaped_inside_strings_and_raw_outside() -> None:
    ep = one(
        f"""
        POST {BASE}/x

        {{"quote": "{{{{q}}}}", "object": {{{{obj}}}}, "flag": {{{{flag}}}}}}
        """,
        namespace={"q": 'say "hi" \\ {now}', "obj": {"a": [1, 2]}, "flag": False},
    )
    assert render(ep.body, {}, "x", "body") == {
        "quote": 'say "hi" \\ {now}',
        "object": {"a": [1, 2]},
        "flag": False,
    }


def test_content_type_is_added_only_when_absent() -> None:
    assert one(f"POST {BASE}/x\n\n[1, 2]").headers == {"Content-Type": "application/json"}
    ep = one(f'POST {BASE}/x\ncontent-type: application/vnd.api+json\n\n{{"a": 1}}')
    assert ep.headers == {"content-type": "application/vnd.api+json"}
    assert ep.body == {"a": 1}


def test_non_json_bodies_stay_text_with_braces_escaped() -> None:
    ep = one(
        f'POST {BASE}/x\nContent-Type: text/plain\n\n{{"looks": "like json"}}\n{{{{n}}}}',
        namespace={"n": 1},
    )
    assert isinstance(ep.body, str)
    assert render(ep.body, {}, "x", "body") == '{"looks": "like json"}\n1'
    assert ep.headers == {"Content-Type": "text/plain"}


def test_invalid_json_stays_text_and_gets_no_content_type() -> None:
    ep = one(f"POST {BASE}/x\n\n{{not json}}")
    assert ep.body == "{{not json}}"
    assert ep.headers == {}


def test_a_declared_json_body_with_a_placeholder_at_top_level_keeps_the_placeholder() -> None:
    ep = one(
        f"POST {BASE}/x\nContent-Type: application/json\n\n{{{{payload}}}}", input_keys=["payload"]
    )
    assert ep.body == "{payload}"
    assert render(ep.body, {"payload": {"a": 1}}, "x", "body") == {"a": 1}


def test_literal_braces_in_url_params_and_headers_survive_rendering() -> None:
    ep = one(f"GET {BASE}/a{{b}}\n  ?q={{x}}\nX-T: {{}}", namespace={})
    assert render(ep.url, {}, "x", "url") == f"{BASE}/a{{b}}"
    assert render(ep.params, {}, "x", "params") == {"q": "{x}"}
    assert render(ep.headers, {}, "x", "headers") == {"X-T": "{}"}


def test_a_url_must_be_absolute_after_substitution() -> None:
    exc = fails("@base = localhost:8765\nGET {{base}}/x")
    assert "must start with http:// or https://" in exc.value.problem
    assert (exc.value.line, caret(exc)) == (2, (4, len("{{base}}/x")))
    assert one("GET {{host}}/x", input_keys=["host"]).url == "{host}/x"


def test_duplicate_headers_are_an_error() -> None:
    exc = fails(f"GET {BASE}/x\nAccept: a\naccept: b")
    assert exc.value.line == 3
    assert "first on line 2" in exc.value.problem


# -- a pasted REST Client file -------------------------------------------------------

REST_CLIENT_SAMPLE = """\
@hostname = api.example.com
@port = 8080
@host = {{hostname}}:{{port}}
@contentType = application/json
@createdAt = {{$datetime iso8601}}

# Get all users
GET https://{{host}}/api/users HTTP/1.1

###

// Create a user
# @name createUser
POST https://{{host}}/api/users HTTP/1.1
Content-Type: {{contentType}}
X-Request-Id: {{$guid}}

{
    "name": "John Doe",
    "tags": ["a", "b"],
    "meta": {"source": "rest-client"}
}

###

# @name getUser
# @no-redirect
GET https://{{host}}/api/users/{{createUser.response.body.$.id}}
    ?fields=name,email
    &expand=true
Accept: {{contentType}}
Authorization: Bearer {{$secret EXAMPLE_TOKEN}}

###
"""


def test_a_rest_client_file_compiles_unchanged() -> None:
    # $datetime is not supported, but the variable holding it is never used.
    result = compile_http(parse_http(REST_CLIENT_SAMPLE), environ={})
    names = [ep.name for ep in result.endpoints]
    assert names == ["request_1", "createUser", "getUser"]
    listing, create, get = result.endpoints
    assert listing.url == "https://api.example.com:8080/api/users"
    assert create.method == "POST"
    assert create.headers["Content-Type"] == "application/json"
    uuid.UUID(create.headers["X-Request-Id"])
    assert create.body == {
        "name": "John Doe",
        "tags": ["a", "b"],
        "meta": {"source": "rest-client"},
    }
    assert get.url == "https://api.example.com:8080/api/users/{createUser.id}"
    assert get.params == {"fields": "name,email", "expand": "true"}
    assert get.depends_on == ["createUser"]
    assert get.headers["Authorization"] == "Bearer {$secrets.EXAMPLE_TOKEN}"
    assert result.secret_names == {"EXAMPLE_TOKEN"}


def test_the_cell_from_the_issue_compiles() -> None:
    text = """\
@base = http://127.0.0.1:8765
@user_id = 7

### Log in
# @name login
POST {{base}}/auth
Content-Type: application/json

{"username": "{{username}}"}

###
# @name user
# @depends_on login
# @retry 3 0.5
# @retry_on 500, 503
# @timeout 5s
# @rate_limit 10/min
# @burst 2
# @cache 300
# @condition is_premium
GET {{base}}/users/{{user_id}}
    ?verbose=true
    &lang=en
Authorization: Bearer {{login.response.body.$.token}}
"""
    login, user = compile_http(
        parse_http(text, first_line=2), namespace={"username": "ada", **NAMESPACE}, environ={}
    ).endpoints
    assert login.body == {"username": "ada"}
    assert user.url == "http://127.0.0.1:8765/users/7"
    assert user.params == {"verbose": "true", "lang": "en"}
    assert (user.retry_count, user.retry_delay, user.retry_on) == (3, 0.5, frozenset({500, 503}))
    assert (user.timeout, user.rate_limit, user.rate_limit_window) == (5.0, 10, 60.0)
    assert (user.burst_limit, user.cache_ttl, user.condition) == (2, 300.0, is_premium)
    assert user.headers == {"Authorization": "Bearer {login.token}"}
    assert user.depends_on == ["login"]


# -- load_http -------------------------------------------------------------------------


def test_load_http_reads_paths_and_falls_back_to_text(tmp_path: Path) -> None:
    path = tmp_path / "requests.http"
    path.write_text(f"# @name a\nGET {BASE}/a\n", encoding="utf-8")
    assert load_http(path, environ={}).endpoints[0].name == "a"
    assert load_http(str(path), environ={}).endpoints[0].name == "a"
    rest = tmp_path / "requests.rest"
    rest.write_text(f"GET {BASE}/{{{{x}}}}\n", encoding="utf-8")
    assert load_http(str(rest), input_keys=["x"]).endpoints[0].url == f"{BASE}/{{x}}"
    assert load_http(f"GET {BASE}/b").endpoints[0].url == f"{BASE}/b"


def test_load_http_reports_a_missing_file_but_reads_a_url_ending_in_http_as_text(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.http"):
        load_http(str(tmp_path / "missing.http"))
    assert load_http(f"{BASE}/guide.http").endpoints[0].url == f"{BASE}/guide.http"
    assert load_http(f"GET {BASE}/guide.http").endpoints[0].method == "GET"


# -- export ------------------------------------------------------------------------------


def test_to_http_writes_annotations_placeholders_and_json() -> None:
    eps = [
        APIEndpoint(name="login", url=f"{BASE}/auth", method="POST", body={"user": "{name}"}),
        APIEndpoint(
            name="user",
            url=f"{BASE}/users/{{login.id}}",
            params={"q": "a b&c", "n": 2, "on": True, "many": ["x", "y"], "skip": None},
            headers={"Authorization": "Bearer {login.token}", "X-Brace": "{{literal}}"},
            depends_on=["login"],
            retry_count=2,
            retry_delay=0.25,
            retry_on=(503,),
            timeout=7.5,
            rate_limit=10,
            rate_limit_window=60,
            burst_limit=2,
            cache_ttl=0,
            condition=is_premium,
            transform_output=lambda r: r,
        ),
    ]
    text = to_http(eps, variables={"base": BASE})
    assert text == textwrap.dedent(
        """\
        @base = http://api.test

        ### login
        # @name login
        POST {{base}}/auth
        Content-Type: application/json

        {
          "user": "{{name}}"
        }

        ### user
        # @name user
        # @depends_on login
        # @retry 2 0.25s
        # @retry_on 503
        # @timeout 7.5s
        # @rate_limit 10/60s
        # @burst 2
        # @cache off
        # @condition is_premium
        # @transform_output: <lambda> (not exportable)
        GET {{base}}/users/{{login.id}}
            ?q=a%20b%26c
            &n=2
            &on=true
            &many=x
            &many=y
        Authorization: Bearer {{login.token}}
        X-Brace: {literal}
        """
    )


def test_to_http_never_writes_a_credential() -> None:
    ep = APIEndpoint(
        name="x",
        url="https://user:pw@api.test/x?api_key=abc123&page=1",
        params={"access_token": "tok-123", "ok": "1", "token": "{auth.token}"},
        headers={
            "Authorization": "Bearer sk-live-123",
            "X-API-Key": "k-999",
            "Cookie": "session=abc",
            "X-Secret-Ref": "{$secrets.MINE}",
            "Accept": "application/json",
        },
        method="POST",
        body={"user": "ada", "password": "hunter2", "nested": {"client_secret": 42}},
    )
    text = to_http([ep])
    for credential in (
        "pw",
        "abc123",
        "tok-123",
        "sk-live-123",
        "k-999",
        "session=abc",
        "hunter2",
        "42",
    ):
        assert credential not in text, credential
    assert "Authorization: {{$secret AUTHORIZATION}}" in text
    assert "X-API-Key: {{$secret X_API_KEY}}" in text
    assert "X-Secret-Ref: {{$secret MINE}}" in text
    assert "&access_token={{$secret ACCESS_TOKEN}}" in text  # the URL has a query already
    assert "&token={{auth.token}}" in text
    assert "https://{{$secret URL_USERINFO}}@api.test/x?api_key={{$secret API_KEY}}&page=1" in text
    assert '"password": "{{$secret PASSWORD}}"' in text
    result = compile_http(parse_http(text), input_keys=["auth"], environ={})
    assert result.secret_names == {
        "AUTHORIZATION",
        "X_API_KEY",
        "COOKIE",
        "MINE",
        "ACCESS_TOKEN",
        "URL_USERINFO",
        "API_KEY",
        "PASSWORD",
        "CLIENT_SECRET",
    }


def test_to_http_refuses_what_http_cannot_express() -> None:
    with pytest.raises(ConfigError, match="can't be exported"):
        to_http([APIEndpoint(name="two words", url=f"{BASE}/x")])
    with pytest.raises(ConfigError, match="literal text"):
        to_http([APIEndpoint(name="x", url=f"{BASE}/x", headers={"X": "{{{{a}}}}"})])
    with pytest.raises(ConfigError, match="line break"):
        to_http([APIEndpoint(name="x", url=f"{BASE}/x", headers={"X": "a\nb"})])
    with pytest.raises(ConfigError, match="###"):
        to_http([APIEndpoint(name="x", url=f"{BASE}/x", method="POST", body="a\n### b")])
    with pytest.raises(ConfigError, match="binary"):
        to_http([APIEndpoint(name="x", url=f"{BASE}/x", method="POST", body=b"\xff")])


def test_to_http_writes_tiny_and_odd_durations_it_can_read_back() -> None:
    ep = APIEndpoint(name="x", url=f"{BASE}/x", retry_delay=1e-05, timeout=0.1 + 0.2)
    again = compile_http(parse_http(to_http([ep])), environ={}).endpoints[0]
    assert (again.retry_delay, again.timeout) == (ep.retry_delay, ep.timeout)


# -- round trip --------------------------------------------------------------------------

COMPARED = (
    *("name", "method", "url", "params", "headers", "body"),
    *("retry_count", "retry_delay", "retry_on", "timeout"),
    *("rate_limit", "rate_limit_window", "burst_limit", "cache_ttl", "depends_on"),
    *("response_parser", "transform_input", "transform_output", "condition", "error_handler"),
)


def assert_round_trip(eps: list[APIEndpoint], **kwargs: Any) -> None:
    text = to_http(eps)
    again = compile_http(parse_http(text), environ={}, **kwargs).endpoints
    assert len(again) == len(eps), text
    for before, after in zip(eps, again, strict=True):
        for field in COMPARED:
            left, right = getattr(before, field), getattr(after, field)
            if field == "retry_on":
                left, right = frozenset(left), frozenset(right)
            assert left == right, f"{before.name}.{field}: {left!r} != {right!r}\n{text}"


def test_round_trip_of_a_hand_made_set() -> None:
    eps = [
        APIEndpoint(
            name="login",
            url=f"{BASE}/auth",
            method="POST",
            body={"user": "{who}"},
            headers={"Content-Type": "application/json"},
        ),
        APIEndpoint(
            name="user",
            url=f"{BASE}/users/{{login.id}}/{{{{raw}}}}",
            params={"q": "a b+c&d=e", "tags": ["x", "y"], "tpl": "{login.page}", "br": "{{}}"},
            headers={"Authorization": "Bearer {login.token}", "X-Key": "{$secrets.API_KEY}"},
            depends_on=["login"],
            retry_count=0,
            retry_on=(),
            timeout=2.5,
            rate_limit=3,
            rate_limit_window=0.5,
            cache_ttl=90,
            condition=is_premium,
            response_parser=Helpers.parse,
            error_handler=rescue,
        ),
        APIEndpoint(
            name="notes",
            url="{base_url}/notes",
            method="PUT",
            headers={"Content-Type": "text/plain"},
            body="line {who}\n  indented {{literal}}\nlast",
            transform_input=shape,
            transform_output=shape,
            burst_limit=4,
            rate_limit=100,
        ),
        APIEndpoint(
            name="bulk",
            url=f"{BASE}/bulk",
            method="PATCH",
            headers={"Content-Type": "application/json"},
            body=[{"id": "{login.id}", "tpl": "{{x}}", "n": 1.25, "ok": None}, 'q"uote\\', 3],
            depends_on=["user", "login"],
        ),
    ]
    namespace = {"is_premium": is_premium, "parse": Helpers.parse, "rescue": rescue, "shape": shape}
    assert_round_trip(eps, namespace=namespace, input_keys=["who", "base_url"])


def _literal(rng: random.Random) -> str:
    """Engine-form literal text: braces escaped, never two opening braces in a row."""
    alphabet = "abc xyz-_./:;,!?=&+%#\"'\\é{}"
    out, last = [], ""
    for _ in range(rng.randint(0, 8)):
        char = rng.choice(alphabet)
        if char == "{" and last == "{":
            char = "a"
        out.append(char)
        last = char
    return "".join(out).replace("{", "{{").replace("}", "}}")


def _template(rng: random.Random, refs: list[str]) -> str:
    parts = [_literal(rng)]
    for _ in range(rng.randint(0, 2)):
        if refs and rng.random() < 0.5:
            parts.append("{" + rng.choice(refs) + "." + rng.choice(["id", "data.0", "a-b"]) + "}")
        else:
            parts.append("{" + rng.choice(["who", "page", "inp.deep"]) + "}")
        parts.append(_literal(rng))
    return "".join(parts).strip()


def _generated(seed: int) -> list[APIEndpoint]:
    rng = random.Random(seed)
    functions = [is_premium, shape, rescue, Helpers.parse]
    eps: list[APIEndpoint] = []
    for index in range(rng.randint(1, 5)):
        earlier = [ep.name for ep in eps]
        refs = rng.sample(earlier, rng.randint(0, len(earlier)))
        method = rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        headers = {f"X-H{i}": _template(rng, refs) or "v" for i in range(rng.randint(0, 3))}
        body: Any = None
        kind = rng.choice(["none", "json", "text"])
        if kind == "json":
            headers["Content-Type"] = "application/json"
            body = {
                _literal(rng) or "k": _template(rng, refs),
                "n": rng.choice([1, 2.5, -3, True, None]),
                "list": [_template(rng, refs), {"inner": _literal(rng)}],
                "exact": "{" + (refs[0] + ".id" if refs else "who") + "}",
            }
        elif kind == "text":
            headers["Content-Type"] = "text/plain"
            body = "\n".join(
                ("t" + _template(rng, refs)).rstrip() for _ in range(rng.randint(1, 3))
            )
        extra = {
            "retry_count": rng.choice([0, 1, 3, 5]),
            "retry_delay": rng.choice([0.0, 0.1, 1.0, 2.75]),
            "retry_on": rng.choice([DEFAULT_RETRY_ON, (), (429,), (500, 503)]),
            "timeout": rng.choice([30.0, 0.5, 12]),
            "rate_limit": rng.choice([None, 1, 60]),
            "burst_limit": rng.choice([None, 2]),
            "cache_ttl": rng.choice([None, 0, 1.5, 600]),
        }
        if extra["rate_limit"] is not None:
            extra["rate_limit_window"] = rng.choice([None, 1.0, 60.0, 0.25])
        for field in (
            "condition",
            "transform_input",
            "transform_output",
            "response_parser",
            "error_handler",
        ):
            if rng.random() < 0.3:
                extra[field] = rng.choice(functions)
        eps.append(
            APIEndpoint(
                name=f"ep{index}" if rng.random() < 0.5 else f"step-{index}_x",
                url=f"{BASE}/{index}/" + _template(rng, refs).replace(" ", "%20").replace("\n", ""),
                method=method,
                params={
                    _literal(rng) or "p": _template(rng, refs) for _ in range(rng.randint(0, 3))
                },
                headers=headers,
                body=body,
                depends_on=refs,
                **extra,
            )
        )
    return eps


@pytest.mark.parametrize("seed", range(40))
def test_round_trip_of_generated_endpoints(seed: int) -> None:
    namespace = {f.__name__: f for f in (is_premium, shape, rescue, Helpers.parse)}
    assert_round_trip(_generated(seed), namespace=namespace, input_keys=["who", "page", "inp"])


# -- the notebook layer's rule: no heavy imports ----------------------------------------


def test_importing_httpfile_loads_no_notebook_or_dataframe_library() -> None:
    code = (
        "import sys, apiorch_nb.httpfile;"
        "print([m for m in ('IPython', 'pandas', 'plotly', 'ipywidgets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_all_is_sorted_and_resolvable() -> None:
    import apiorch_nb.httpfile as module

    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None


# -- end to end against the demo server ------------------------------------------------


async def test_a_compiled_login_then_user_cell_sends_the_token_it_received(
    demo: DemoServer,
) -> None:
    cell = f"""\
@base = {demo.url}

### Log in
# @name login
POST {{{{base}}}}/auth
Content-Type: application/json

{{"username": "{{{{username}}}}"}}

###
# @name user
# @retry 0
GET {{{{base}}}}/user
Authorization: Bearer {{{{login.response.body.$.token}}}}
"""
    result = compile_http(parse_http(cell, first_line=2), namespace={"username": "ada"}, environ={})
    config = APIOrchestrationConfig(endpoints=result.endpoints, mode="hybrid")
    async with APIOrchestrator(config) as orchestrator:
        data = await orchestrator.execute()
    assert data["login"] == {"token": "demo-token-ada", "username": "ada"}
    assert data["user"] == {"id": 1, "username": "ada"}
    (auth,) = demo.requests(path="/auth")
    assert auth.json == {"username": "ada"}
    assert auth.headers["Content-Type"] == "application/json"
    (seen,) = demo.requests(path="/user")
    assert seen.headers["Authorization"] == "Bearer demo-token-ada"
    assert auth.seq < seen.seq


async def test_a_json_body_with_braces_and_placeholders_arrives_intact(demo: DemoServer) -> None:
    cell = f"""\
# @name probe
POST {demo.url}/echo?x={{{{n}}}}
X-Template: {{literal}}

{{"pattern": "a{{b}}c", "n": {{{{n}}}}, "who": "{{{{who}}}}"}}
"""
    result = compile_http(
        parse_http(cell), namespace={"who": 'o"brien'}, input_keys=["n"], environ={}
    )
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=result.endpoints)) as orch:
        await orch.execute({"n": 5})
    (seen,) = demo.requests(path="/echo")
    assert seen.json == {"pattern": "a{b}c", "n": 5, "who": 'o"brien'}
    assert seen.query == {"x": "5"}
    assert seen.headers["X-Template"] == "{literal}"


async def test_a_lone_closing_brace_arrives_intact(demo: DemoServer) -> None:
    cell = f'POST {demo.url}/echo\n\n{{"smile": ":}}"}}\n'
    result = compile_http(parse_http(cell), environ={})
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=result.endpoints)) as orch:
        await orch.execute()
    assert demo.requests(path="/echo")[0].json == {"smile": ":}"}
