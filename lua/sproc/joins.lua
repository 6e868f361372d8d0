-- Compilers of tables and joins (see sproc.ops for the compilers' shape),
-- after Kafka Streams' processors: KTableSource, KTableFilter,
-- KTableMapValues, KStreamKTableJoin, KTableKTable{Inner,Left,Outer}Join
-- and KStreamKStreamJoin (sproc.stream_join). A table's rows live in a
-- store; a table derived from it (filter, map_values, a table join) reads
-- them through its parents, as Kafka Streams' value getters do.
local ffi = require "ffi"
local core = require "sproc.core"
local record = require "sproc.record"
local store = require "sproc.store"
local encode = require "sproc.encode"
local errors = require "sproc.errors"

local repartition = require "sproc.repartition"
local versions = require "sproc.versions"
local joined = require "sproc.joined"
local rekeyed = require("sproc.aggregate").rekeyed

local C = core.C
local VSET, KSET, OLD = record.VSET, record.KSET, record.OLD
local ffi_string = ffi.string
local errp, cerr = errors.errp, errors.cerr
local key_string = encode.key_string
local rawget, rawset, tonumber, error, char = rawget, rawset, tonumber, error, string.char
local encode_value = store.encode

local M = { compilers = {} }
local compile = M.compilers

-- The bound store of a handle declared by a table or to_table().
local function store_id(env, h)
  for _, b in ipairs(env.stores) do
    if b.name == h.name then return b._id end
  end
  error("sproc: store " .. h.name .. " is not bound", 0)
end

-- Passes r on with its value (and time, and a table change's value
-- before) replaced, then puts them back.
local function with_value(nxt, r, v, ts, before)
  local old, oldset, oldts, oldbefore = rawget(r, "value"), rawget(r, VSET), rawget(r, "ts"),
                                        rawget(r, OLD)
  rawset(r, "value", v); r[VSET] = true
  if ts then rawset(r, "ts", ts) end
  if before ~= nil then r[OLD] = before end
  nxt(r)
  rawset(r, "value", old); r[VSET] = oldset
  rawset(r, "ts", oldts)
  if oldbefore == nil then oldbefore = false end
  r[OLD] = oldbefore
end
M.with_value = with_value

-- The function that reads table node t's row of a key: value, time (nil
-- when there is none). part: the partition (nil: the record's).
local function lookup_of(t, env)
  env.lookups = env.lookups or {}
  local f = env.lookups[t]
  if f then return f end
  local ctx = env.ctx
  if t.kind == "table" or t.kind == "to_table" then
    local id = store_id(env, t.store)
    local valp, vlenp, tsp = ffi.new("const char *[1]"), ffi.new("size_t[1]"), ffi.new("int64_t[1]")
    local decode = joined.of(env)
    f = function(k, part)
      if C.sp_store_get_ts(ctx, id, part or -1, k, #k, valp, vlenp, tsp) == 0 then return nil end
      return decode(valp[0], tonumber(vlenp[0])), tonumber(tsp[0])
    end
  elseif t.kind == "table_filter" or t.kind == "table_map" then
    local up, fn, filter = lookup_of(t.parent, env), t.fn, t.kind == "table_filter"
    f = function(k, part)
      local v, ts = up(k, part)
      if v == nil then return nil end
      local row = { key = k, value = v, ts = ts }
      if filter then
        if fn(row) then return v, ts end
        return nil
      end
      return fn(row), ts
    end
  elseif t.kind == "table_join" then
    local left, right = lookup_of(t.left.parent, env), lookup_of(t.right.parent, env)
    local fn, how = t.fn, t.how
    f = function(k, part)
      local lv, lts = left(k, part)
      local rv, rts = right(k, part)
      if lv == nil and (how ~= "outer" or rv == nil) then return nil end
      if rv == nil and how == "inner" then return nil end
      return fn(lv, rv, k), math.max(lts or rts, rts or lts)
    end
  else
    error("sproc: " .. t.kind .. " is not a table", 0)
  end
  env.lookups[t] = f
  return f
end
M.lookup_of = lookup_of

local tags = { json = C.SP_VAL_JSON, string = C.SP_VAL_STRING, bytes = C.SP_VAL_STRING }

-- A table's topic: each record sets (or, with a nil value, deletes) its
-- key's row; the change goes on. A record without a key is dropped.
function compile.table(n, env, c)
  local ctx, batch, stats = env.ctx, env.batch, env.stats
  local id = store_id(env, n.store)
  local src = n.parent.source
  if C.sp_store_set_source(ctx, id, n.topic, tags[src.value], n.global and 1 or 0, errp) ~= 0 then
    error(cerr("table " .. n.topic), 0)
  end
  local nxt = c.children(n, env)
  local tag = char(tags[src.value])
  local json = src.value == "json"
  local where = "table " .. n.topic
  -- the row before the change goes with it (Kafka Streams' Change.oldValue)
  local before = lookup_of(n, env)
  local vs, history = n.versions, n.history
  return function(r)
    local k = key_string(r.key)
    if k == nil then
      stats.filtered = stats.filtered + 1
      return
    end
    local rec = batch.recs[batch.cur]
    if vs then
      local deleted = rec.val == nil or (json and r.value == nil)
      local kept, latest = versions.put(vs, history, k, (not deleted) and r.value or nil, r.ts)
      -- older than the history: dropped; out of order: history only
      -- (Kafka Streams forwards neither)
      if not kept then stats.late = stats.late + 1 end
      if not latest then return end
    end
    local old = before(k)
    if old == nil then old = false end
    r[OLD] = old
    local rc
    if rec.val == nil or (json and r.value == nil) then
      rc = C.sp_store_delete(ctx, id, -1, k, #k, errp)
    else
      local v = tag .. ffi_string(rec.val, rec.val_len)
      rc = C.sp_store_put_at(ctx, id, -1, k, #k, v, #v, r.ts, errp)
    end
    if rc ~= 0 then error(cerr(where), 0) end
    nxt(r)
  end
end

-- A stream's latest value per key as a table (a store with a changelog).
function compile.to_table(n, env, c)
  local ctx, stats = env.ctx, env.stats
  local id = store_id(env, n.store)
  local nxt = c.children(n, env)
  local where = "to_table(" .. n.store.name .. ")"
  local before = lookup_of(n, env)
  return function(r)
    local k = key_string(r.key)
    if k == nil then
      stats.filtered = stats.filtered + 1
      return
    end
    local old = before(k)
    local v = r.value
    local rc
    if v == nil then
      rc = C.sp_store_delete(ctx, id, -1, k, #k, errp)
    else
      local p, len = encode_value(v)
      if not p then error(where .. ": " .. len, 0) end
      rc = C.sp_store_put_at(ctx, id, -1, k, #k, p, len, r.ts, errp)
    end
    if rc ~= 0 then error(cerr(where), 0) end
    local was = rawget(r, OLD)
    if old == nil then old = false end
    r[OLD] = old
    nxt(r)
    r[OLD] = was
  end
end

-- A change's row before, through a filter or a map (Kafka Streams'
-- computeOldValue): false when there was none.
local function old_row(r, f)
  local old = rawget(r, OLD)
  if old == false or old == nil then return false end
  local v = f({ key = r.key, value = old, ts = r.ts })
  if v == nil then return false end
  return v
end

function compile.table_filter(n, env, c)
  local fn, nxt = n.fn, c.children(n, env)
  local function passes(row) if fn(row) then return row.value end return nil end
  return function(r)
    local before = old_row(r, passes)
    local v = r.value
    if v ~= nil and not fn(r) then v = nil end
    with_value(nxt, r, v, nil, before)
  end
end

function compile.table_map(n, env, c)
  local fn, nxt = n.fn, c.children(n, env)
  return function(r)
    local before = old_row(r, fn)
    if r.value == nil then return (with_value(nxt, r, nil, nil, before)) end
    with_value(nxt, r, fn(r), nil, before)
  end
end

function compile.to_stream(n, env, c)
  return c.children(n, env)
end

-- A join's operators after it: compiled once, whichever side comes first.
local function downstream(j, env, c)
  env.joined = env.joined or {}
  local f = env.joined[j]
  if not f then
    local saved = env.serdes
    env.serdes = { key = "string", value = "json" }
    f = c.children(j, env)
    env.serdes = saved
    env.joined[j] = f
  end
  return f
end
M.downstream = downstream

-- Hits and misses of a join's lookups, for the metrics.
local function counters(env, name)
  local counts = C.sp_ctx_op_counters(env.ctx)
  if counts == nil then return nil end
  local hit = C.sp_ctx_operator(env.ctx, "join:" .. name .. ":hit", -1)
  local miss = C.sp_ctx_operator(env.ctx, "join:" .. name .. ":miss", -1)
  return counts, hit, miss
end

-- Kafka Streams' KStreamKTableJoin: a record without a value is dropped,
-- as is one without a key to look up (but for a left join of a record
-- without a key of its own); table updates emit nothing.
local function join_table(n, env, c, keyfn)
  local t, fn, how = n.table, n.fn, n.how
  local stats = env.stats
  local lookup = lookup_of(t, env)
  local part = t.global and 0 or nil
  local saved = env.serdes
  env.serdes = { key = saved.key, value = "json" }
  local nxt = c.children(n, env)
  env.serdes = saved
  local counts, hit, miss = counters(env, n.name)
  local left = how == "left"
  local vs, history = t.versions, t.history
  return function(r)
    local v = r.value
    local k = keyfn and keyfn(r) or r.key
    if v == nil or (k == nil and not (left and r.key == nil)) then
      stats.filtered = stats.filtered + 1
      return
    end
    local tv
    if k ~= nil then
      if vs then
        tv = versions.get(vs, history, key_string(k), r.ts)
      else
        tv = lookup(key_string(k), part)
      end
    end
    if counts ~= nil then
      if tv ~= nil then counts[hit] = counts[hit] + 1 else counts[miss] = counts[miss] + 1 end
    end
    if tv == nil and not left then return end
    with_value(nxt, r, fn(v, tv, r.key))
  end
end

-- A join of a table that is not global by another key than the record's
-- (key_by before it, or a key function) goes through a repartition topic
-- keyed by that key (Kafka Streams' selectKey then join): the result has
-- that key.
function compile.join_table(n, env, c)
  local rekey = not n.table.global and (n.keyfn or rekeyed(n))
  if not rekey then return join_table(n, env, c, n.keyfn) end
  local through = repartition.through(n, env, env.app_id .. "-" .. n.name .. "-repartition",
                                      function() return join_table(n, env, c, nil) end)
  local keyfn = n.keyfn
  if not keyfn then return through end
  return function(r)
    local old, oldset = rawget(r, "key"), rawget(r, KSET)
    rawset(r, "key", keyfn(r)); r[KSET] = true
    through(r)
    rawset(r, "key", old); r[KSET] = oldset
  end
end

-- Kafka Streams' KTableKTable{Inner,Left,Outer}Join, one side's change:
-- the other side's row of the key, and the result as its rules say
-- (nothing, a tombstone or the joiner's value); the result's time is the
-- later of the two rows'.
local function table_join_side(n, env, c)
  local j, side = n.join, n.side
  local nxt = downstream(j, env, c)
  local other = lookup_of(side == "left" and j.right.parent or j.left.parent, env)
  local fn, how = j.fn, j.how
  -- the side whose missing row still gives a result
  local outer_this = how == "outer" or (how == "left" and side == "left")
  local outer_other = how == "outer" or (how == "left" and side == "right")
  return function(r)
    local k = key_string(r.key)
    if k == nil then return end
    local v = r.value
    local ov, ots = other(k)
    -- a row deleted that was there: its result goes too (a tombstone)
    local was = rawget(r, OLD)
    if ov == nil and (not outer_this or (v == nil and not was)) then return end
    local out
    if v ~= nil or (outer_other and ov ~= nil) then
      if side == "left" then out = fn(v, ov, r.key) else out = fn(ov, v, r.key) end
    end
    local ts = r.ts
    if ots and ots > ts then ts = ots end
    -- the result's row before is not tracked: nothing after a join asks
    with_value(nxt, r, out, ts, false)
  end
end

function compile.join_side(n, env, c)
  local j = n.join
  if j.kind == "table_join" then return table_join_side(n, env, c) end
  local side = require("sproc.stream_join").side
  if not rekeyed(n) then return side(n, env, c) end
  return repartition.through(n, env, env.app_id .. "-" .. j.name .. "-" .. n.side .. "-repartition",
                             function() return side(n, env, c) end)
end

return M
