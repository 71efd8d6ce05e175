"""The Lua scripts behind `RedisRateLimiter`: exact sliding windows as Redis sorted sets.

One sorted set per category and rate (``{prefix}:rl:{category}:{limit}/{interval}``) holds
one member per admitted weight unit, scored in microseconds of Redis ``TIME``, the one
clock every process shares. An entry scored ``s`` counts until ``s + interval + margin``.
A pending permit is scored ``admission + pending_ttl`` (in the future, so it sorts last
and counts as used); settling re-scores it to the settle time, releasing removes it. A
process that dies holding a permit therefore loses that capacity for ``pending_ttl +
interval`` at most, never for good.

Each script runs atomically, so a request charged against several categories (endpoint +
global) is admitted in all of them or in none.
"""

from __future__ import annotations

from ._redis_conn import LUA_NOW

_PRELUDE = (
    LUA_NOW
    + """
local function members(id, weight)
  if weight == 1 then return {id} end
  local m = {}
  for j = 1, weight do m[j] = id .. '#' .. j end
  return m
end

-- The earliest moment the `excess` oldest entries stop counting. A pending entry (scored
-- in the future) could be settled at once, so `now` is the earliest it could be stamped.
local function free_at(key, excess, span)
  local e = redis.call('ZRANGE', key, excess - 1, excess - 1, 'WITHSCORES')
  return math.min(tonumber(e[2]), now) + span
end

local function keep_alive(key, span)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIRE', key, math.ceil((tonumber(top[2]) - now + span) / 1000) + 1)
  end
end
"""
)

#: KEYS: the rate keys. ARGV: weight, hold_us (0: stamped now; > 0: pending for that long),
#: member id, margin_us, then (limit, interval_us) per key.
#: Returns {1, now_us} when admitted, else {0, wait_us, index of the blocking key}.
ADMIT = (
    _PRELUDE
    + """
local weight = tonumber(ARGV[1])
local hold = tonumber(ARGV[2])
local margin = tonumber(ARGV[4])
local wake, blocker = now, 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 + 2 * i])
  local span = tonumber(ARGV[4 + 2 * i]) + margin
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
  local excess = redis.call('ZCARD', key) + weight - limit
  if excess > 0 then
    local when = free_at(key, excess, span)
    if when > wake then wake, blocker = when, i end
  end
end
if blocker > 0 then return {0, wake - now, blocker} end
local score = now + hold
local ms = members(ARGV[3], weight)
for i, key in ipairs(KEYS) do
  for j = 1, #ms, 1000 do
    local args = {}
    for k = j, math.min(j + 999, #ms) do
      args[#args + 1] = score
      args[#args + 1] = ms[k]
    end
    redis.call('ZADD', key, unpack(args))
  end
  keep_alive(key, tonumber(ARGV[4 + 2 * i]) + margin)
end
return {1, now}
"""
)

#: KEYS: the rate keys. ARGV: 'settle' or 'release', member id, weight, ago_us, floor_us.
#: Settling re-scores the permit's entries to ``max(now - ago, floor)``; ``XX`` leaves
#: alone entries that a reset (or ``pending_ttl``) already removed.
FINISH = (
    _PRELUDE
    + """
local ms = members(ARGV[2], tonumber(ARGV[3]))
if ARGV[1] == 'release' then
  for _, key in ipairs(KEYS) do
    for j = 1, #ms, 1000 do redis.call('ZREM', key, unpack(ms, j, math.min(j + 999, #ms))) end
  end
  return 0
end
local stamp = math.max(now - tonumber(ARGV[4]), tonumber(ARGV[5]))
for _, key in ipairs(KEYS) do
  for _, m in ipairs(ms) do redis.call('ZADD', key, 'XX', stamp, m) end
end
return 0
"""
)

#: KEYS: the rate keys. ARGV: margin_us, then (limit, interval_us) per key.
#: Returns {used, pending, wait_us for one more unit} per key.
STATUS = (
    _PRELUDE
    + """
local margin = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local span = tonumber(ARGV[1 + 2 * i]) + margin
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
  local used = redis.call('ZCARD', key)
  local pending = redis.call('ZCOUNT', key, '(' .. now, '+inf')
  local wait = 0
  if used + 1 > limit then wait = free_at(key, used + 1 - limit, span) - now end
  out[i] = {used, pending, wait}
end
return out
"""
)

#: KEYS: the old rates' longest-lived key, then the new rate keys. ARGV: margin_us, then
#: interval_us per new key. Copies recent admissions into the new keys, so changing a
#: category's rates cannot open a burst.
CARRY = (
    _PRELUDE
    + """
local margin = tonumber(ARGV[1])
for i = 2, #KEYS do
  local span = tonumber(ARGV[i]) + margin
  redis.call('ZUNIONSTORE', KEYS[i], 2, KEYS[i], KEYS[1], 'AGGREGATE', 'MAX')
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - span)
  keep_alive(KEYS[i], span)
end
return 0
"""
)
