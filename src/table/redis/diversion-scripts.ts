// The Lua of the diversion records in Redis, for the scripts of redis-scripts.ts (which
// put their library before it: base, at, by, int and KEYS[2], the version sequence):
// the divert script changes the records in the same atomic step as the entries, and one
// script deletes a record.
//
// Keys, under `${prefix}{table}:` like the entries (one Cluster slot):
//   diversions         hash: from -> record JSON {"from","to","by","at"}
// Each change is published on the diversions channel (`${prefix}diversions`, apart from
// the entries' changes channel, so that a divert that predates the records is not told of
// messages it cannot read) as {"action":"set"|"delete","from","to","by","at","version"},
// its version taken from the table's sequence.
export const RECORDS_LUA = `
local records_key = base .. 'diversions'

-- the to of a stored record; nil when absent or unreadable
local function record_to(raw)
  if not raw then return nil end
  local ok, r = pcall(cjson.decode, raw)
  if ok and type(r) == 'table' and type(r.to) == 'string' then return r.to end
  return nil
end

-- Sets or deletes the record of from and publishes the change; returns its message.
local function change_record(action, from, to, records_channel)
  local version = redis.call('INCR', KEYS[2])
  local fields = '"from":' .. cjson.encode(from) .. ',"to":' .. cjson.encode(to) ..
    ',"by":' .. cjson.encode(by) .. ',"at":' .. cjson.encode(at)
  if action == 'set' then
    redis.call('HSET', records_key, from, '{' .. fields .. '}')
  else
    redis.call('HDEL', records_key, from)
  end
  local message = '{"action":"' .. action .. '",' .. fields .. ',"version":' .. int(version) .. '}'
  redis.call('PUBLISH', records_channel, message)
  return message
end

-- diversionSteps() of entry/diversions.ts on the stored records; the messages of its changes go to out
local function divert_records(from, to, records_channel, out)
  local target = record_to(redis.call('HGET', records_key, to))
  local undo = target == from
  local final = to
  if target and not undo then final = target end
  local all = redis.call('HGETALL', records_key)
  local pointing = {}
  for i = 1, #all, 2 do
    if record_to(all[i + 1]) == from then pointing[#pointing + 1] = all[i] end
  end
  table.sort(pointing)
  for _, a in ipairs(pointing) do
    if a == final then out[#out + 1] = change_record('delete', a, from, records_channel)
    else out[#out + 1] = change_record('set', a, final, records_channel) end
  end
  if not undo then out[#out + 1] = change_record('set', from, final, records_channel) end
end
`;

/** ARGV[5..]: from, the diversions channel. Reply: {stored record JSON, change message}, or nil when from has no record. */
export const DELETE_DIVERSION_BODY = `
local from, records_channel = ARGV[5], ARGV[6]
local raw = redis.call('HGET', records_key, from)
if not raw then return false end
return {raw, change_record('delete', from, record_to(raw) or '', records_channel)}
`;
