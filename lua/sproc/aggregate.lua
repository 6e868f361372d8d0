-- Compilers of windowed aggregations (see sproc.ops for the compilers'
-- shape): the record goes into the core's windows, Lua aggregates are
-- updated beside them, and the operators after the aggregation run on its
-- results, which the core appends to the batch as records of the
-- operator's own topic. A re-keyed stream reaches its aggregation through
-- a repartition topic first.
local ffi = require "ffi"
local core = require "sproc.core"
local record = require "sproc.record"
local json = require "sproc.json"
local encode = require "sproc.encode"
local store = require "sproc.store"
local errors = require "sproc.errors"
local lua_aggregates = require "sproc.lua_aggregates"
local repartition = require "sproc.repartition"

local C = core.C
local VSET, KSET = record.VSET, record.KSET
local ffi_string = ffi.string
local errp, cerr, bad_input = errors.errp, errors.cerr, errors.bad_input
local key_string, value_bytes = encode.key_string, encode.value_bytes
local tonumber, rawget, rawset, ipairs, error = tonumber, rawget, rawset, ipairs, error

local window_kinds = { tumbling = C.SP_WIN_TUMBLING, hopping = C.SP_WIN_HOPPING,
                       sliding = C.SP_WIN_SLIDING, session = C.SP_WIN_SESSION }
local agg_kinds = { count = C.SP_AGG_COUNT, sum = C.SP_AGG_SUM, min = C.SP_AGG_MIN,
                    max = C.SP_AGG_MAX, avg = C.SP_AGG_AVG, first = C.SP_AGG_FIRST,
                    last = C.SP_AGG_LAST, count_distinct = C.SP_AGG_DISTINCT,
                    approx_count_distinct = C.SP_AGG_APPROX_DISTINCT, custom = C.SP_AGG_CUSTOM }
-- distinct counts take their values as bytes
local distinct = { count_distinct = true, approx_count_distinct = true }
local NaN = 0 / 0

local M = { compilers = {} }

--- A key_by between the source and this node: records of one key may
--- come from any input partition.
function M.rekeyed(n)
  local p = n.parent
  while p do
    if p.kind == "key_by" then return true end
    p = p.parent
  end
  return false
end

--- The name of the repartition topic in front of aggregation node agg.
function M.repartition_topic(app_id, agg)
  return app_id .. "-" .. agg.store_name .. "-repartition"
end

-- The operators after an aggregation run on its results. Lua aggregates'
-- result functions turn their accumulators into values here.
local function compile_results(n, env, c)
  local batch, task = env.batch, env.task
  local serdes = { key = "string", value = "json" }
  local saved = env.serdes
  env.serdes = serdes
  local nxt = c.children(n, env)
  env.serdes = saved
  local results = {}
  for _, a in ipairs(n.aggs) do
    if a.agg == "custom" and a.result then results[#results + 1] = a end
  end
  local entry, view, reset = repartition.internal_entry(env, serdes, task, nxt)
  if #results == 0 then return entry end
  return function(i)
    batch.task = task
    local bad = reset(i)
    if bad then bad_input(bad) end
    local v = view.value
    if v ~= nil then
      local t = json.decode(json.encode(v))   -- a table of its own
      for _, a in ipairs(results) do t[a.name] = a.result(t[a.name]) end
      local old = rawget(view, "value")
      rawset(view, "value", t); view[VSET] = true
      nxt(view)
      rawset(view, "value", old); view[VSET] = false
    else
      nxt(view)
    end
  end
end

function M.compilers.window(n, env, c)
  if #n.children ~= 1 or n.children[1].kind ~= "aggregate" then
    error("window() must be followed by aggregate()", 0)
  end
  if M.rekeyed(n) then
    return repartition.through(n, env, M.repartition_topic(env.app_id, n.children[1]),
                               function() return c.children(n, env) end)
  end
  return c.children(n, env)
end

-- The core's window operator of aggregation node n.
local function create_operator(n, env)
  local w = n.parent.window
  local na = #n.aggs
  local kinds = ffi.new("int32_t[?]", na)
  local names = ffi.new("const char *[?]", na)
  n._names = {}
  for i, a in ipairs(n.aggs) do
    kinds[i - 1] = agg_kinds[a.agg]
    n._names[i] = a.name
    names[i - 1] = n._names[i]
  end
  local topicp = ffi.new("int32_t[1]")
  local size = w.kind == "session" and w.gap or w.size
  local emit = n.emit_mode == "update" and math.max(1, n.emit_interval or 1) or 0
  local op = C.sp_window_create(env.ctx, n.store_name, window_kinds[w.kind], size, w.advance or size,
                                w.grace, emit, na, kinds, names, topicp, errp)
  if op < 0 then error(cerr("aggregate(" .. n.store_name .. ")"), 0) end
  C.sp_store_add_task(env.ctx, C.sp_store_find(env.ctx, n.store_name), env.task)
  return op
end

-- What a late record does: nothing, a dead letter, or the script's hook.
local function on_late(n, env)
  local late = n.late
  if late ~= "dlq" then return late end
  local ctx, batch = env.ctx, env.batch
  return function(_, dropped)
    local why = "late for " .. dropped .. " window(s) of aggregate " .. n.store_name
    if C.sp_dead_letter(ctx, batch.cur, why, #why, errp) ~= 0 then error(cerr("late record"), 0) end
  end
end

function M.compilers.aggregate(n, env, c)
  local ctx, stats, batch = env.ctx, env.stats, env.batch
  local op = create_operator(n, env)
  local index = C.sp_source_count(ctx)   -- before the operators after it add theirs
  env.by_source[index] = compile_results(n, env, c)
  local custom = lua_aggregates.compile(n, env, op)
  local na = #n.aggs
  local fns, dist, any_distinct = {}, {}, false
  for i, a in ipairs(n.aggs) do
    fns[i], dist[i] = a.fn or false, distinct[a.agg] or false
    any_distinct = any_distinct or dist[i]
  end
  local vals = ffi.new("double[?]", na)
  local sv = any_distinct and ffi.new("const char *[?]", na) or nil
  local sl = any_distinct and ffi.new("size_t[?]", na) or nil
  local keep = {}
  local late = on_late(n, env)
  local raw_key = env.serdes.key ~= "json"
  local where = "aggregate(" .. n.store_name .. ")"
  return function(r)
    -- the record's own key as bytes when nothing replaced it (no string),
    -- else the replacement as text
    local k, kp, kl
    if raw_key and not rawget(r, KSET) then
      local rec = batch.recs[batch.cur]
      kp, kl = rec.key, rec.key_len
      if custom and kp ~= nil then k = ffi_string(kp, kl) end
    else
      k = key_string(r.key)
      kp, kl = k, k and #k
    end
    if kp == nil then
      -- a null key has no group: dropped before the aggregation, counted
      stats.filtered = stats.filtered + 1
      return
    end
    for i = 1, na do
      local f = fns[i]
      if dist[i] then
        local v = f(r)
        if v == nil then
          sv[i - 1] = nil
        else
          v = key_string(v)
          keep[i] = v
          sv[i - 1], sl[i - 1] = v, #v
        end
      else
        vals[i - 1] = f and (tonumber(f(r)) or NaN) or 0
      end
    end
    local dropped = C.sp_window_add(ctx, op, kp, kl, r.ts, vals, sv, sl, errp)
    if dropped < 0 then error(cerr(where), 0) end
    if custom then custom(k, r) end
    if dropped > 0 and late then late(r, dropped) end
  end
end

return M
