-- sproc.testing: a test driver for pipelines, after Kafka Streams'
-- TopologyTestDriver. It runs a pipeline on the native core with no broker,
-- no threads and no sockets: records piped in are processed at once, and
-- outputs are read back per topic.
--
--   local testing = require "sproc.testing"
--   local d = testing.driver{ script = "examples/wordcount.lua" }
--   d:pipe("lines", { value = "a b a" })
--   local out = d:output("stdout")
local ffi = require "ffi"
local core = require "sproc.core"
local sproc = require "sproc"
local runtime = require "sproc.runtime"
local json = require "sproc.json"

local C = core.C
local ffi_string = ffi.string

local M = {}

local Driver = {}
Driver.__index = Driver

local errp = ffi.new("const char *[1]")
local outp = ffi.new("sp_out[1]")
local hname = ffi.new("const char *[1]")
local hval = ffi.new("const char *[1]")
local hlen = ffi.new("size_t[1]")

--- Makes a driver for a script file (opts.script) or for a pipeline built
--- by a function (driver(function(sproc) ... end)). Options: app (the
--- application id), partitions (of output topics, for the partition each
--- output would land on; default 1).
function M.driver(opts)
  if type(opts) == "function" then opts = { build = opts } end
  if type(opts) ~= "table" then error("driver() expects a table or a function", 2) end
  require("sproc.options").check("driver()", opts, { "script", "build", "app", "partitions" }, 2)
  local ctx = ffi.gc(C.sp_ctx_create(), C.sp_ctx_destroy)
  C.sp_ctx_capture_stdout(ctx, 1)
  C.sp_ctx_set_partitions(ctx, opts.partitions or 1)
  local env
  if opts.script then
    local ok, e = pcall(runtime.load, ctx, opts.script, { app_id = opts.app, default_id = "test" })
    if not ok then error(e, 2) end
    env = e
  elseif opts.build then
    sproc._reset(nil)
    opts.build(sproc)
    env = runtime.compile(ctx, { app_id = opts.app, default_id = "test" })
  else
    error("driver() needs script = path or a build function", 2)
  end
  local d = setmetatable({ ctx = ctx, env = env, offsets = {}, read = {}, opts = opts,
                          current = { app_id = opts.app, default_id = "test", script = opts.script,
                                      build = opts.build } }, Driver)
  d:_changelogs()
  return d
end

-- Every store change also goes to an in-memory changelog, so that a
-- simulated rebalance can restore state from it as Kafka would.
function Driver:_changelogs()
  if C.sp_ctx_enable_changelogs(self.ctx, self.env.app_id, errp) ~= 0 then
    error("changelogs: " .. ffi_string(errp[0]), 3)
  end
  self.changelog_prefix = self.env.app_id .. "-"
end

function Driver:_end_batch(level)
  if C.sp_store_flush_changelogs(self.ctx, errp) ~= 0 then
    error("changelogs: " .. ffi_string(errp[0]), level + 1)
  end
end

local function is_changelog(d, topic)
  return topic:sub(-10) == "-changelog" and topic:sub(1, #d.changelog_prefix) == d.changelog_prefix
end

--- Replaces the pipeline with another script (reload{ script = path }) or
--- build function (reload(function(sproc) ... end)), as hot reload does:
--- state, outputs and counters stay; stores are found again by name.
function Driver:reload(opts)
  if type(opts) == "function" then opts = { build = opts } end
  if type(opts) ~= "table" or not (opts.script or opts.build) then
    error("reload() expects { script = path } or a build function", 2)
  end
  local o = { app_id = self.opts.app, default_id = "test", script = opts.script, build = opts.build }
  local ok, env = pcall(runtime.reload, self.ctx, o)
  if not ok then
    -- the old pipeline goes on, as with hot reload
    runtime.reload(self.ctx, self.current)
    error(env, 2)
  end
  self.env, self.current = env, o
  self:_changelogs()
  return self
end

local function part_list(parts)
  if type(parts) == "number" then return { parts } end
  if type(parts) ~= "table" then error("expects a partition or a list of partitions", 3) end
  return parts
end

--- Takes partitions away, as a rebalance does: their state is dropped
--- (it lives on in the changelog) and their stream time goes with the
--- committed offsets (kept here until assign).
function Driver:revoke(parts)
  self.committed_times = self.committed_times or {}
  for _, p in ipairs(part_list(parts)) do
    local times = {}
    for t = 0, C.sp_topic_count(self.ctx) - 1 do times[t] = C.sp_ctx_topic_time(self.ctx, t, p) end
    self.committed_times[p] = times
    C.sp_ctx_drop_partition(self.ctx, p)
  end
  return self
end

--- Gives partitions back: their state is restored from the changelog and
--- their stream time from the committed offsets.
function Driver:assign(parts)
  local want = {}
  for _, p in ipairs(part_list(parts)) do want[p] = true end
  for i = 0, C.sp_out_count(self.ctx) - 1 do
    C.sp_out_get(self.ctx, i, outp)
    local o = outp[0]
    local topic = ffi_string(o.topic)
    if want[o.partition] and is_changelog(self, topic) then
      local name = topic:sub(#self.changelog_prefix + 1, -11)
      local id = C.sp_store_find(self.ctx, name)
      if id >= 0 and C.sp_store_apply(self.ctx, id, o.partition, o.key, o.key_len, o.val,
                                      o.val_len, o.ts, errp) ~= 0 then
        error("assign(): " .. ffi_string(errp[0]), 2)
      end
    end
  end
  for p in pairs(want) do
    for t, ms in pairs(self.committed_times and self.committed_times[p] or {}) do
      C.sp_ctx_resume_time(self.ctx, t, p, ms)
    end
  end
  C.sp_store_end_batch(self.ctx, errp)
  return self
end

local function bytes(v)
  if v == nil then return nil, 0 end
  if type(v) == "table" then v = json.encode(v) end
  v = tostring(v)
  return v, #v
end

--- Pipes records into a topic and processes them as one batch. A record
--- is { key =, value =, ts =, partition =, headers = { name = value } };
--- tables as keys or values are JSON-encoded. Gives a list for several.
function Driver:pipe(topic, recs)
  if type(topic) ~= "string" then error("pipe() expects a topic name", 2) end
  if type(recs) ~= "table" then error("pipe() expects a record or a list", 2) end
  if recs[1] == nil then recs = { recs } end
  local ctx = self.ctx
  local tid = C.sp_topic_id(ctx, topic)
  C.sp_batch_reset(ctx)
  for _, r in ipairs(recs) do
    local p = r.partition or 0
    local okey = topic .. "/" .. p
    local off = r.offset or self.offsets[okey] or 0
    self.offsets[okey] = off + 1
    local k, kl = bytes(r.key)
    local v, vl = bytes(r.value)
    if C.sp_batch_push(ctx, tid, p, off, k, kl, v, vl, r.ts or 0, errp) ~= 0 then
      error("pipe(): " .. ffi_string(errp[0]), 2)
    end
    for hk, hv in pairs(r.headers or {}) do
      hv = tostring(hv)
      C.sp_batch_push_header(ctx, hk, hv, #hv, errp)
    end
  end
  local msg = runtime.run_batch(self.env)
  C.sp_batch_reset(ctx)
  if msg then error(msg, 2) end
  self:_end_batch(2)
  return self
end

local function read_out(ctx, i)
  C.sp_out_get(ctx, i, outp)
  local o = outp[0]
  local rec = {
    topic = ffi_string(o.topic),
    key = o.key ~= nil and ffi_string(o.key, o.key_len) or nil,
    value = o.val ~= nil and ffi_string(o.val, o.val_len) or nil,
    ts = tonumber(o.ts),
    partition = o.partition,
  }
  if o.nhdrs > 0 then
    rec.headers = {}
    local h = 0
    while C.sp_out_header(ctx, i, h, hname, hval, hlen) == 0 do
      rec.headers[ffi_string(hname[0])] = ffi_string(hval[0], hlen[0])
      h = h + 1
    end
  end
  return rec
end

--- All output records so far, in order: { topic, key, value, ts,
--- partition, headers }.
function Driver:outputs()
  local out = {}
  for i = 0, C.sp_out_count(self.ctx) - 1 do
    local r = read_out(self.ctx, i)
    if not is_changelog(self, r.topic) then out[#out + 1] = r end
  end
  return out
end

--- The records of a store's changelog so far: { key, value, partition }
--- (value nil for a delete), as Kafka would hold them.
function Driver:changelog(store)
  local topic = self.changelog_prefix .. store .. "-changelog"
  local out = {}
  for i = 0, C.sp_out_count(self.ctx) - 1 do
    local r = read_out(self.ctx, i)
    if r.topic == topic then out[#out + 1] = r end
  end
  return out
end

--- The output records of one topic ("stdout" for print()). With
--- { json = true } values are decoded.
function Driver:output(topic, opts)
  local out = {}
  for _, r in ipairs(self:outputs()) do
    if r.topic == topic then
      if opts and opts.json and r.value then r.value = assert(json.decode(r.value)) end
      out[#out + 1] = r
    end
  end
  return out
end

--- Just the values of one topic's outputs.
function Driver:values(topic, opts)
  local vs = {}
  for i, r in ipairs(self:output(topic, opts)) do vs[i] = r.value end
  return vs
end

--- Forgets the outputs read so far.
function Driver:clear() C.sp_out_clear(self.ctx) end

local framed, framed_len = ffi.new("const char *[1]"), ffi.new("size_t[1]")

--- Avro in the wire format, as a producer with a Schema Registry writes
--- it: value (a table, or JSON text) under schema (Avro's JSON, a string
--- or a table), registered in the driver's own registry (subject: opts'
--- or "test-value"). Pipe the bytes as a record's value or key.
function Driver:avro(schema, value, subject)
  if type(schema) == "table" then schema = json.encode(schema) end
  if type(value) == "table" then value = json.encode(value) end
  local id = C.sp_avro_register(self.ctx, subject or "test-value", schema, #schema, errp)
  if id < 0 then error("avro(): " .. ffi.string(errp[0]), 2) end
  if C.sp_avro_frame(self.ctx, id, value, #value, framed, framed_len, errp) ~= 0 then
    error("avro(): " .. ffi.string(errp[0]), 2)
  end
  return ffi.string(framed[0], framed_len[0])
end

--- An Avro output's value (wire format) as a table.
function Driver:from_avro(bytes)
  if C.sp_avro_unframe(self.ctx, bytes, #bytes, framed, framed_len, errp) ~= 0 then
    error("from_avro(): " .. ffi.string(errp[0]), 2)
  end
  return assert(json.decode(ffi.string(framed[0], framed_len[0])))
end

--- Counters: records_in, records_out, filtered, skipped, dead_lettered,
--- errors, batches.
function Driver:stats()
  local s = C.sp_ctx_stats(self.ctx)
  return {
    records_in = tonumber(s.records_in), records_out = tonumber(s.records_out),
    filtered = tonumber(s.filtered), skipped = tonumber(s.skipped),
    dead_lettered = tonumber(s.dead_lettered), errors = tonumber(s.errors),
    batches = tonumber(s.batches), late = tonumber(s.late),
  }
end

-- Runs the timers that are due (with no input records).
local function run_timers(self)
  C.sp_batch_reset(self.ctx)
  local msg = runtime.run_batch(self.env)
  C.sp_batch_reset(self.ctx)
  if msg then error(msg, 3) end
  self:_end_batch(3)
end

--- Moves the virtual wall clock forward by ms (it starts at 0) and runs
--- the wall-clock timers that come due.
function Driver:advance_wall_clock(ms)
  if type(ms) ~= "number" or ms < 0 then error("advance_wall_clock() expects milliseconds >= 0", 2) end
  C.sp_ctx_set_wall_clock(self.ctx, C.sp_ctx_wall_clock(self.ctx) + ms)
  run_timers(self)
  return self
end

--- Moves the stream time of a partition (default 0) forward to ms, as a
--- record with that time would, and runs the stream timers that come due
--- and the expiry of store entries.
function Driver:advance_stream_time(ms, partition)
  if type(ms) ~= "number" then error("advance_stream_time() expects milliseconds", 2) end
  C.sp_ctx_set_stream_time(self.ctx, partition or 0, ms)
  run_timers(self)
  return self
end

--- Closes every window as the end of a bounded run does (stream time to
--- infinity) and runs what follows the aggregations on their results.
function Driver:close_windows()
  C.sp_ctx_close_all_windows(self.ctx)
  run_timers(self)
  return self
end

--- The stream time of a partition (default 0), or nil before any record.
function Driver:stream_time(partition)
  local t = tonumber(C.sp_ctx_stream_time(self.ctx, partition or 0))
  return t >= 0 and t or nil
end

--- Publishes open files of to_files() sinks.
function Driver:flush()
  if C.sp_ctx_flush(self.ctx, errp) ~= 0 then error(ffi_string(errp[0]), 2) end
end

local StoreView = {}
StoreView.__index = StoreView
local partsbuf = ffi.new("int32_t[1024]")

local function view_parts(v)
  local n = C.sp_store_partitions(v.ctx, v.h._id, partsbuf, 1024)
  local ps = {}
  for i = 0, math.min(n, 1024) - 1 do ps[#ps + 1] = partsbuf[i] end
  table.sort(ps)
  return ps
end

--- The value of key in partition part, or in any partition when part is
--- nil.
function StoreView:get(key, part)
  if part then return self.h:get(key, part) end
  for _, p in ipairs(view_parts(self)) do
    local v = self.h:get(key, p)
    if v ~= nil then return v end
  end
  return nil
end

--- Seeds a value (partition 0 unless given, as pipe() does).
function StoreView:put(key, value, part)
  local ok, err = self.h:put(key, value, part or 0)
  if not ok then error(err, 2) end
end

function StoreView:delete(key, part)
  local ok, err = self.h:delete(key, part or 0)
  if not ok then error(err, 2) end
end

--- Every entry as a table key -> value (of partition part, or of all).
function StoreView:all(part)
  local t = {}
  for _, p in ipairs(part and { part } or view_parts(self)) do
    for k, v in self.h:all(p) do t[k] = v end
  end
  return t
end

--- Number of keys (of partition part, or of all).
function StoreView:size(part)
  return tonumber(C.sp_store_size(self.ctx, self.h._id, part or -1))
end

--- The partitions holding state.
function StoreView:partitions() return view_parts(self) end

local WindowView = setmetatable({}, { __index = StoreView })
WindowView.__index = WindowView

--- The value of key's window at start, in partition part or any.
function WindowView:get(key, start, part)
  if part then return self.h:get(key, start, part) end
  for _, p in ipairs(view_parts(self)) do
    local v = self.h:get(key, start, p)
    if v ~= nil then return v end
  end
  return nil
end

function WindowView:put(key, start, value, part)
  local ok, err = self.h:put(key, start, value, part or 0)
  if not ok then error(err, 2) end
end

--- key's windows with from <= start <= to: a list of { start, value }.
function WindowView:fetch(key, from, to, part)
  local out = {}
  for _, p in ipairs(part and { part } or view_parts(self)) do
    for t, v in self.h:fetch(key, from, to, p) do out[#out + 1] = { start = t, value = v } end
  end
  table.sort(out, function(a, b) return a.start < b.start end)
  return out
end

--- Every window: a list of { key, start, value } in key and time order.
function WindowView:all(part)
  local out = {}
  for _, p in ipairs(part and { part } or view_parts(self)) do
    for k, t, v in self.h:all(p) do out[#out + 1] = { key = k, start = t, value = v } end
  end
  return out
end

--- A store of the pipeline, to inspect and seed: get, put, delete, all,
--- size, partitions (a window store's get and put take the window start
--- after the key, and fetch(key, from, to) lists a key's windows).
function Driver:store(name)
  for _, h in ipairs(self.env.stores) do
    if h.name == name then
      return setmetatable({ h = h, ctx = self.ctx },
                          h.kind == "window" and WindowView or StoreView)
    end
  end
  -- the core's own stores (an aggregation's), seen as key-value stores
  local id = C.sp_store_find(self.ctx, name)
  if id >= 0 then
    local h = require("sproc.store").new{ name = name }
    h._ctx, h._id = self.ctx, id
    return setmetatable({ h = h, ctx = self.ctx }, StoreView)
  end
  error("the pipeline has no store named " .. tostring(name), 2)
end

M.partition_for = function(key, n) return C.sp_partition_for(key, #key, n) end

local B64 = {}
for i = 1, 64 do
  B64[("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"):byte(i)] = i - 1
end

local function unbase64(s)
  local out, n = {}, 0
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local v = B64[a] * 262144 + B64[b] * 4096 + (B64[c] or 0) * 64 + (B64[d] or 0)
    n = n + 1
    out[n] = string.char(math.floor(v / 65536) % 256, math.floor(v / 256) % 256, v % 256)
      :sub(1, c == 61 and 1 or d == 61 and 2 or 3)
  end
  return table.concat(out)
end

--- The records of a fixture file that `sproc capture` wrote, in the order
--- it read them, as pipe() takes them: { key, value, ts, partition,
--- offset, headers }. d:pipe(topic, testing.fixture(path)) replays them.
function M.fixture(path)
  local f, err = io.open(path, "rb")
  if not f then error("fixture: " .. tostring(err), 2) end
  local recs, n = {}, 0
  for line in f:lines() do
    if line ~= "" then
      local r, e = json.decode(line)
      if type(r) ~= "table" then
        f:close()
        error("fixture " .. path .. ": line " .. (n + 1) .. " is not a record (" ..
              tostring(e) .. ")", 2)
      end
      local key = r.key_b64 and unbase64(r.key_b64) or r.key
      local value = r.value_b64 and unbase64(r.value_b64) or r.value
      local headers
      for _, h in ipairs(type(r.headers) == "table" and r.headers or {}) do
        local v = h[2]
        if type(v) == "table" then v = unbase64(v.b_b64) end
        headers = headers or {}
        if v ~= json.null then headers[h[1]] = v end  -- pipe() takes one value a name
      end
      n = n + 1
      recs[n] = { key = key ~= json.null and key or nil,
                  value = value ~= json.null and value or nil,
                  ts = r.timestamp, partition = r.partition, offset = r.offset,
                  headers = headers }
    end
  end
  f:close()
  return recs
end

return M
