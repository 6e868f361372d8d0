-- Compiles the declared topology against the native core: each operator
-- kind has its compiler (sproc.ops, sproc.sinks, sproc.aggregate), which
-- returns the function a record goes through; a source's entry sets the
-- record's view and event time and calls the first of them. The result is
-- the env the batch loop (sproc.batch) runs.
local core = require "sproc.core"
local sproc = require "sproc"
local record = require "sproc.record"
local store = require "sproc.store"
local errors = require "sproc.errors"
local encode = require "sproc.encode"

local C = core.C
local errp, cerr, bad_input = errors.errp, errors.cerr, errors.bad_input
local type, tostring, tonumber, rawset, error, pcall = type, tostring, tonumber, rawset, error, pcall

local M = {}

-- operator kind -> compiler
local compilers = {}
for _, mod in ipairs { "sproc.ops", "sproc.sinks", "sproc.aggregate", "sproc.joins" } do
  for kind, f in pairs(require(mod).compilers) do
    assert(not compilers[kind], kind)
    compilers[kind] = f
  end
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

local c = {}

M.op_name = op_name

-- A sampled record for sproc tap: its key and value as a sink would write
-- them. Never the pipeline's failure: a value that cannot be written as
-- JSON is left out of the sample.
local function tapper(env)
  local ctx, batch = env.ctx, env.batch
  local enc = encode.encoder("json", batch, "value", ctx)
  local function offer(idx, r)
    local v, vl = encode.value_bytes(r, enc, batch)
    local k = encode.key_string(r.key)
    C.sp_ctx_tap_offer(ctx, idx, k, k and #k or 0, v, vl or 0, tonumber(r.ts) or -1,
                       tonumber(r.partition) or -1, tonumber(r.offset) or -1)
  end
  return function(idx, r) pcall(offer, idx, r) end
end

-- Every operator counts the records that enter it (the metrics endpoint
-- reads the counters; what leaves one is what enters those after it), and
-- offers them to a tap while its allowance lasts.
function c.node(n, env)
  local ctx = env.ctx
  local counts = C.sp_ctx_op_counters(ctx)
  local taps = C.sp_ctx_op_taps(ctx)
  env.tap = env.tap or tapper(env)
  local tap = env.tap
  local idx = counts ~= nil and C.sp_ctx_operator(ctx, op_name(n), env.op_parent or -1) or -1
  local saved = env.op_parent
  env.op_parent = idx >= 0 and idx or saved
  env.describe[#env.describe + 1] = n
  local compile = compilers[n.kind]
  if not compile then error("sproc: unknown operator " .. tostring(n.kind)) end
  local f = compile(n, env, c)
  env.op_parent = saved
  if idx < 0 then return f end
  return function(r)
    counts[idx] = counts[idx] + 1
    if taps[idx] > 0 then tap(idx, r) end
    return (f(r))
  end
end

--- The operators after n, as one function.
function c.children(n, env)
  local kids = n.children
  if #kids == 0 then return function() end end
  if #kids == 1 then return c.node(kids[1], env) end
  local fns = {}
  for i = 1, #kids do fns[i] = c.node(kids[i], env) end
  local nf = #fns
  return function(r)
    for i = 1, nf do fns[i](r) end
  end
end

-- The source a node's records come from (a join's: its left side's).
local function root(n)
  while n.parent or n.left do n = n.parent or n.left.parent end
  return n.source
end

-- Sources joined by key make one task (as Kafka Streams makes one
-- sub-topology of them): one stream time, one partition's worth of each.
-- Returns the task name of each source, and the groups of topics that
-- must have as many partitions as each other.
local function task_names(topo, app_id)
  local rekeyed = require("sproc.aggregate").rekeyed
  -- what a join's side reads: its source's task, or its repartition topic
  local function side(n, topic)
    if rekeyed(n) then return app_id .. "-" .. topic .. "-repartition" end
    return root(n)
  end
  local up = {}
  local function find(s)
    while up[s] and up[s] ~= s do s = up[s] end
    return s
  end
  local function union(a, b)
    a, b = find(a), find(b)
    if a ~= b then up[a] = b end
  end
  local members = {}
  for _, n in ipairs(topo.nodes) do
    if n.kind == "join_table" and not n.table.global then
      local this = (n.keyfn or rekeyed(n)) and (app_id .. "-" .. n.name .. "-repartition") or root(n)
      members[#members + 1] = this
      union(this, root(n.table))
    elseif n.kind == "stream_join" then
      local l, r = side(n.left, n.name .. "-left"), side(n.right, n.name .. "-right")
      members[#members + 1], members[#members + 2] = l, r
      union(l, r)
    elseif n.kind == "table_join" then
      union(root(n.left.parent), root(n.right.parent))
    end
  end
  for _, src in ipairs(topo.sources) do members[#members + 1] = src end
  local groups, seen = {}, {}
  for _, m in ipairs(members) do
    if not seen[m] then
      seen[m] = true
      local g = find(m)
      groups[g] = groups[g] or {}
      if type(m) == "string" then
        groups[g][#groups[g] + 1] = m
      else
        for _, name in ipairs(m.names) do groups[g][#groups[g] + 1] = name end
      end
    end
  end
  local names, copart = {}, {}
  for m in pairs(seen) do
    local g = groups[find(m)]
    table.sort(g)
    names[m] = table.concat(g, ",")
    if #g > 1 and not copart[g] and (type(m) == "string" or m.kind ~= "file") then
      copart[g] = true
      copart[#copart + 1] = g
    end
  end
  return names, copart
end

-- A source's entry: resets the view, checks the input, sets event time,
-- then runs the operators.
local function compile_source(src, env)
  local batch = env.batch
  -- the task whose stream time the source's records move
  local task = C.sp_ctx_task(env.ctx, env.task_names[src])
  if task < 0 then error("sproc.source: too many sources (63 at most)", 0) end
  src.task, env.task = task, task
  if src.schema then
    src.schema_id = C.sp_schema_define(env.ctx, src.schema.spec, errp)
    if src.schema_id < 0 then error(cerr("sproc.source: schema"), 0) end
  end
  local view, reset = record.new_view(env.ctx, env.batch, src)
  env.serdes = { key = src.key, value = src.value }
  local first = c.node(src.node, env)
  local time = src.time
  local stats = env.stats
  local skip_tombstones = src.tombstones == "skip"
  return function(i)
    batch.task = task
    if skip_tombstones and batch.recs[i].val == nil then
      stats.filtered = stats.filtered + 1
      return
    end
    local bad = reset(i)
    if bad then bad_input(bad) end
    if time then
      local ts = time(view)
      if type(ts) ~= "number" then
        bad_input("event time function returned " .. tostring(ts) .. ", not epoch milliseconds")
      end
      rawset(view, "ts", ts)
      batch.recs[i].ts = ts  -- the core's stream time and TTLs use it
    end
    first(view)
  end
end

-- The core's source of a name a script source reads.
local function add_source(ctx, src, name)
  local id
  if src.kind == "timer" then
    id = C.sp_source_timer(ctx, src.every, src.time_kind == "wall" and 1 or 0, errp)
  elseif src.kind == "file" then
    id = C.sp_source_file(ctx, name, errp)
  else
    id = C.sp_source_kafka(ctx, name, src.kind == "pattern" and 1 or 0, errp)
  end
  if id < 0 then error(cerr("sproc.source"), 0) end
  local index = C.sp_source_count(ctx) - 1
  if C.sp_source_set_task(ctx, index, src.task, errp) ~= 0 or
     (src.kind == "global_table" and C.sp_source_set_global(ctx, index, errp) ~= 0) then
    error(cerr("sproc.source"), 0)
  end
end

local policies = { fail = C.SP_POLICY_FAIL, skip = C.SP_POLICY_SKIP, dlq = C.SP_POLICY_DLQ }

--- Compiles the current topology against ctx. Returns the runtime state.
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
  for name, t in pairs(app.topics or {}) do
    local lines = {}
    for k, v in pairs(t.config or {}) do lines[#lines + 1] = k .. "=" .. tostring(v) end
    table.sort(lines)
    if C.sp_ctx_declare_topic(ctx, name, t.partitions or 0, t.replication or -1,
                              table.concat(lines, "\n")) ~= 0 then
      error("sproc.app: out of memory", 0)
    end
  end
  local env = {
    rollback = opts.rollback,
    ctx = ctx, batch = C.sp_ctx_batch(ctx), stats = C.sp_ctx_stats(ctx),
    describe = {}, policy = policy, app_id = app_id, dlq = dlq,
    guarantee = app.processing_guarantee or "at_least_once",
    by_source = {}, chains = {}, stores = {},
  }
  for _, h in ipairs(topo.stores) do env.stores[#env.stores + 1] = store.bind(h, ctx) end
  env.task_names, env.copartitioned = task_names(topo, app_id)
  for i, src in ipairs(topo.sources) do
    local entry = compile_source(src, env)
    for _, name in ipairs(src.names) do
      add_source(ctx, src, name)
      -- indexed as the core numbers sources (aggregations add their own)
      env.by_source[C.sp_source_count(ctx)] = entry
    end
    src.index = i
    -- the batch loop then looks for timers due after each record
    if src.kind == "timer" and src.time_kind ~= "wall" then env.stream_timers = true end
  end
  for _, g in ipairs(env.copartitioned) do
    if C.sp_source_copartition(ctx, table.concat(g, ","), errp) ~= 0 then error(cerr("join"), 0) end
  end
  return env
end

return M
