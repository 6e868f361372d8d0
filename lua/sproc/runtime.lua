-- The runtime: loads a user script, compiles its topology against the
-- native core, and runs batches. The core calls run_batch() once per batch
-- through one protected call; records that fail go to the error policy
-- here, and the batch goes on after them.
local ffi = require "ffi"
local core = require "sproc.core"
local sproc = require "sproc"
local record = require "sproc.record"
local json = require "sproc.json"
local store = require "sproc.store"
local window = require "sproc.window"

local C = core.C
local VSET, KSET = record.VSET, record.KSET
local proj, proj_len = record.proj, record.proj_len
local ffi_string = ffi.string
local type, tostring, error, xpcall = type, tostring, error, xpcall
local getmetatable = getmetatable

local M = {}

local errp = ffi.new("const char *[1]")

local function cerr(what)
  return what .. ": " .. ffi_string(errp[0])
end

-- Errors about an input record (not the script) carry this metatable, and
-- outputs Kafka refused at once (too large, ...) the second.
local InputError = {}
InputError.__tostring = function(e) return e.msg end
local OutputError = {}
OutputError.__tostring = function(e) return e.msg end
local function output_failed(what)
  error(setmetatable({ msg = cerr(what) }, OutputError))
end

-- Turns a value into bytes for a sink: returns pointer-or-string, length.
-- A record's JSON value that was not replaced is written as it came.
local function encoder(serde, batch, which)
  return function(v)
    if v == nil then return nil, 0 end
    local tv = type(v)
    if tv == "table" then
      local mt = getmetatable(v)
      if mt and mt.__sproc_raw then
        local rec = batch.recs[batch.cur]
        if mt.__sproc_raw == 1 then return rec.val, rec.val_len end
        return rec.key, rec.key_len
      end
      if serde == "string" or serde == "bytes" then
        error("cannot write a table as " .. serde .. " " .. which ..
              " (use json or return a string)", 0)
      end
      local s = json.encode(v)
      return s, #s
    end
    if serde == "json" then
      local s = json.encode(v)
      return s, #s
    end
    if tv ~= "string" then
      if serde == "bytes" then
        error("a bytes " .. which .. " must be a string, got " .. tv, 0)
      end
      v = tostring(v)
    end
    return v, #v
  end
end

-- Whether a sink with this serde writes a record's own key or value as it
-- came (what a source with serde src holds): all but a JSON sink of bytes
-- or text, which quotes them.
local function takes_raw(sink, src)
  return sink ~= "json" or src == "json"
end

-- The bytes of a record's value for a sink that writes values as they are
-- (JSON text stays JSON): the record's own when nothing replaced it, a
-- projection's, or the replacement encoded.
local function value_bytes(r, enc_val, batch)
  local set = rawget(r, VSET)
  if not set then
    local rec = batch.recs[batch.cur]
    return rec.val, rec.val_len
  end
  if set ~= true then return proj[0], proj_len[0] end   -- select()'s
  return enc_val(r.value)
end

local compile_node, rekeyed

local function compile_children(n, env)
  local kids = n.children
  if #kids == 0 then return function() end end
  if #kids == 1 then return compile_node(kids[1], env) end
  local fns = {}
  for i = 1, #kids do fns[i] = compile_node(kids[i], env) end
  local nf = #fns
  return function(r)
    for i = 1, nf do fns[i](r) end
  end
end

local function count_filtered(stats)
  stats.filtered = stats.filtered + 1
end

-- Names operators for the metrics: kind, what it names, and its place.
local function op_name(n)
  if n.kind == "source" then
    local s = n.source
    return "source:" .. (s.kind == "timer" and ("timer#" .. n.id) or table.concat(s.names, ","))
  elseif n.kind == "to" then return "to:" .. n.opts.topic .. "#" .. n.id
  elseif n.kind == "aggregate" then return "aggregate:" .. n.store_name
  end
  return n.kind .. "#" .. n.id
end

local compile_inner

-- Every operator counts the records that enter it (the metrics endpoint
-- reads the counters; what leaves one is what enters those after it).
function compile_node(n, env)
  local ctx = env.ctx
  local counts = C.sp_ctx_op_counters(ctx)
  local idx = counts ~= nil and C.sp_ctx_operator(ctx, op_name(n), env.op_parent or -1) or -1
  local saved = env.op_parent
  env.op_parent = idx >= 0 and idx or saved
  local f = compile_inner(n, env)
  env.op_parent = saved
  if idx < 0 then return f end
  return function(r)
    counts[idx] = counts[idx] + 1
    return f(r)
  end
end

function compile_inner(n, env)
  local kind, fn = n.kind, n.fn
  local stats, ctx, batch = env.stats, env.ctx, env.batch
  env.describe[#env.describe + 1] = n

  if kind == "source" or kind == "branch_out" then
    return compile_children(n, env)
  elseif kind == "filter" then
    local nxt = compile_children(n, env)
    return function(r)
      if fn(r) then nxt(r) else count_filtered(stats) end
    end
  elseif kind == "map" then
    local nxt = compile_children(n, env)
    return function(r)
      local v = fn(r)
      local old, oldset = rawget(r, "value"), rawget(r, VSET)
      rawset(r, "value", v); r[VSET] = true
      nxt(r)
      rawset(r, "value", old); r[VSET] = oldset
    end
  elseif kind == "key_by" then
    local nxt = compile_children(n, env)
    return function(r)
      local k = fn(r)
      local old, oldset = rawget(r, "key"), rawget(r, KSET)
      rawset(r, "key", k); r[KSET] = true
      nxt(r)
      rawset(r, "key", old); r[KSET] = oldset
    end
  elseif kind == "select" then
    local nxt = compile_children(n, env)
    local view, project = record.projection(ctx, batch, n.fields)
    return function(r)
      -- a tombstone goes on as one
      if batch.recs[batch.cur].val == nil then return nxt(r) end
      if not project() then
        error(setmetatable({ msg = "select(): the value is not a JSON object" }, InputError))
      end
      -- the projection stays in the core's buffer until a sink reads it
      local old = rawget(r, "value")
      rawset(r, "value", nil); r[VSET] = view
      nxt(r)
      rawset(r, "value", old); r[VSET] = false
    end
  elseif kind == "each" then
    local nxt = compile_children(n, env)
    return function(r)
      fn(r)
      nxt(r)
    end
  elseif kind == "flat_map" then
    local nxt = compile_children(n, env)
    local cur, emitted
    local function emit(v)
      local old, oldset = rawget(cur, "value"), rawget(cur, VSET)
      rawset(cur, "value", v); cur[VSET] = true
      emitted = emitted + 1
      nxt(cur)
      rawset(cur, "value", old); cur[VSET] = oldset
    end
    return function(r)
      local prev_cur, prev_emitted = cur, emitted
      cur, emitted = r, 0
      fn(r, emit)
      if emitted == 0 then count_filtered(stats) end
      cur, emitted = prev_cur, prev_emitted
    end
  elseif kind == "branch" then
    local preds, outs = n.preds, {}
    for i = 1, #preds do outs[i] = compile_node(n.children[i], env) end
    local np = #preds
    return function(r)
      for i = 1, np do
        if preds[i](r) then return outs[i](r) end
      end
      count_filtered(stats)
    end
  elseif kind == "to" then
    local o = n.opts
    local sink = C.sp_sink_kafka(ctx, o.topic, errp)
    if sink < 0 then error(cerr("to(" .. o.topic .. ")"), 0) end
    local enc_key = encoder(o.key or "auto", batch, "key")
    local enc_val = encoder(o.value or "auto", batch, "value")
    local headers = o.headers
    local fwd = o.forward_headers == false and 0 or 1
    local raw_key, raw_val = takes_raw(o.key, env.serdes.key), takes_raw(o.value, env.serdes.value)
    return function(r)
      local kraw = raw_key and not rawget(r, KSET)
      local vraw = raw_val and not rawget(r, VSET)
      if kraw and vraw and not headers then
        -- pass-through: the core writes the record's own bytes
        local ts = rawget(r, "ts")
        if C.sp_emit_rec(ctx, sink, ts and 1 or 0, ts or 0, fwd, errp) ~= 0 then
          output_failed("output to topic " .. o.topic)
        end
        return
      end
      local rec = batch.recs[batch.cur]
      local kp, kl, vp, vl
      if kraw then kp, kl = rec.key, rec.key_len else kp, kl = enc_key(r.key) end
      if vraw then
        vp, vl = rec.val, rec.val_len
      else
        local set = rawget(r, VSET)
        if set and set ~= true then vp, vl = proj[0], proj_len[0] else vp, vl = enc_val(r.value) end
      end
      if headers then
        for hk, hv in pairs(headers(r) or {}) do
          hv = tostring(hv)
          C.sp_emit_header(ctx, hk, #hk, hv, #hv, errp)
        end
      end
      if C.sp_emit(ctx, sink, kp, kl, vp, vl, r.ts, fwd, errp) ~= 0 then
        output_failed("output to topic " .. o.topic)
      end
    end
  elseif kind == "print" then
    local sink = C.sp_sink_stdout(ctx, errp)
    if sink < 0 then error(cerr("print()"), 0) end
    local with_key = n.opts.key
    local enc_key = encoder("auto", batch, "key")
    local enc_val = encoder("auto", batch, "value")
    return function(r)
      local kp, kl
      if with_key then kp, kl = enc_key(r.key) end
      local vp, vl = value_bytes(r, enc_val, batch)
      if C.sp_emit(ctx, sink, kp, kl or 0, vp, vl, r.ts, 0, errp) ~= 0 then
        error(cerr("print()"), 0)
      end
    end
  elseif kind == "to_files" or kind == "to_parquet" then
    local o = n.opts
    local what = kind .. "(" .. o.dir .. ")"
    local fo = ffi.new("sp_file_opts")
    local keep = { o.prefix, o.suffix, o.checkpoint and sproc.here(o.checkpoint),
                   o.schema and o.schema.spec }
    fo.prefix, fo.suffix, fo.checkpoint, fo.schema = keep[1], keep[2], keep[3], keep[4]
    fo.roll_bytes = o.roll_bytes or (kind == "to_parquet" and 128 or 64) * 1024 * 1024
    fo.roll_ms = o.roll_seconds and o.roll_seconds * 1000 or 0
    fo.codec = o.codec or 0
    fo.dictionary = o.dictionary and 1 or 0
    fo.row_group_bytes = o.row_group_bytes or 64 * 1024 * 1024
    fo.row_group_rows = o.row_group_rows or 0
    if keep[3] then
      -- entries are named after their files: one sink per checkpoint
      env.checkpoints = env.checkpoints or {}
      local other = env.checkpoints[keep[3]]
      if other and other ~= o.dir then
        error(what .. ": checkpoint " .. o.checkpoint .. " is used by the files in " .. other ..
              " already (give each file sink its own)", 0)
      end
      env.checkpoints[keep[3]] = o.dir
    end
    local sink = C.sp_sink_files(ctx, sproc.here(o.dir), fo, errp)
    if sink < 0 then error(cerr(what), 0) end
    local enc_val = encoder("auto", batch, "value")
    return function(r)
      local vp, vl = value_bytes(r, enc_val, batch)
      local rc = C.sp_emit(ctx, sink, nil, 0, vp, vl, r.ts, 0, errp)
      if rc == C.SP_EMALFORMED then
        error(setmetatable({ msg = cerr(what) }, InputError))
      elseif rc ~= 0 then
        error(cerr(what), 0)
      end
    end
  elseif kind == "window" then
    if #n.children ~= 1 or n.children[1].kind ~= "aggregate" then
      error("window() must be followed by aggregate()", 0)
    end
    if rekeyed(n) then return M.compile_repartition(n, env) end
    return compile_children(n, env)
  elseif kind == "aggregate" then
    return M.compile_aggregate(n, env)
  end
  error("sproc: unknown operator " .. tostring(kind))
end

-- A source's entry: resets the view, checks the input, sets event time,
-- then runs the operators.
local function compile_source(src, env)
  local batch = env.batch
  -- the task whose stream time the source's records move
  local task = C.sp_ctx_task(env.ctx, table.concat(src.names, ","))
  if task < 0 then error("sproc.source: too many sources (63 at most)", 0) end
  src.task, env.task = task, task
  if src.schema then
    src.schema_id = C.sp_schema_define(env.ctx, src.schema.spec, errp)
    if src.schema_id < 0 then error(cerr("sproc.source: schema"), 0) end
  end
  local view, reset = record.new_view(env.ctx, env.batch, src)
  env.serdes = { key = src.key, value = src.value }
  local first = compile_node(src.node, env)
  local time = src.time
  local stats = env.stats
  local skip_tombstones = src.tombstones == "skip"
  return function(i)
    batch.task = task
    if skip_tombstones and batch.recs[i].val == nil then return count_filtered(stats) end
    local bad = reset(i)
    if bad then error(setmetatable({ msg = bad }, InputError)) end
    if time then
      local ts = time(view)
      if type(ts) ~= "number" then
        error(setmetatable({ msg = "event time function returned " ..
                             tostring(ts) .. ", not epoch milliseconds" }, InputError))
      end
      rawset(view, "ts", ts)
      batch.recs[i].ts = ts  -- the core's stream time and TTLs use it
    end
    first(view)
  end
end

-- The operators after an aggregation run on its results: records the core
-- appends to the batch with the operator's own topic. Lua aggregates'
-- result functions turn their accumulators into values here.
local function compile_results(n, env)
  local batch, task = env.batch, env.task
  local serdes = { key = "string", value = "json" }
  local view, reset = record.new_view(env.ctx, env.batch, serdes)
  local saved = env.serdes
  env.serdes = serdes
  local nxt = compile_children(n, env)
  env.serdes = saved
  local results = {}
  for _, a in ipairs(n.aggs) do
    if a.agg == "custom" and a.result then results[#results + 1] = a end
  end
  if #results == 0 then
    return function(i)
      batch.task = task
      local bad = reset(i)
      if bad then error(setmetatable({ msg = bad }, InputError)) end
      nxt(view)
    end
  end
  return function(i)
    batch.task = task
    local bad = reset(i)
    if bad then error(setmetatable({ msg = bad }, InputError)) end
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

-- Lua aggregates: after the core placed the record in its windows, each
-- accumulator (a companion store entry) is read, added to, and written
-- back. As in Kafka Streams, sessions that merge go into a fresh init()
-- (merge each, then add); a new sliding window is built by merging the
-- accumulators of the records it holds (add(init(), r), kept per record),
-- so Lua aggregates on sessions and sliding windows need merge().
function M.custom_aggregates(n, env, op)
  local ctx = env.ctx
  local list = {}
  for i, a in ipairs(n.aggs) do
    if a.agg == "custom" then list[#list + 1] = { index = i - 1, a = a } end
  end
  if #list == 0 then return nil end
  local kind = n.parent.window.kind
  local st = C.sp_window_companion(ctx, op)
  local cap = 64
  local starts, ends, made = ffi.new("int64_t[?]", cap), ffi.new("int64_t[?]", cap),
                             ffi.new("int32_t[?]", cap)
  local mstarts = ffi.new("int64_t[64]")
  local valp, vlenp = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local keyp, klenp = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local char, byte = string.char, string.byte
  local wkey = store.wkey
  local where = "aggregate(" .. n.store_name .. ")"
  local function load(key)
    if C.sp_store_get(ctx, st, -1, key, #key, valp, vlenp) == 0 then return nil end
    return store.decode(valp[0], tonumber(vlenp[0]))
  end
  local function save(key, v, ts, c)
    local p, len = store.encode(v)
    if not p then error(where .. ": " .. c.a.name .. ": " .. len, 0) end
    if C.sp_store_put_at(ctx, st, -1, key, #key, p, len, ts, errp) ~= 0 then error(cerr(where), 0) end
  end
  -- the records' own accumulators of k from time from to time to, merged
  -- into acc in time order
  local function merge_records(c, k, from, to, acc)
    local tag = 0x60 + c.index
    local prefix = wkey(k, 0):sub(1, -9)
    local cur, strict = wkey(k, from), 0
    while C.sp_store_next(ctx, st, -1, cur, #cur, strict, keyp, klenp, valp, vlenp) == 1 do
      local key = ffi_string(keyp[0], klenp[0])
      if #key < #prefix + 9 or key:sub(1, #prefix) ~= prefix then break end
      local t = 0
      for i = #prefix + 1, #prefix + 8 do t = t * 256 + byte(key, i) end
      if t > to then break end
      if #key == #prefix + 9 and byte(key, -1) == tag then
        for _, x in ipairs(store.decode(valp[0], tonumber(vlenp[0]))) do acc = c.a.merge(acc, x) end
      end
      cur, strict = key, 1
    end
    return acc
  end
  return function(k, r)
    local nj = C.sp_window_joined(ctx, starts, ends, made, cap)
    if nj > cap then
      cap = nj
      starts, ends, made = ffi.new("int64_t[?]", cap), ffi.new("int64_t[?]", cap), ffi.new("int32_t[?]", cap)
      C.sp_window_joined(ctx, starts, ends, made, cap)
    end
    -- a sliding record's own accumulator, for the windows that hold it
    -- and are made later (even when it joined none now: late for its
    -- own window, it may be in a later one)
    if kind == "sliding" then
      for _, c in ipairs(list) do
        local key = wkey(k, r.ts) .. char(0x60 + c.index)
        local own = load(key) or {}
        own[#own + 1] = c.a.add(c.a.init(), r)
        save(key, own, r.ts, c)
      end
    end
    local nm = kind == "session" and C.sp_window_merged(ctx, mstarts, 64) or 0
    for j = 0, nj - 1 do
      local start, wend = tonumber(starts[j]), tonumber(ends[j])
      for _, c in ipairs(list) do
        local key = wkey(k, start) .. char(0x40 + c.index)
        local acc
        if kind == "session" then
          acc = c.a.init()
          for m = 0, nm - 1 do
            local mkey = wkey(k, tonumber(mstarts[m])) .. char(0x40 + c.index)
            local other = load(mkey)
            if other ~= nil then
              acc = c.a.merge(acc, other)
              C.sp_store_delete(ctx, st, -1, mkey, #mkey, errp)
            end
          end
          acc = c.a.add(acc, r)
        elseif kind == "sliding" and made[j] == 1 then
          acc = merge_records(c, k, start, wend, c.a.init())
        else
          acc = load(key)
          if acc == nil then acc = c.a.init() end
          acc = c.a.add(acc, r)
        end
        save(key, acc, wend, c)
      end
    end
  end
end

local NaN = 0 / 0

-- A key_by between the source and this node: records of one key may come
-- from any input partition.
function rekeyed(n)
  local p = n.parent
  while p do
    if p.kind == "key_by" then return true end
    p = p.parent
  end
  return false
end

local function key_string(k)
  local tk = type(k)
  if tk == "string" or k == nil then return k end
  return tk == "table" and json.encode(k) or tostring(k)
end

-- Re-keyed records reach their aggregation through a repartition topic
-- keyed by the new key, so that each key has one partition (and one
-- process) whatever partition it came from. The test driver, which has no
-- Kafka, moves the record to that partition in place.
function M.compile_repartition(n, env)
  local ctx, batch = env.ctx, env.batch
  local agg = n.children[1]
  local src = n.source
  if C.sp_ctx_kafka_backed(ctx) == 0 then
    local nxt = compile_children(n, env)
    local nparts = C.sp_ctx_partitions(ctx)
    return function(r)
      local k = key_string(r.key)
      if k == nil then return nxt(r) end
      local rec = batch.recs[batch.cur]
      local old = rec.partition
      rec.partition = C.sp_partition_for(k, #k, nparts)
      nxt(r)
      rec.partition = old
    end
  end
  local topic = env.app_id .. "-" .. agg.store_name .. "-repartition"
  local sink = C.sp_sink_kafka(ctx, topic, errp)
  if sink < 0 then error(cerr("repartition topic " .. topic), 0) end
  if C.sp_source_internal(ctx, topic, errp) < 0 then error(cerr("repartition topic " .. topic), 0) end
  local index = C.sp_source_count(ctx)   -- before the aggregation adds its own
  local rsrc = { key = "string", value = src.value, kind = "topic", names = { topic } }
  local view, reset = record.new_view(ctx, batch, rsrc)
  local saved, saved_task = env.serdes, env.task
  local task = C.sp_ctx_task(ctx, topic)
  env.serdes, env.task = rsrc, task
  local nxt = compile_children(n, env)
  env.serdes, env.task = saved, saved_task
  env.by_source[index] = function(i)
    batch.task = task
    local bad = reset(i)
    if bad then error(setmetatable({ msg = bad }, InputError)) end
    nxt(view)
  end
  env.describe_repartition = env.describe_repartition or {}
  env.describe_repartition[#env.describe_repartition + 1] = topic
  local enc_val = encoder(src.value == "json" and "json" or "auto", batch, "value")
  return function(r)
    local k = key_string(r.key)
    local vp, vl = value_bytes(r, enc_val, batch)
    -- the event time travels as the record's timestamp (Kafka's producer
    -- reads 0 as "now": epoch 0 goes as 1 ms, in the same windows unless a
    -- window is 1 ms long)
    local ts = r.ts
    if ts == 0 then ts = 1 end
    if C.sp_emit(ctx, sink, k, k and #k or 0, vp, vl, ts, 0, errp) ~= 0 then
      output_failed("repartition topic " .. topic)
    end
  end
end

function M.compile_aggregate(n, env)
  local ctx, stats, batch = env.ctx, env.stats, env.batch
  local w = n.parent.window
  local na = #n.aggs
  local kinds = ffi.new("int32_t[?]", na)
  local names = ffi.new("const char *[?]", na)
  local fns = {}
  n._names = {}
  for i, a in ipairs(n.aggs) do
    kinds[i - 1] = window.agg_kinds[a.agg]
    n._names[i] = a.name
    names[i - 1] = n._names[i]
    fns[i] = a.fn or false
  end
  local topicp = ffi.new("int32_t[1]")
  local size = w.kind == "session" and w.gap or w.size
  local op = C.sp_window_create(ctx, n.store_name, window.kinds[w.kind], size, w.advance or size,
                                w.grace, n.emit_mode == "update" and math.max(1, n.emit_interval or 1) or 0,
                                na, kinds, names,
                                topicp, errp)
  if op < 0 then error(cerr("aggregate(" .. n.store_name .. ")"), 0) end
  local index = C.sp_source_count(ctx)   -- before the operators after it add theirs
  env.by_source[index] = compile_results(n, env)
  local custom = M.custom_aggregates(n, env, op)
  local vals = ffi.new("double[?]", na)
  -- distinct counts take their values as bytes
  local distinct = {}
  for i, a in ipairs(n.aggs) do distinct[i] = window.distinct[a.agg] or false end
  local any_distinct = false
  for i = 1, na do any_distinct = any_distinct or distinct[i] end
  local sv = any_distinct and ffi.new("const char *[?]", na) or nil
  local sl = any_distinct and ffi.new("size_t[?]", na) or nil
  local keep = {}
  local late = n.late
  local encode = json.encode
  local raw_key = env.serdes.key ~= "json"
  return function(r)
    -- the record's own key as bytes when nothing replaced it (no string),
    -- else the replacement as text
    local k, kp, kl
    if raw_key and not rawget(r, KSET) then
      local rec = batch.recs[batch.cur]
      kp, kl = rec.key, rec.key_len
      if custom and kp ~= nil then k = ffi_string(kp, kl) end
    else
      k = r.key
      local tk = type(k)
      if tk ~= "string" and k ~= nil then k = tk == "table" and encode(k) or tostring(k) end
      kp, kl = k, k and #k
    end
    if kp == nil then
      -- a null key has no group: dropped before the aggregation, counted
      stats.filtered = stats.filtered + 1
      return
    end
    for i = 1, na do
      local f = fns[i]
      if distinct[i] then
        local v = f(r)
        if v == nil then
          sv[i - 1] = nil
        else
          if type(v) ~= "string" then v = type(v) == "table" and encode(v) or tostring(v) end
          keep[i] = v
          sv[i - 1], sl[i - 1] = v, #v
        end
      else
        vals[i - 1] = f and (tonumber(f(r)) or NaN) or 0
      end
    end
    local dropped = C.sp_window_add(ctx, op, kp, kl, r.ts, vals, sv, sl, errp)
    if dropped < 0 then error(cerr("aggregate(" .. n.store_name .. ")"), 0) end
    if custom then custom(k, r) end
    if dropped > 0 and late then
      if late == "dlq" then
        local why = "late for " .. dropped .. " window(s) of aggregate " .. n.store_name
        if C.sp_dead_letter(ctx, batch.cur, why, #why, errp) ~= 0 then error(cerr("late record"), 0) end
      else
        late(r, dropped)
      end
    end
  end
end

local policies = { fail = C.SP_POLICY_FAIL, skip = C.SP_POLICY_SKIP, dlq = C.SP_POLICY_DLQ }

-- Compiles the current topology against ctx. Returns the runtime state.
function M.compile(ctx, opts)
  opts = opts or {}
  local topo = sproc._topology()
  if #topo.sources == 0 then
    error("the script declares no source (sproc.source{...})", 0)
  end
  local app = topo.app
  local app_id = opts.app_id or app.id or opts.default_id or "sproc"
  local policy = app.errors or "fail"
  local dlq = app.dlq or (app_id .. "-dlq")
  if C.sp_ctx_set_policy(ctx, policies[policy], dlq, errp) ~= 0 then
    error(cerr("sproc.app"), 0)
  end
  C.sp_ctx_set_idle_timeout(ctx, app.idle or 0)
  local env = {
    rollback = opts.rollback,
    ctx = ctx, batch = C.sp_ctx_batch(ctx), stats = C.sp_ctx_stats(ctx),
    describe = {}, policy = policy, app_id = app_id, dlq = dlq,
    guarantee = app.processing_guarantee or "at_least_once",
  }
  local by_source = {}
  env.by_source = by_source
  for i, src in ipairs(topo.sources) do
    local entry = compile_source(src, env)
    for _, name in ipairs(src.names) do
      local id
      if src.kind == "timer" then
        id = C.sp_source_timer(ctx, src.every, src.time_kind == "wall" and 1 or 0, errp)
      elseif src.kind == "file" then
        id = C.sp_source_file(ctx, name, errp)
      else
        id = C.sp_source_kafka(ctx, name, src.kind == "pattern" and 1 or 0, errp)
      end
      if id < 0 then error(cerr("sproc.source"), 0) end
      if C.sp_source_set_task(ctx, C.sp_source_count(ctx) - 1, src.task, errp) ~= 0 then
        error(cerr("sproc.source"), 0)
      end
      -- indexed as the core numbers sources (aggregations add their own)
      by_source[C.sp_source_count(ctx)] = entry
    end
    src.index = i
  end
  env.by_source = by_source
  env.chains = {}
  env.stores = {}
  for _, h in ipairs(topo.stores) do env.stores[#env.stores + 1] = store.bind(h, ctx) end
  return env
end

-- Drops the frames of sproc's own modules from a traceback, so that what
-- is left points at the user's script.
local stream_methods
local function user_traceback(msg)
  msg = tostring(msg)
  -- a misspelled operator: say which one was meant
  local m = msg:match("attempt to call method '([%w_]+)' %(a nil value%)")
  if m then
    if not stream_methods then
      stream_methods = {}
      for k, v in pairs(require("sproc.stream").Stream) do
        if type(v) == "function" and not k:match("^_") then stream_methods[#stream_methods + 1] = k end
      end
      table.sort(stream_methods)
    end
    local near = require("sproc.options").nearest(m, stream_methods)
    if near then msg = msg .. " (a stream has no method " .. m .. ": did you mean " .. near .. "?)" end
  end
  local tb = debug.traceback("", 2)
  local keep = {}
  for line in tb:gmatch("[^\n]+") do
    if not line:match("sproc/%w+%.lua:") and not line:match("%[C%]: in function 'xpcall'")
       and not line:match("%[C%]: in function 'error'")
       and not line:match("^stack traceback:") and not line:match("%[sproc%]") then
      keep[#keep + 1] = line
    end
  end
  if #keep == 0 then return msg end
  return msg .. "\nstack traceback:\n" .. table.concat(keep, "\n")
end

local function handler(e)
  local mt = getmetatable(e)
  if mt == InputError or mt == OutputError or mt == store.Fatal then return e end
  return user_traceback(tostring(e))
end

-- The batch loop. env.chains caches the entry function per topic id. A
-- topic that several sources read has an entry that runs each source's in
-- turn: process.sub says which one runs, so that after a record failed in
-- one, process.resume(i) goes on with the next source's on that record.
local function make_process(env)
  local batch, chains, ctx = env.batch, env.chains, env.ctx
  local by_source, stats = env.by_source, env.stats
  local state = { sub = 0, first = 1 }
  local function several(entries)
    local ne = #entries
    return function(i)
      local k = state.first
      state.first = 1
      while k <= ne do
        state.sub = k
        entries[k](i)
        k = k + 1
      end
      state.sub = 0
    end, ne
  end
  local counts, internal = {}, {}
  local function resolve(topic)
    local entries = {}
    for s = 0, C.sp_source_count(ctx) - 1 do
      if C.sp_source_matches(ctx, s, topic) == 1 then entries[#entries + 1] = by_source[s + 1] end
    end
    if #entries == 0 then
      error("sproc: a record from a topic no source reads (id " .. topic .. ")", 0)
    end
    local entry = entries[1]
    counts[topic] = #entries
    internal[topic] = C.sp_topic_internal(ctx, topic) == 1
    if #entries > 1 then entry = several(entries) end
    chains[topic] = entry
    return entry
  end
  local function process(from)
    local recs, n = batch.recs, batch.n
    for i = from, n - 1 do
      batch.cur = i
      local rec = recs[i]
      -- the core's own records (timer firings, window results) have no
      -- offset, and a repartition topic's were input when first read:
      -- they are not input; a record resumed in its next source was
      -- counted already
      local t = rec.topic
      local entry = chains[t] or resolve(t)
      if rec.offset >= 0 and state.first == 1 and not internal[t] then
        stats.records_in = stats.records_in + 1
      end
      entry(i)
    end
  end
  -- Where to go on after record i failed: (i, its next source) or i + 1.
  local function resume(i)
    local sub = state.sub
    state.sub = 0
    if sub > 0 and sub < (counts[batch.recs[i].topic] or 1) then
      state.first = sub + 1
      return i
    end
    state.first = 1
    return i + 1
  end
  return process, resume
end

local function describe_record(env, i)
  local rec = env.batch.recs[i]
  local topic = C.sp_topic_name(env.ctx, rec.topic)
  return string.format("topic %s, partition %d, offset %s",
                       topic ~= nil and ffi_string(topic) or "?", rec.partition,
                       tostring(rec.offset):gsub("LL$", ""))
end

-- Skip logs are rate-limited: one line a second, with what was suppressed.
local last_skip_log, suppressed = 0, 0
local function log_skip(msg)
  local now = os.time()
  if now ~= last_skip_log then
    local extra = suppressed > 0 and string.format(" (%d more skipped in the last second)", suppressed) or ""
    C.sp_log_line(1, "skipped a record: " .. msg .. extra)
    last_skip_log, suppressed = now, 0
  else
    suppressed = suppressed + 1
  end
end

--- Runs the current batch (records from..n-1) under the error policy.
--- Returns nil, or an error message when the pipeline must stop.
function M.run_batch(env, from)
  local process = env.process
  if not process then
    process, env.resume = make_process(env)
    env.process = process
  end
  local batch, stats, ctx = env.batch, env.stats, env.ctx
  stats.batches = stats.batches + 1
  from = from or 0
  -- the input records, then the records of timers they made due, until
  -- no timer is due
  while true do
    if from >= batch.n then
      local fired = C.sp_ctx_fire_timers(ctx)
      if fired < 0 then return "out of memory while firing timers" end
      if fired == 0 then break end
    end
    local ok, err = xpcall(process, handler, from)
    if ok then
      from = batch.n
      goto continue
    end
    local i = batch.cur
    stats.errors = stats.errors + 1
    local mt = getmetatable(err)
    local kind = mt == InputError and "bad input" or mt == OutputError and "output refused" or
                 mt == store.Fatal and "state store" or "error in script"
    local msg = string.format("%s: %s\n  record: %s", kind, tostring(err), describe_record(env, i))
    if env.rollback and kind == "error in script" then
      -- a version just swapped in by --watch: the previous one takes over
      -- at this record
      stats.errors = stats.errors - 1
      return "rollback:" .. msg
    end
    if env.policy == "fail" or mt == store.Fatal then
      return msg
    elseif env.policy == "skip" then
      stats.skipped = stats.skipped + 1
      log_skip(msg)
    else
      local why = tostring(err)
      if C.sp_dead_letter(env.ctx, i, why, #why, errp) ~= 0 then
        return msg .. "\n  and the dead-letter topic failed: " .. ffi_string(errp[0])
      end
    end
    -- what it output before it failed does not make it an output
    C.sp_ctx_record_failed(ctx, i)
    from = env.resume(i)
    ::continue::
  end
  batch.cur = -1
  if C.sp_ctx_end_batch(ctx, errp) ~= 0 then return cerr("state store") end
  return nil
end

--- Loads and runs a script file, then compiles its topology.
local function script_dir(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Runs a script so that it declares its pipeline (not compiled yet).
-- Modules beside the script can be required by name.
local function declare(path)
  local dir = script_dir(path)
  if not package.path:find(dir .. "/?.lua;", 1, true) then
    package.path = dir .. "/?.lua;" .. package.path
  end
  sproc._reset(path)
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local ok, e = xpcall(chunk, user_traceback)
  if not ok then error(e, 0) end
  if #sproc._topology().sources == 0 then
    error("the script declares no source (sproc.source{...})", 0)
  end
end

function M.load(ctx, path, opts)
  declare(path)
  return M.compile(ctx, opts)
end

local function host_ctx()
  return ffi.cast("sp_ctx *", package.loaded["sproc.host"].ctx)
end

-- Hot reload, in a fresh Lua state: declare the new version, check that
-- the state it would find fits it, then (at a batch boundary, once the
-- old version's topology is gone from the context) compile it.
function M.host_prepare(path)
  declare(path)
  local ctx = host_ctx()
  local topo = sproc._topology()
  local kinds = { kv = C.SP_STORE_KV, window = C.SP_STORE_WINDOW }
  local function check(name, kind)
    local id = C.sp_store_find(ctx, name)
    if id >= 0 and C.sp_store_kind(ctx, id) ~= kinds[kind] then
      error("store " .. name .. " holds " .. (C.sp_store_kind(ctx, id) == C.SP_STORE_KV and "kv" or "window") ..
            " state and the new version declares it " .. kind .. ": keep its kind, or give it another name", 0)
    end
  end
  for _, h in ipairs(topo.stores) do check(h.name, h.kind) end
  for _, n in ipairs(topo.nodes) do
    if n.kind == "aggregate" then check(n.store_name, "window") end
  end
end

--- The files --watch looks at: the script and the modules it loaded from
--- its own directory.
function M.watched(path)
  local files = { path }
  local dir = script_dir(path)
  for name in pairs(package.loaded) do
    if type(name) == "string" and not name:match("^sproc") then
      local file = package.searchpath(name, dir .. "/?.lua")
      if file then files[#files + 1] = file end
    end
  end
  table.sort(files, function(a, b) return a < b end)
  return files
end

function M.host_compile(opts)
  return M.compile(host_ctx(), opts)
end

-- The script's sproc.on_reload hook, run once after a reload swapped it in;
-- partitions: those this process holds.
function M.on_reload(env, partitions)
  local hook = sproc._topology().on_reload
  if not hook then return nil end
  local ok, err = xpcall(hook, user_traceback, partitions)
  if not ok then return tostring(err) end
  return nil
end

--- Replaces the running pipeline by the one a script (path) or a build
--- function (fn) declares, at a batch boundary: state, sinks and counters
--- stay; stores and aggregations are found again by name.
function M.reload(ctx, opts)
  C.sp_ctx_reset_topology(ctx)
  if opts.script then return M.load(ctx, opts.script, opts) end
  sproc._reset(nil)
  opts.build(sproc)
  return M.compile(ctx, opts)
end

--- The executable's entry: the context comes from the host.
function M.host_load(path, opts)
  return M.load(host_ctx(), path, opts)
end

--- The topology as text, or as Graphviz DOT.
function M.describe(env, dot)
  local topo = sproc._topology()
  local out = {}
  local function label(n)
    if n.kind == "source" then
      local s = n.source
      if s.kind == "timer" then return "timer every " .. s.every .. " ms of " .. s.time_kind .. " time" end
      return (s.kind == "file" and "file " or (s.kind == "pattern" and "pattern " or "topic ")) ..
             table.concat(s.names, ", ") .. " (key " .. s.key .. ", value " .. s.value .. ")"
    elseif n.kind == "to" then return "to topic " .. n.opts.topic
    elseif n.kind == "to_files" then return "to files in " .. n.opts.dir
    elseif n.kind == "to_parquet" then return "to Parquet files in " .. n.opts.dir
    elseif n.kind == "print" then return "print to stdout"
    elseif n.kind == "branch_out" then return "branch " .. n.index
    elseif n.kind == "window" then
      local w = n.window
      local via = ""
      if rekeyed(n) then
        via = " through topic " .. env.app_id .. "-" .. n.children[1].store_name .. "-repartition"
      end
      return "window " .. w.kind .. " (" .. (w.kind == "session" and ("gap " .. w.gap) or
             ("size " .. w.size .. (w.advance and (", advance " .. w.advance) or ""))) ..
             " ms, grace " .. w.grace .. " ms)" .. via
    elseif n.kind == "aggregate" then
      local parts = {}
      for _, a in ipairs(n.aggs) do parts[#parts + 1] = a.name .. " = " .. a.agg end
      return "aggregate " .. table.concat(parts, ", ") .. " (emit " .. n.emit_mode ..
             ", store " .. n.store_name .. ")"
    end
    return n.kind
  end
  if dot then
    out[#out + 1] = "digraph \"" .. env.app_id .. "\" {"
    out[#out + 1] = "  rankdir=LR;"
    for _, n in ipairs(topo.nodes) do
      local shape = (n.kind == "source" or n.terminal and n.kind ~= "branch") and "box" or "ellipse"
      out[#out + 1] = string.format("  n%d [label=%q, shape=%s];", n.id, label(n), shape)
      for _, c in ipairs(n.children) do
        out[#out + 1] = string.format("  n%d -> n%d;", n.id, c.id)
      end
      if n.kind == "aggregate" then
        out[#out + 1] = string.format("  s%d [label=%q, shape=cylinder];", n.id,
                                      "store " .. n.store_name .. " / changelog " .. env.app_id ..
                                      "-" .. n.store_name .. "-changelog")
        out[#out + 1] = string.format("  n%d -> s%d [style=dashed, dir=both];", n.id, n.id)
      end
    end
    for i, h in ipairs(topo.stores) do
      out[#out + 1] = string.format("  store%d [label=%q, shape=cylinder];", i,
                                    "store " .. h.name .. " (" .. h.kind .. ") / changelog " ..
                                    env.app_id .. "-" .. h.name .. "-changelog")
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = "application " .. env.app_id .. " (errors: " .. env.policy ..
                    (env.policy == "dlq" and (", dead letters to " .. env.dlq) or "") .. ")"
    local function walk(n, depth)
      out[#out + 1] = string.rep("  ", depth) .. label(n)
      for _, c in ipairs(n.children) do walk(c, depth + 1) end
    end
    for _, s in ipairs(topo.sources) do walk(s.node, 1) end
    for _, h in ipairs(topo.stores) do
      out[#out + 1] = "  store " .. h.name .. " (" .. h.kind .. ", changelog " ..
                      env.app_id .. "-" .. h.name .. "-changelog)"
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
