"""The Lua scripts that make scheduling's check-and-write atomic (one Redis round trip each).

SAVE: check the briefing's ``seq`` and the states of its occurrence records (optimistic
concurrency), check every booking window of every booked site against the per-site booking
indexes, and only when nothing clashes release the briefing's old bookings and write the new
ones, the record, the occurrence records, the clock's queue and the listing index; then publish.
Because Redis runs a script alone, two organizers booking one hall at the same moment cannot
both pass the check: the second script sees the first one's bookings.

TRANSITION: compare-and-set one occurrence's state (and the briefing's ``seq``, so a window
computed from an edited series is never written), optionally only while the caller still holds
the clock lock (the fencing check: a node that lost the lock cannot write), then publish.
"""

from __future__ import annotations

SAVE = r"""
local a = cjson.decode(ARGV[1])
-- KEYS[1] briefing hash, KEYS[2] briefing bookings set, KEYS[3] listing zset, KEYS[4] timeline zset,
-- KEYS[5] occurrence records hash, KEYS[6..] per site: bookings zset then briefings set (a.keys: code -> index)
local seq = redis.call('HGET', KEYS[1], 'seq')
if a.expect_seq < 0 then
  if seq then return {'exists', ''} end
elseif tonumber(seq or '-1') ~= a.expect_seq then
  return {'stale', seq or ''}
end
local recs = redis.call('HGETALL', KEYS[5])
local n = 0
for i = 1, #recs, 2 do
  n = n + 1
  local want = a.expect_states[recs[i]]
  if want == nil or cjson.decode(recs[i + 1]).state ~= want then return {'stale_records', recs[i]} end
end
local want_n = 0
for _ in pairs(a.expect_states) do want_n = want_n + 1 end
if n ~= want_n then return {'stale_records', ''} end

-- the check: any booking of another briefing whose window meets one of ours, at one of our sites
-- (one range query per site and window: bench/scheduling.py found a per-site range query with a
-- merge no faster at a year's bookings)
local own = a.id .. '-'
local conflicts = {}
local found = 0
for _, g in ipairs(a.groups) do
  for _, code in ipairs(g.sites) do
    local key = KEYS[a.keys[code]]
    for _, w in ipairs(g.windows) do
      local hits = redis.call('ZRANGEBYSCORE', key, w[1] - a.maxwin, '(' .. w[2])
      for _, m in ipairs(hits) do
        if string.sub(m, 1, #own) ~= own then
          local bar = string.find(m, '|', 1, true)
          if tonumber(string.sub(m, bar + 1)) > w[1] then
            found = found + 1
            if found <= a.max_conflicts then
              conflicts[#conflicts + 1] = {code, string.sub(m, 1, bar - 1), w[3]}
            end
          end
        end
      end
    end
  end
end
if found > 0 then return {'conflict', cjson.encode(conflicts), tostring(found)} end
if a.dry_run then return {'ok', ''} end

-- the write: release the old bookings, take the new ones
local old = redis.call('SMEMBERS', KEYS[2])
for _, entry in ipairs(old) do
  local tab = string.find(entry, '\t', 1, true)
  local code = string.sub(entry, 1, tab - 1)
  local member = string.sub(entry, tab + 1)
  local idx = a.keys[code]
  if idx then
    redis.call('ZREM', KEYS[idx], member)
    local bar = string.find(member, '|', 1, true)
    redis.call('ZREM', KEYS[4], string.sub(member, 1, bar - 1))
  end
end
redis.call('DEL', KEYS[2])
for _, code in ipairs(a.old_sites) do
  redis.call('SREM', KEYS[a.keys[code] + 1], a.id)
end
local entries = {}
for _, g in ipairs(a.groups) do
  for _, code in ipairs(g.sites) do
    local key = KEYS[a.keys[code]]
    for _, w in ipairs(g.windows) do
      local member = w[3] .. '|' .. w[2]
      redis.call('ZADD', key, w[1], member)
      entries[#entries + 1] = code .. '\t' .. member
      if #entries >= 5000 then
        redis.call('SADD', KEYS[2], unpack(entries))
        entries = {}
      end
    end
  end
end
if #entries > 0 then redis.call('SADD', KEYS[2], unpack(entries)) end
for _, code in ipairs(a.sites) do
  redis.call('SADD', KEYS[a.keys[code] + 1], a.id)
end
for _, t in ipairs(a.timeline) do
  redis.call('ZADD', KEYS[4], t[2], t[1])
end
for _, oid in ipairs(a.timeline_remove) do
  redis.call('ZREM', KEYS[4], oid)
end
for oid, rec in pairs(a.records) do
  redis.call('HSET', KEYS[5], oid, rec)
end
redis.call('HSET', KEYS[1], 'json', a.json, 'seq', a.seq)
redis.call('ZADD', KEYS[3], a.last_end, a.id)
for _, ev in ipairs(a.events) do
  redis.call('PUBLISH', ev[1], ev[2])
end
return {'ok', tostring(a.seq)}
"""

TRANSITION = r"""
local a = cjson.decode(ARGV[1])
-- KEYS[1] occurrence records hash, KEYS[2] timeline zset, KEYS[3] clock lock, KEYS[4] briefing hash
if a.lock_token ~= '' and redis.call('GET', KEYS[3]) ~= a.lock_token then
  return {'not_leader', ''}
end
if tonumber(redis.call('HGET', KEYS[4], 'seq') or '-1') ~= a.expect_seq then
  return {'stale', ''}
end
local cur = redis.call('HGET', KEYS[1], a.occ_id)
local state = 'scheduled'
if cur then state = cjson.decode(cur).state end
if state ~= a.expect_state then return {'stale_state', state} end
redis.call('HSET', KEYS[1], a.occ_id, a.record)
if a.next ~= nil and a.next ~= cjson.null then
  redis.call('ZADD', KEYS[2], a.next, a.occ_id)
else
  redis.call('ZREM', KEYS[2], a.occ_id)
end
-- an ended or cancelled occurrence frees its halls (KEYS[5] the briefing's bookings set, KEYS[6..] the sites' zsets)
for i, code in ipairs(a.release_sites) do
  redis.call('ZREM', KEYS[5 + i], a.release_member)
  redis.call('SREM', KEYS[5], code .. '\t' .. a.release_member)
end
for _, ev in ipairs(a.events) do
  redis.call('PUBLISH', ev[1], ev[2])
end
return {'ok', ''}
"""

# the clock lock: renew only while still ours; release only ours
RENEW = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
