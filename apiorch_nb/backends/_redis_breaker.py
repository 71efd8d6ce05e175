"""`RedisBreakerStore`: one circuit per endpoint for every process using the same Redis.

State lives in a hash ``{prefix}:cb:{endpoint}`` (consecutive failures, and the Redis
``TIME`` until which the circuit is open) plus a probe lease ``{prefix}:cb:{endpoint}:probe``
taken with ``SET NX PX``: once the open time has passed, the first caller in any process
that takes the lease is the one probe, and everyone else is refused until its outcome is
recorded. A process that dies holding the lease frees it after `probe_ttl`. Each decision
is one Lua script, so two processes can never both trip, both probe or lose a failure.

The local `CircuitBreaker` objects stay the engine's view: after every script the store
copies the shared state into them (`CircuitBreaker._adopt`), so ``breaker.state``,
``failure_count`` and the run records read what all processes did, as of this process's
last call.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from .._redact import redact_url
from ..breaker import BreakerOutcome, BreakerState, CircuitBreaker
from ..errors import CircuitOpenError, ConfigError
from ._redis_conn import LUA_NOW, RedisConnector

logger = logging.getLogger("apiorch_nb")

#: KEYS: state hash, probe lease. ARGV: token, lease_ms.
#: Returns {state, failures, open_for_us, 1 if this caller is the probe}.
_BEFORE = (
    LUA_NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'failures', 'open_until')
local failures = tonumber(h[1]) or 0
local open_until = tonumber(h[2]) or 0
if open_until == 0 then return {'closed', failures, 0, 0} end
if now < open_until then return {'open', failures, open_until - now, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'half_open', failures, 0, 1}
end
return {'half_open', failures, 0, 0}
"""
)

#: KEYS: state hash, probe lease. ARGV: outcome, threshold, timeout_us, token.
#: Mirrors CircuitBreaker.record_*; returns {state, failures, open_for_us, 1 if a probe is out}.
_RECORD = (
    LUA_NOW
    + """
local outcome = ARGV[1]
if outcome == 'success' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'closed', 0, 0, 0}
end
local h = redis.call('HMGET', KEYS[1], 'failures', 'open_until')
local failures = tonumber(h[1]) or 0
local open_until = tonumber(h[2]) or 0
if outcome == 'failure' then
  if open_until == 0 then
    failures = failures + 1
    if failures < tonumber(ARGV[2]) then
      redis.call('HSET', KEYS[1], 'failures', failures)
      return {'closed', failures, 0, 0}
    end
  elseif now < open_until then
    return {'open', failures, open_until - now, 0}  -- an older call failing late
  end
  local timeout = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'failures', 0, 'open_until', now + timeout)
  redis.call('DEL', KEYS[2])
  return {'open', 0, timeout, 0}
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
if open_until == 0 then return {'closed', failures, 0, 0} end
if now < open_until then return {'open', failures, open_until - now, 0} end
return {'half_open', failures, 0, redis.call('EXISTS', KEYS[2])}
"""
)

_STATES = {
    b"closed": BreakerState.CLOSED,
    b"open": BreakerState.OPEN,
    b"half_open": BreakerState.HALF_OPEN,
}


class RedisBreakerStore:
    """A `BreakerStore` in Redis: failures in one process open the circuit for all.

    Each breaker keeps its own `threshold` and `timeout` (sent with every call). `probe_ttl`
    bounds how long a half-open probe's lease lasts if its process dies; keep it above the
    longest call (with retries). Redis errors in `before_call` propagate (the call fails:
    the shared circuit cannot be read); in `record` they are logged and the outcome is
    recorded locally only.

    Example::

        orchestrator = APIOrchestrator(config, breakers="redis://127.0.0.1:6379/0")

    Raises:
        ConfigError: a malformed URL or `probe_ttl`.
    """

    __slots__ = ("_lease_ms", "_probes", "_redis", "prefix")

    def __init__(self, url: str, *, prefix: str | None = None, probe_ttl: float = 120.0) -> None:
        if not isinstance(probe_ttl, (int, float)) or not 0 < probe_ttl < math.inf:
            raise ConfigError(
                f"RedisBreakerStore: probe_ttl must be seconds > 0, got {probe_ttl!r}"
            )
        self._redis = RedisConnector(url, "breakers", prefix)
        self.prefix = self._redis.prefix
        self._lease_ms = max(1, round(probe_ttl * 1000))
        self._probes: dict[str, str] = {}  # breaker name -> the lease token this process holds

    async def before_call(self, breaker: CircuitBreaker) -> BreakerState:
        """Admit one call (returning the shared state it was admitted in) or refuse it.

        Raises:
            CircuitOpenError: the shared circuit is open, or half-open with the probe out.
        """
        token = self._redis.new_id()
        # Only the reply says whether this caller took the probe lease: a caller cancelled
        # while asking hands it back once the reply lands.
        name, failures, open_us, probe = await self._redis.shielded_script(
            _BEFORE,
            self._keys(breaker),
            [token, self._lease_ms],
            lambda reply: self._drop_lease(reply, breaker, token),
        )
        state = _STATES[name]
        # closed: open_us is 0 and no probe is out
        breaker._adopt(state, int(failures), open_us / 1e6, state is not BreakerState.CLOSED)
        if state is BreakerState.CLOSED:
            return state
        if probe:
            self._probes[breaker.name] = token
            return state
        breaker.rejections += 1
        raise CircuitOpenError(breaker.name, open_us / 1e6)

    async def record(self, breaker: CircuitBreaker, outcome: BreakerOutcome) -> None:
        """Tell the shared circuit how an admitted call ended.

        ``"ignored"`` (a cancelled call) never suspends: it frees a probe lease this
        process holds in the background, so it is safe while a cancellation propagates.
        """
        token = self._probes.pop(breaker.name, "")
        if outcome == "ignored":
            breaker.record_ignored()
            if token:
                self._hand_back(breaker, token)
            return
        try:
            script = await self._redis.script(_RECORD)
            reply = await script(
                keys=self._keys(breaker), args=_record_args(breaker, outcome, token)
            )
        except Exception as exc:  # Redis unreachable: keep the engine going on local state
            logger.warning(
                "breaker %r: could not record %s in Redis (%s); recorded locally only",
                breaker.name,
                outcome,
                exc,
            )
            breaker.record(outcome)
            return
        _adopt(breaker, reply)

    async def aclose(self) -> None:
        """Finish background writes, then close this loop's client."""
        await self._redis.aclose()

    def __repr__(self) -> str:
        return f"RedisBreakerStore({redact_url(self._redis.url)!r}, prefix={self.prefix!r})"

    def _drop_lease(self, reply: list[Any], breaker: CircuitBreaker, token: str) -> None:
        """A caller cancelled while asking may have taken the probe lease: hand it back."""
        if reply[3]:
            self._hand_back(breaker, token)

    def _hand_back(self, breaker: CircuitBreaker, token: str) -> None:
        """Free the probe lease `token` in the background (a cancelled probe)."""
        self._redis.background_script(
            _RECORD,
            self._keys(breaker),
            _record_args(breaker, "ignored", token),
            f"breaker {breaker.name!r}: could not free the probe in Redis",
            lambda reply: _handed_back(breaker, reply),
        )

    def _keys(self, breaker: CircuitBreaker) -> list[str]:
        key = f"{self.prefix}:cb:{breaker.name}"
        return [key, key + ":probe"]


def _record_args(breaker: CircuitBreaker, outcome: str, token: str) -> list[Any]:
    return [outcome, breaker.threshold, round(breaker.timeout * 1e6), token]


def _handed_back(breaker: CircuitBreaker, reply: list[Any] | None) -> None:
    if reply is None:  # Redis unreachable: the lease frees itself after probe_ttl
        breaker.record_ignored()
    else:
        _adopt(breaker, reply)


def _adopt(breaker: CircuitBreaker, reply: list[Any]) -> None:
    """Copy the shared state a `_RECORD` reply reports into `breaker`."""
    name, failures, open_us, probe = reply
    breaker._adopt(_STATES[name], int(failures), open_us / 1e6, bool(probe))
