// The Lua scripts that make every RedisTable write one atomic step: entry, history,
// reverse index and change message change together or not at all.

import { MAX_WEIGHT } from '../../entry/check-rules.js';
import { HISTORY_LENGTH } from '../table.js';
import { DELETE_DIVERSION_BODY, RECORDS_LUA } from './diversion-scripts.js';

// Key layout, all under `${prefix}{table}:` (the hash tag keeps every key in one Cluster slot):
//   entries            hash: name -> entry JSON {"a","aaaa","ttl","weights"?,"pick"?,"rules"?,"version","updatedAt","updatedBy"?}
//                      (updatedBy: absent in entries written before it was kept)
//   seq                counter: the table-wide version sequence
//   history:<name>     list of HistoryRecord JSON, newest first, at most HISTORY_LENGTH
//   addr:<address>     set of the names whose a or aaaa lists, or one of whose rules lists, <address> (for divert)
//   indexed            marker: the addr sets cover every entry (see INDEX_LUA)
//   diversions         hash: the diversion records (diversion-scripts.ts)
// Changes are published as JSON {"name","entry","version"} (entry with its name, or null
// on delete) on the channel `${prefix}changes`, from inside the script, so a message is
// sent exactly when a change is made and in version order.
// KEYS[1] is entries and KEYS[2] seq; history and addr keys are built from ARGV[1] (the
// `${prefix}{table}:` base) because they are only known inside the script. They share the
// hash tag, so Cluster accepts them as local keys.
//
// Every script takes ARGV[1] base, ARGV[2] the change channel, ARGV[3] the change time
// (ISO 8601, from the writer's clock like updatedAt), ARGV[4] who made the change (kept in
// the history record and as the entry's updatedBy).
// Entry data arrives as JSON, already checked by the writer (validate.ts). cjson.decode
// cannot tell an empty list from an empty object, so JSON is written back by `encode`,
// which knows from the key which values are lists.
const LIBRARY = `
local base, channel, at, by = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function int(n) return string.format('%d', n) end

-- keys whose values are lists in entry data; every number in it is a whole number
local LISTS = {a = true, aaaa = true, rules = true, networks = true, days = true}

local function encode(v, key)
  if type(v) == 'number' then return int(v) end
  if type(v) ~= 'table' then return cjson.encode(v) end
  local out = {}
  if LISTS[key] then
    for i, item in ipairs(v) do out[i] = encode(item, nil) end
    return '[' .. table.concat(out, ',') .. ']'
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do out[i] = cjson.encode(k) .. ':' .. encode(v[k], k) end
  return '{' .. table.concat(out, ',') .. '}'
end

-- An entry's data without its version and time: what history records and writes carry.
local function state_of(v)
  return {a = v.a, aaaa = v.aaaa, ttl = v.ttl, weights = v.weights, pick = v.pick, rules = v.rules}
end

local function state_json(s)
  if not s then return 'null' end
  return encode(s, nil)
end

local function is_list(v) return type(v) == 'table' end

-- The stored entry's data and its version; an absent or unreadable value is nil and
-- version 0, which is what readers see too.
local function read(name)
  local raw = redis.call('HGET', KEYS[1], name)
  if not raw then return nil, 0 end
  local ok, v = pcall(cjson.decode, raw)
  if not ok or type(v) ~= 'table' or type(v.version) ~= 'number' then return nil, 0 end
  if not is_list(v.a) or not is_list(v.aaaa) or type(v.ttl) ~= 'number' then return nil, 0 end
  if v.rules ~= nil and not is_list(v.rules) then return nil, 0 end
  return state_of(v), v.version
end

-- Every address the entry answers: its own and its rules'.
local function each_address(s, fn)
  for _, address in ipairs(s.a) do fn(address) end
  for _, address in ipairs(s.aaaa) do fn(address) end
  for _, rule in ipairs(s.rules or {}) do
    for _, address in ipairs(rule.a or {}) do fn(address) end
    for _, address in ipairs(rule.aaaa or {}) do fn(address) end
  end
end

local function index(name, s, command)
  each_address(s, function(address) redis.call(command, base .. 'addr:' .. address, name) end)
end

-- Replaces (new_state) or deletes (nil) one entry: a new version, the reverse index moved
-- from the old addresses to the new, one history record, one change message.
-- Returns the version and the stored JSON (nil on delete).
local function write(name, old, new_state, op)
  local version = redis.call('INCR', KEYS[2])
  local stored = nil
  if old then index(name, old, 'SREM') end
  if new_state then
    local value = state_of(new_state)
    value.version = version
    value.updatedAt = at
    value.updatedBy = by
    stored = encode(value, nil)
    redis.call('HSET', KEYS[1], name, stored)
    index(name, new_state, 'SADD')
  else
    redis.call('HDEL', KEYS[1], name)
  end
  local history = base .. 'history:' .. name
  redis.call('LPUSH', history, '{"version":' .. int(version) .. ',"at":' .. cjson.encode(at) ..
    ',"op":"' .. op .. '","by":' .. cjson.encode(by) ..
    ',"old":' .. state_json(old) .. ',"new":' .. state_json(new_state) .. '}')
  redis.call('LTRIM', history, 0, ${HISTORY_LENGTH - 1})
  local entry = 'null'
  if stored then entry = '{"name":' .. cjson.encode(name) .. ',' .. string.sub(stored, 2) end
  redis.call('PUBLISH', channel, '{"name":' .. cjson.encode(name) .. ',"entry":' .. entry .. ',"version":' .. int(version) .. '}')
  return version, stored
end
`;

/**
 * Builds the reverse index once for entries written before it existed (by an older
 * divert), marking it done in `indexed`. One script, so no write interleaves; it blocks
 * Redis for about a millisecond per thousand entries, once. Reply: entries indexed, or -1
 * when the index was there already.
 */
export const INDEX_LUA = `${LIBRARY}
if redis.call('EXISTS', base .. 'indexed') == 1 then return -1 end
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local s = read(all[i])
  if s then
    index(all[i], s, 'SADD')
    n = n + 1
  end
end
redis.call('SET', base .. 'indexed', '1')
return n
`;

/** ARGV[5..]: name, ifVersion ('' = none), data. Reply: {'OK', version} | {'MISMATCH', current}. */
export const PUT_LUA = `${LIBRARY}
local name = ARGV[5]
local old, current = read(name)
if ARGV[6] ~= '' and current ~= tonumber(ARGV[6]) then return {'MISMATCH', current} end
local version = write(name, old, cjson.decode(ARGV[7]), 'put')
return {'OK', version}
`;

/** ARGV[5..]: name, ifVersion. Reply: {'OK', version} | {'NOT_FOUND', 0} | {'MISMATCH', current}. */
export const DELETE_LUA = `${LIBRARY}
local name = ARGV[5]
if redis.call('HEXISTS', KEYS[1], name) == 0 then return {'NOT_FOUND', 0} end
local old, current = read(name)
if ARGV[6] ~= '' and current ~= tonumber(ARGV[6]) then return {'MISMATCH', current} end
return {'OK', (write(name, old, nil, 'delete'))}
`;

/** ARGV[5..]: name, data pairs. Inserts the absent names only. Reply: flat {name, version, ...} of the inserted. */
export const SEED_LUA = `${LIBRARY}
local out = {}
for i = 5, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = (write(ARGV[i], nil, cjson.decode(ARGV[i + 1]), 'seed'))
  end
end
return out
`;

/** ARGV[5..]: name, data pairs, all written. Reply: flat {name, version, ...}. */
export const IMPORT_LUA = `${LIBRARY}
local out = {}
for i = 5, #ARGV, 2 do
  local old = read(ARGV[i])
  out[#out + 1] = ARGV[i]
  out[#out + 1] = (write(ARGV[i], old, cjson.decode(ARGV[i + 1]), 'import'))
end
return out
`;

/**
 * ARGV[5..]: field ('a' or 'aaaa'), from, to, the diversions channel. Reads only the
 * reverse index of \`from\` (and the diversion records, a handful).
 * Replaces \`from\` in the entry's own list and in every rule's, and moves its weight to
 * \`to\` (added to \`to\`'s own when \`to\` is listed already); divertData in table-ops.ts
 * does the same in process.
 * Then the diversion records change as diversionSteps() says (diversion-scripts.ts).
 * Reply: {flat {name, stored JSON, ...} of the changed entries in name order, the
 * records' change messages}.
 */
export const DIVERT_LUA = `${LIBRARY}${RECORDS_LUA}
local field, from, to = ARGV[5], ARGV[6], ARGV[7]
local set = base .. 'addr:' .. from

local function has(list, address)
  for _, a in ipairs(list) do if a == address then return true end end
  return false
end

-- the list with from replaced (or dropped when to is listed), or nil when it lacks from
local function divert_list(list)
  if not has(list, from) then return nil end
  local has_to = has(list, to)
  local out = {}
  for _, address in ipairs(list) do
    if address ~= from then out[#out + 1] = address
    elseif not has_to then out[#out + 1] = to end
  end
  return out
end

local function divert_weights(weights, has_to)
  if type(weights) ~= 'table' or weights[from] == nil then return weights end
  local out = {}
  for address, weight in pairs(weights) do
    if address ~= from then out[address] = weight
    elseif not has_to then out[to] = weight end
  end
  if has_to then out[to] = math.min(${MAX_WEIGHT}, (weights[to] or 1) + weights[from]) end
  return out
end

local names = redis.call('SMEMBERS', set)
table.sort(names)
local out = {}
for _, name in ipairs(names) do
  local old = read(name)
  local new_state = nil
  if old then
    local own = old[field]
    local own_list = divert_list(own)
    local changed = own_list ~= nil
    local s = state_of(old)
    if own_list then s[field] = own_list end
    s.weights = divert_weights(old.weights, has(own, to))
    if old.rules then
      local rules = {}
      for i, rule in ipairs(old.rules) do
        local list = rule[field]
        -- a rule's weights name its own addresses, or the entry's when it lists none of this family
        local weighed = list or own
        local diverted = nil
        if list then diverted = divert_list(list) end
        local moves_weight = type(rule.weights) == 'table' and rule.weights[from] ~= nil and has(weighed, from)
        local r = rule
        if diverted or moves_weight then
          r = {}
          for k, v in pairs(rule) do r[k] = v end
          if diverted then
            r[field] = diverted
            changed = true
          end
          if moves_weight then r.weights = divert_weights(rule.weights, has(weighed, to)) end
        end
        rules[i] = r
      end
      s.rules = rules
    end
    if changed then new_state = s end
  end
  if not new_state then
    -- a stale index entry (e.g. the value was overwritten by hand): repair it
    redis.call('SREM', set, name)
  else
    local _, stored = write(name, old, new_state, 'divert')
    out[#out + 1] = name
    out[#out + 1] = stored
  end
end
local messages = {}
divert_records(from, to, ARGV[8], messages)
return {out, messages}
`;

/** ARGV[5..]: from, the diversions channel. Deletes from's diversion record, leaving the entries as they are. */
export const DELETE_DIVERSION_LUA = `${LIBRARY}${RECORDS_LUA}${DELETE_DIVERSION_BODY}`;
