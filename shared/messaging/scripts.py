"""Lua scripts: each runs atomically on the server, on the keys it is given (of one hash slot
for the single-stream scripts; a consumer's or a batch's streams for the others).

Stream ids are compared as (milliseconds, sequence) pairs; Lua numbers (doubles) hold both
exactly for any realistic id.
"""

from __future__ import annotations

__all__ = [
    "ACK_MANY_SCRIPT",
    "ACK_SCRIPT",
    "ADD_MANY_SCRIPT",
    "READ_NOW_SCRIPT",
    "RECLAIM_SCRIPT",
    "RENEW_SCRIPT",
    "REPLAY_SCRIPT",
]

ACK_SCRIPT = """
-- Acknowledge one entry for a group, optionally copy it to the dead-letter stream first,
-- and delete it from the stream when every other required group has acknowledged it too.
-- KEYS[1] stream, KEYS[2] dead-letter stream
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] n = number of dead-letter field/value items,
-- ARGV[4 .. 3+n] dead-letter fields, ARGV[4+n ..] the other required groups
local stream, group, id = KEYS[1], ARGV[1], ARGV[2]
local n = tonumber(ARGV[3])
local dead_id = false
if n > 0 then
  local fields = {}
  for i = 4, 3 + n do fields[#fields + 1] = ARGV[i] end
  dead_id = redis.call('XADD', KEYS[2], '*', unpack(fields))
end
local acked = redis.call('XACK', stream, group, id)
local function parse(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local others = {}
local any = false
for i = 4 + n, #ARGV do others[ARGV[i]] = true; any = true end
if any then
  local ims, iseq = parse(id)
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local name, last
    for j = 1, #info, 2 do
      if info[j] == 'name' then name = info[j + 1]
      elseif info[j] == 'last-delivered-id' then last = info[j + 1] end
    end
    if others[name] then
      local lms, lseq = parse(last)
      if lms < ims or (lms == ims and lseq < iseq) then return {acked, dead_id, 0} end
      if #redis.call('XPENDING', stream, name, id, id, 1) > 0 then
        return {acked, dead_id, 0}
      end
    end
  end
end
return {acked, dead_id, redis.call('XDEL', stream, id)}
"""

RENEW_SCRIPT = """
-- Renew the lease of entries this consumer still owns: XCLAIM JUSTID resets their idle time
-- without counting a delivery. Entries another consumer took over are left alone.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids. Returns owned ids.
local owned = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    owned[#owned + 1] = ARGV[i]
  end
end
return owned
"""

REPLAY_SCRIPT = """
-- Move one dead letter back onto its stream: XADD the original fields, XDEL the letter.
-- KEYS[1] dead-letter stream, KEYS[2] stream; ARGV[1] dead-letter id, ARGV[2..] fields
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
local new_id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[1])
return new_id
"""

_ACK_MANY_FUNCTION = """
-- ack_many(stream, group, others, ids): acknowledge `ids` for `group`; delete each one that
-- no group of `others` (the other required groups) still needs. Returns how many were deleted.
local function parse_id(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function ack_many(stream, group, others, ids)
  local deleted = 0
  for first = 1, #ids, 1000 do  -- unpack() takes a bounded number of values
    local chunk = {unpack(ids, first, math.min(first + 999, #ids))}
    redis.call('XACK', stream, group, unpack(chunk))
    if #others == 0 then deleted = deleted + redis.call('XDEL', stream, unpack(chunk)) end
  end
  if #others == 0 or redis.call('EXISTS', stream) == 0 then return deleted end
  local wanted = {}
  for _, name in ipairs(others) do wanted[name] = true end
  local lasts = {}
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local name, last
    for j = 1, #info, 2 do
      if info[j] == 'name' then name = info[j + 1]
      elseif info[j] == 'last-delivered-id' then last = info[j + 1] end
    end
    if wanted[name] then lasts[name] = last end
  end
  for _, id in ipairs(ids) do
    local ims, iseq = parse_id(id)
    local done = true
    for name, last in pairs(lasts) do
      local lms, lseq = parse_id(last)
      if lms < ims or (lms == ims and lseq < iseq) then done = false; break end
      if #redis.call('XPENDING', stream, name, id, id, 1) > 0 then done = false; break end
    end
    if done then deleted = deleted + redis.call('XDEL', stream, id) end
  end
  return deleted
end
"""

ACK_MANY_SCRIPT = (
    _ACK_MANY_FUNCTION
    + """
-- Acknowledge many entries for a group; delete each one no other required group still needs.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] n = number of other required groups,
-- ARGV[3 .. 2+n] those groups, ARGV[3+n ..] entry ids. Returns how many were deleted.
local n = tonumber(ARGV[2])
local others, ids = {}, {}
for i = 3, 2 + n do others[#others + 1] = ARGV[i] end
for i = 3 + n, #ARGV do ids[#ids + 1] = ARGV[i] end
return ack_many(KEYS[1], ARGV[1], others, ids)
"""
)

ADD_MANY_SCRIPT = """
-- XADD many entries with the same field names in one call. KEYS: the streams; ARGV[1] k, the
-- number of fields; ARGV[2 .. k+1] their names; then per entry its key index and k values.
-- Returns the new ids, space-separated: one reply element however many entries (a client
-- parses each reply element at a cost).
local k = tonumber(ARGV[1])
local args = {'*'}
for j = 1, k do args[2 * j] = ARGV[1 + j] end
local ids = {}
for i = k + 2, #ARGV, k + 1 do
  for j = 1, k do args[2 * j + 1] = ARGV[i + j] end
  ids[#ids + 1] = redis.call('XADD', KEYS[tonumber(ARGV[i])], unpack(args))
end
return table.concat(ids, ' ')
"""

READ_NOW_SCRIPT = (
    _ACK_MANY_FUNCTION
    + """
-- Acknowledge, then read new entries for a consumer without blocking (XREADGROUP without
-- BLOCK). KEYS: the streams read; ARGV[1] group, ARGV[2] consumer, ARGV[3] count,
-- ARGV[4] JSON array of acknowledgements, [key index, [other required groups], [ids]] each.
-- Returns one JSON string: [[stream, id, [field, value, ...]], ...] ('' when nothing is new).
local group = ARGV[1]
for _, ack in ipairs(cjson.decode(ARGV[4])) do ack_many(KEYS[ack[1]], group, ack[2], ack[3]) end
local args = {'GROUP', group, ARGV[2], 'COUNT', ARGV[3], 'STREAMS'}
for i = 1, #KEYS do args[#args + 1] = KEYS[i] end
for i = 1, #KEYS do args[#args + 1] = '>' end
local reply = redis.call('XREADGROUP', unpack(args))
if not reply then return '' end
local found = {}
for _, stream in ipairs(reply) do
  for _, entry in ipairs(stream[2]) do found[#found + 1] = {stream[1], entry[1], entry[2]} end
end
if #found == 0 then return '' end
return cjson.encode(found)
"""
)

RECLAIM_SCRIPT = """
-- Claim for a consumer the entries idle at least min-idle ms in any consumer's hands, from a
-- cursor on, at most count: XCLAIM each (a delivery is counted). An entry deleted from the
-- stream meanwhile is acknowledged instead, so it leaves the pending list. This is XAUTOCLAIM
-- as Redis 7.0 does it; 6.2's XAUTOCLAIM answers a deleted entry with a nil that does not
-- say which id it was, so the entry would stay pending forever.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] cursor id,
-- ARGV[5] count. Returns {last id looked at ('' when the pending list was exhausted),
-- {{id, {field, value, ...}}, ...} claimed, {id, ...} deleted and acknowledged}.
local stream, group, consumer, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local rows = redis.call('XPENDING', stream, group, 'IDLE', idle, ARGV[4], '+', ARGV[5])
local claimed, deleted = {}, {}
for _, row in ipairs(rows) do
  local got = redis.call('XCLAIM', stream, group, consumer, idle, row[1])
  if got[1] then
    claimed[#claimed + 1] = got[1]
  elseif #redis.call('XRANGE', stream, row[1], row[1]) == 0 then
    redis.call('XACK', stream, group, row[1])
    deleted[#deleted + 1] = row[1]
  end
end
local last = ''
if #rows == tonumber(ARGV[5]) then last = rows[#rows][1] end
return {last, claimed, deleted}
"""
