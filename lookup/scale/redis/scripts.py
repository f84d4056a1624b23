"""The Lua scripts of the shared quota: each one atomic, each one round trip.

Every script works on one hash (``KEYS[1]``, the namespace's state) with Redis ``TIME`` as
the clock, so no process's clock matters and no two processes can interleave inside a
decision. Numbers go out as strings (Lua numbers would come back truncated to integers)
and are stored with microsecond precision (``tostring`` keeps 14 digits: 0.1 ms at
today's epoch, 1.5 % of a request gap at 150/s).

The rules mirror :class:`lookup.engine.policies.Pacer`: GCRA spacing ``(1 + headroom) / rate``
with no burst after idle time; a ``Retry-After`` pauses everyone and the spacing resumes
after it; multiplicative decrease (0.7, or 0.5 ending the start without a ceiling) only for
requests sent after the last decrease and a reaction window after it (unless the rate is
still over twice what the API accepts), from the lower of the rate and the measured send
rate, never below 0.9x the accepted rate nor 0.2/s; additive increase (a twentieth of the
rate before the last cut) per clean interval in which callers were held back, never above
the ceiling. Without a ceiling the rate starts at ``ARGV[5]`` (the local pacer's start) and
doubles each time :data:`SLOW_START_ANSWERS` clean answers to requests sent at the current
rate came back while callers were held back (each such answer adds a quarter of the rate,
at most three doublings per call), until the first throttle (the local pacer's slow start).

``ADMIT`` grants a *lease*: up to ``ARGV[7]`` consecutive start slots (at most ``ARGV[8]``
seconds of the budget, at least one), all or nothing, and only when the first is at most
``max_wait`` away. The process serves them locally; ``RETURN`` gives back the unused tail
of its latest lease when no other lease was granted after it.

Send and accepted rates are estimated from two one-second buckets (the previous one
weighted by how much of it still falls in the last second).

Hash fields: ``rate tat pause lt`` (last throttle) ``ld`` (last decrease) ``lc`` (last
change) ``hb`` (held back) ``step dec`` (decreases) ``s* a*`` (send / accepted buckets)
``bo`` (breaker open until) ``bp`` (probe claimed until) ``cc`` (clean answers at this rate,
slow start).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ADMIT",
    "BREAKER",
    "MAX_RATE",
    "OUTCOMES",
    "RETURN",
    "SLOW_START_ANSWERS",
    "THROTTLE",
]

MAX_RATE: Final = 1_000_000.0
"""The slow start stops doubling here (as the local pacer's)."""
SLOW_START_ANSWERS: Final = 4
"""Clean answers at the current rate that double it in the slow start (as the local pacer's)."""

_COMMON: Final = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local key = KEYS[1]
local raw = redis.call('HGETALL', key)
local h = {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local function num(name, default)
  local v = tonumber(h[name])
  if v == nil then return default end
  return v
end
local function put(name, v) h[name] = string.format('%.6f', v) end
local function save(ttl_ms)
  local flat = {}
  for k, v in pairs(h) do flat[#flat + 1] = k; flat[#flat + 1] = v end
  redis.call('HSET', key, unpack(flat))
  redis.call('PEXPIRE', key, ttl_ms)
end
local function str(v) return string.format('%.6f', v) end
local ceiling = tonumber(ARGV[3])
local headroom = tonumber(ARGV[4])
local rate = num('rate', ceiling > 0 and ceiling or tonumber(ARGV[5]))
if ceiling > 0 and rate > ceiling then rate = ceiling end
-- a bucket pair p: count n more events now; return the per-second estimate (or nil)
local function bucket(p, n)
  local t0 = num(p .. 't', nil)
  local cur, prev = num(p .. 'c', 0), num(p .. 'p', -1)
  if t0 == nil or now - t0 >= 2 then t0, cur, prev = now, 0, -1
  elseif now - t0 >= 1 then t0, prev, cur = t0 + 1, cur, 0 end
  cur = cur + n
  put(p .. 't', t0); put(p .. 'c', cur); put(p .. 'p', prev)
  local est, samples
  if prev < 0 then
    samples = cur
    est = cur / math.max(now - t0, 0.1)
  else
    samples = prev + cur
    est = prev * math.max(0, 1 - (now - t0)) + cur
  end
  if samples < 8 then return nil end
  return est
end
local function breaker_left() return math.max(0, num('bo', 0) - now) end
"""

_SLOW: Final = f"local ANSWERS, MAX_RATE = {SLOW_START_ANSWERS}, {MAX_RATE:.1f}\n"

ADMIT: Final = (
    _COMMON
    + _SLOW
    + r"""
-- ARGV: 1 max_wait (s; < 0: only read), 2 clean answers since the last call, 3 ceiling
-- (0: none), 4 headroom, 5 start rate without a ceiling, 6 idle expiry (ms), 7 slots
-- wanted, 8 the most seconds of budget one lease may take, 9 '1': callers of this process
-- waited for their slots since its last call (held back, as a slot in the future is)
local max_wait = tonumber(ARGV[1])
local clean = tonumber(ARGV[2])
local changed = 0
local slow = ceiling == 0 and num('dec', 0) == 0
bucket('a', clean)
if ARGV[9] == '1' then h['hb'] = '1' end
if clean > 0 and num('hb', 0) == 1 then
  if slow then
    -- each clean answer at this rate adds a quarter of it (the local pacer doubles per
    -- ANSWERS answers), at most three doublings per call
    local cc = num('cc', 0) + clean
    if cc >= ANSWERS and rate < MAX_RATE then
      rate = math.min(rate * math.min(1 + cc / ANSWERS, 8), MAX_RATE)
      put('lc', now); h['hb'] = '0'; cc = 0; changed = 1
    end
    put('cc', cc)
  else
    local lc = num('lc', 0)
    if now - lc >= math.max(0.25, 2.0 / rate) then
      if num('lt', 0) > lc then
        put('lc', now)
      elseif ceiling == 0 or rate < ceiling then
        local new = rate + math.max(num('step', 0), 0.2)
        if ceiling > 0 and new > ceiling then new = ceiling end
        rate = new
        put('lc', now); h['hb'] = '0'; changed = 1
      end
    end
  end
end
put('rate', rate)
local pause = num('pause', 0)
local interval = (1.0 + headroom) / rate
local slot = math.max(now, num('tat', 0), pause)
local n = 0
if max_wait >= 0 and slot - now <= max_wait then
  n = math.max(1, math.min(tonumber(ARGV[7] or '1'), math.floor(rate * tonumber(ARGV[8] or '0'))))
  put('tat', slot + n * interval)
  if slot > now then h['hb'] = '1' end
  bucket('s', n)
end
save(tonumber(ARGV[6]))
return {n, str(slot - now), str(rate), str(math.max(0, pause - now)), str(breaker_left()),
        changed, slow and 1 or 0, str(slot), h['tat'] or ''}
"""
)

RETURN: Final = (
    _COMMON
    + r"""
-- ARGV: 1 the lease's first slot, 2 the lease's end (``tat`` as the lease left it), 3-6 as
-- ADMIT, 7 seconds from now before which this process still starts (its spacing)
local first = tonumber(ARGV[1])
local tat = num('tat', 0)
if h['tat'] ~= ARGV[2] then return 0 end
local new = math.max(now + tonumber(ARGV[7]), first)
if new >= tat then return 0 end
put('tat', new)
save(tonumber(ARGV[6]))
return 1
"""
)

THROTTLE: Final = (
    _COMMON
    + r"""
-- ARGV: 1 sent_ago (s), 2 retry_after (s; < 0: none), 3-6 as ADMIT
local sent_at = now - tonumber(ARGV[1])
local retry_after = tonumber(ARGV[2])
put('lt', now)
local pause = num('pause', 0)
if retry_after >= 0 and now + retry_after > pause then
  pause = now + retry_after
  put('pause', pause)
  put('tat', math.max(num('tat', 0), pause))
end
local old = rate
local lowered = 0
local ld = num('ld', -1)
local accepted = bucket('a', 0)
local measured = bucket('s', 0)
local far_above = accepted ~= nil and rate > 2 * accepted
if sent_at >= ld and (far_above or now - ld >= math.max(0.1, 2.0 / rate)) then
  local base = rate
  if measured ~= nil and measured < base then base = measured end
  local new
  if num('dec', 0) == 0 and ceiling == 0 then new = base * 0.5 else new = base * 0.7 end
  if accepted ~= nil then new = math.max(new, math.min(base, accepted * 0.9)) end
  new = math.max(new, 0.2)
  rate = new
  put('rate', rate); put('ld', now); put('lc', now); h['hb'] = '0'
  put('step', math.max(0.2, base / 20.0)); put('dec', num('dec', 0) + 1)
  lowered = 1
end
put('rate', rate)
save(tonumber(ARGV[6]))
return {lowered, str(old), str(rate), str(math.max(0, pause - now))}
"""
)

BREAKER: Final = (
    _COMMON
    + r"""
-- ARGV: 1 'open' | 'claim' | 'close', 2 seconds (cooldown, or the probe's claim), 3-6 as ADMIT
local op = ARGV[1]
local seconds = tonumber(ARGV[2])
local granted = 1
if op == 'open' then
  put('bo', math.max(num('bo', 0), now + seconds)); put('bp', 0)
elseif op == 'close' then
  put('bo', 0); put('bp', 0)
elseif breaker_left() > 0 or num('bp', 0) > now then
  granted = 0
else
  put('bp', now + seconds)
end
save(tonumber(ARGV[6]))
return {granted, str(breaker_left()), str(math.max(0, num('bp', 0) - now))}
"""
)

OUTCOMES: Final = r"""
-- The outcome cache and single flight: the answers, then the claims, gathered over one turn
-- of a process's event loop. Keys are ARGV[1] .. 'o:' .. digest (the answer) and
-- ARGV[1] .. 'f:' .. digest (a flight's claim), all in the caller's namespace.
-- ARGV: 1 key prefix, 2 claim ttl (ms), 3 answer ttl (ms), 4 answers n, then n triples
-- (digest, the claim's token or '', the answer or ''), then this call's claim token and a
-- digest per claim.
-- Returns per claim: the known answer, 2 (claimed: check it) or 3 (another flight holds it).
local base = ARGV[1]
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local d, token, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  if value ~= '' then redis.call('SET', base .. 'o:' .. d, value, 'PX', ARGV[3]) end
  local f = base .. 'f:' .. d
  if token ~= '' and redis.call('GET', f) == token then redis.call('DEL', f) end
end
local out = {}
local token = ARGV[i]
for j = i + 1, #ARGV do
  local d = ARGV[j]
  local known = redis.call('GET', base .. 'o:' .. d)
  if known then
    out[#out + 1] = known
  elseif redis.call('SET', base .. 'f:' .. d, token, 'NX', 'PX', ARGV[2]) then
    out[#out + 1] = 2
  else
    out[#out + 1] = 3
  end
end
return out
"""
