"""Construction-time validation of `APIEndpoint` and `APIOrchestrationConfig`, reprs, defaults.

Nothing here touches the network: a configuration that can never work is refused when it
is built, with a message that names the field and the value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from apiorch_nb import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    OrchestrationMode,
)
from apiorch_nb.endpoint import DEFAULT_RETRY_ON

URL = "http://127.0.0.1:1/x"


def ep(name: str = "a", **kwargs: Any) -> APIEndpoint:
    return APIEndpoint(name=name, url=kwargs.pop("url", URL), **kwargs)


# -- defaults -----------------------------------------------------------------------------


ENDPOINT_DEFAULTS: dict[str, Any] = {
    "method": "GET",
    "headers": {},
    "params": {},
    "body": None,
    "timeout": 30.0,
    "retry_count": 3,
    "retry_delay": 1.0,
    "retry_on": frozenset({429, 500, 502, 503, 504}),
    "rate_limit": None,
    "burst_limit": None,
    "response_parser": None,
    "transform_input": None,
    "transform_output": None,
    "condition": None,
    "error_handler": None,
    "depends_on": [],
    "rate_limit_window": None,  # falls back to the config's
    "cache_ttl": None,  # falls back to the config's
}

CONFIG_DEFAULTS: dict[str, Any] = {
    "endpoints": [],
    "mode": OrchestrationMode.SEQUENTIAL,
    "max_concurrent": 10,
    "total_timeout": None,
    "fail_fast": False,
    "global_rate_limit": None,
    "rate_limit_window": 60.0,
    "error_threshold": None,
    "circuit_breaker_threshold": 5,
    "circuit_breaker_timeout": 60.0,
    "cache_ttl": None,
    "cache_key_generator": None,
    "metrics_enabled": True,
    "log_requests": False,
    "log_responses": False,
    "result_merger": None,
}


def test_every_endpoint_field_has_a_tested_default() -> None:
    e = APIEndpoint(name="a", url=URL)
    assert {f.name for f in dataclasses.fields(APIEndpoint)} - {"name", "url"} == set(
        ENDPOINT_DEFAULTS
    )
    assert {name: getattr(e, name) for name in ENDPOINT_DEFAULTS} == ENDPOINT_DEFAULTS
    assert frozenset(DEFAULT_RETRY_ON) == ENDPOINT_DEFAULTS["retry_on"]


def test_every_config_field_has_a_tested_default() -> None:
    c = APIOrchestrationConfig()
    assert {f.name for f in dataclasses.fields(APIOrchestrationConfig)} == set(CONFIG_DEFAULTS)
    assert {name: getattr(c, name) for name in CONFIG_DEFAULTS} == CONFIG_DEFAULTS
    assert c.mode is OrchestrationMode.SEQUENTIAL


def test_mutable_defaults_are_not_shared_between_endpoints() -> None:
    a, b = ep("a"), ep("b")
    a.headers["X"] = "1"
    a.params["p"] = 1
    a.depends_on.append("z")
    assert b.headers == {} and b.params == {} and b.depends_on == []


def test_method_is_uppercased_and_depends_on_string_becomes_a_list() -> None:
    e = ep("b", method="post", depends_on="a")
    assert e.method == "POST"
    assert e.depends_on == ["a"]


def test_retry_on_becomes_a_set_of_ints() -> None:
    assert ep(retry_on=[500, "503"]).retry_on == frozenset({500, 503})


# -- modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(OrchestrationMode))
def test_mode_strings_are_accepted_in_any_case(mode: OrchestrationMode) -> None:
    assert APIOrchestrationConfig(mode=mode.value).mode is mode
    assert APIOrchestrationConfig(mode=mode.value.upper()).mode is mode
    assert APIOrchestrationConfig(mode=mode).mode is mode


def test_parallel_string_mode_is_the_enum_member() -> None:
    c = APIOrchestrationConfig(endpoints=[ep()], mode="parallel")
    assert c.mode is OrchestrationMode.PARALLEL
    assert c.mode == "parallel"  # a str enum: compares equal to its value


@pytest.mark.parametrize("bad", ["paralel", "", 3, None])
def test_unknown_mode_names_the_valid_modes(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        APIOrchestrationConfig(mode=bad)
    message = str(info.value)
    assert "mode must be one of" in message
    assert repr(bad) in message
    for m in OrchestrationMode:
        assert m.value in message


# -- endpoint validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", -1),
        ("timeout", 0),
        ("timeout", math.nan),
        ("timeout", "30"),
        ("retry_delay", -0.5),
        ("retry_delay", math.nan),
        ("retry_count", -1),
        ("retry_count", 1.5),
        ("retry_count", True),
        ("rate_limit", 0),
        ("rate_limit", -10),
        ("burst_limit", 0),
        ("burst_limit", 2.5),
    ],
)
def test_bad_endpoint_numbers_name_endpoint_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        ep("svc", **{field: value})
    message = str(info.value)
    assert "'svc'" in message
    assert field in message
    assert repr(value) in message


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ep(timeout=-1)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "api.example.com/users", "file:///etc/passwd", "", "//host/x"],
)
def test_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ConfigError, match=r"url must start with http:// or https://"):
        ep("svc", url=url)


def test_url_may_start_with_a_placeholder() -> None:
    assert ep(url="{base}/users").url == "{base}/users"


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"method must be one of .*'GET'.*got 'FETCH'"):
        ep(method="fetch")


@pytest.mark.parametrize("name", ["", "  ", " padded", None, 3])
def test_endpoint_name_must_be_a_clean_non_empty_string(name: Any) -> None:
    with pytest.raises(ConfigError, match="endpoint name must be a non-empty string"):
        APIEndpoint(name=name, url=URL)


@pytest.mark.parametrize(
    "field",
    ["response_parser", "transform_input", "transform_output", "condition", "error_handler"],
)
def test_endpoint_callables_must_be_callable(field: str) -> None:
    with pytest.raises(ConfigError, match=rf"endpoint 'svc': {field} must be callable, got 'x'"):
        ep("svc", **{field: "x"})


@pytest.mark.parametrize("retry_on", [["five hundred"], None, 503])
def test_retry_on_must_be_status_codes(retry_on: Any) -> None:
    with pytest.raises(ConfigError, match=r"endpoint 'svc': retry_on"):
        ep("svc", retry_on=retry_on)


def test_endpoint_may_not_depend_on_itself() -> None:
    with pytest.raises(ConfigError, match=r"endpoint 'a': depends_on names the endpoint itself"):
        ep("a", depends_on=["a"])


# -- config validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_concurrent", 0),
        ("max_concurrent", -1),
        ("max_concurrent", 2.5),
        ("total_timeout", 0),
        ("total_timeout", -5.0),
        ("total_timeout", math.nan),
        ("global_rate_limit", 0),
        ("global_rate_limit", -100),
        ("rate_limit_window", 0),
        ("rate_limit_window", -60),
        ("error_threshold", -0.1),
        ("circuit_breaker_threshold", 0),
        ("circuit_breaker_threshold", -3),
        ("circuit_breaker_timeout", -1.0),
        ("cache_ttl", 0),
        ("cache_ttl", -300),
    ],
)
def test_bad_config_numbers_name_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        APIOrchestrationConfig(endpoints=[ep()], **{field: value})
    message = str(info.value)
    assert message.startswith("config:")
    assert field in message
    assert repr(value) in message


@pytest.mark.parametrize("value", [1.01, 10, 100])
def test_error_threshold_above_one_is_refused_as_a_share(value: float) -> None:
    with pytest.raises(ConfigError, match=r"error_threshold is a share between 0 and 1"):
        APIOrchestrationConfig(endpoints=[ep()], error_threshold=value)


@pytest.mark.parametrize("value", [0, 0.0, 0.1, 1, 1.0])
def test_error_threshold_between_zero_and_one_is_accepted(value: float) -> None:
    assert APIOrchestrationConfig(endpoints=[ep()], error_threshold=value).error_threshold == value


@pytest.mark.parametrize("field", ["cache_key_generator", "result_merger"])
def test_config_callables_must_be_callable(field: str) -> None:
    with pytest.raises(ConfigError, match=rf"config: {field} must be callable, got 42"):
        APIOrchestrationConfig(endpoints=[ep()], **{field: 42})


def test_endpoints_must_be_apiendpoint_objects() -> None:
    with pytest.raises(ConfigError, match=r"endpoints must be APIEndpoint objects, got \('a', "):
        APIOrchestrationConfig(endpoints=[("a", URL)])  # type: ignore[list-item]


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"endpoint name 'users' is used twice"):
        APIOrchestrationConfig(endpoints=[ep("users"), ep("posts"), ep("users")])


def test_unknown_dependency_names_it_and_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        APIOrchestrationConfig(endpoints=[ep("posts", depends_on=["auth_service"]), ep("users")])
    message = str(info.value)
    assert "endpoint 'posts'" in message
    assert "['auth_service']" in message
    assert "known: ['posts', 'users']" in message


def test_two_node_cycle_is_named() -> None:
    with pytest.raises(ConfigError, match=r"depends_on has a cycle: a -> b -> a$"):
        APIOrchestrationConfig(endpoints=[ep("a", depends_on=["b"]), ep("b", depends_on=["a"])])


def test_longer_cycle_names_its_whole_path_and_not_the_way_in() -> None:
    endpoints = [
        ep("entry", depends_on=["x"]),
        ep("x", depends_on=["y"]),
        ep("y", depends_on=["z"]),
        ep("z", depends_on=["x"]),
    ]
    with pytest.raises(ConfigError) as info:
        APIOrchestrationConfig(endpoints=endpoints)
    assert str(info.value) == "depends_on has a cycle: x -> y -> z -> x"


def test_diamond_is_not_a_cycle() -> None:
    endpoints = [
        ep("a"),
        ep("b", depends_on=["a"]),
        ep("c", depends_on=["a"]),
        ep("d", depends_on=["b", "c"]),
    ]
    assert len(APIOrchestrationConfig(endpoints=endpoints, mode="hybrid").endpoints) == 4


def test_orchestrator_needs_a_config() -> None:
    with pytest.raises(ConfigError, match="APIOrchestrator needs an APIOrchestrationConfig"):
        APIOrchestrator({"endpoints": []})  # type: ignore[arg-type]


# -- reprs hide secrets ---------------------------------------------------------------------


def test_endpoint_repr_masks_auth_headers_and_token_params() -> None:
    e = APIEndpoint(
        name="user_service",
        url="https://api.example.com/users?token=url-secret&page=2",
        headers={
            "Authorization": "Bearer header-secret",
            "API-Key": "key-secret",
            "x-api-key": "lower-secret",
            "Accept": "application/json",
        },
        params={"access_token": "param-secret", "apikey": "other-secret", "limit": 100},
        body={"password": "body-secret", "amount": 5},
    )
    text = repr(e)
    for secret in (
        "url-secret",
        "header-secret",
        "key-secret",
        "lower-secret",
        "param-secret",
        "other-secret",
        "body-secret",
    ):
        assert secret not in text
    assert "'Authorization': '[REDACTED]'" in text
    assert "'API-Key': '[REDACTED]'" in text
    assert "'access_token': '[REDACTED]'" in text
    assert "'Accept': 'application/json'" in text
    assert "'limit': 100" in text
    assert "page=2" in text
    assert "'amount': 5" in text
    assert text.startswith("APIEndpoint(name='user_service', method='GET', ")


def test_config_repr_shows_endpoints_masked() -> None:
    e = ep("svc", headers={"Authorization": "Bearer hidden-value"})
    text = repr(APIOrchestrationConfig(endpoints=[e], mode="parallel"))
    assert "hidden-value" not in text
    assert "[REDACTED]" in text
    assert "OrchestrationMode.PARALLEL" in text or "parallel" in text


def test_masking_does_not_change_what_is_sent() -> None:
    e = ep(headers={"Authorization": "Bearer t"}, params={"token": "abc"})
    repr(e)
    assert e.headers == {"Authorization": "Bearer t"}
    assert e.params == {"token": "abc"}
