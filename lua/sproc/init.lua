-- sproc: the pipeline builder a user script requires.
--
--   local sproc = require "sproc"
--   sproc.source{ topic = "in", value = "json" }
--     :filter(function(r) return r.value.ok end)
--     :to{ topic = "out" }
--
-- Building only records the topology; sproc.runtime compiles it against
-- the native core once the script has run.
local stream = require "sproc.stream"
local store = require "sproc.store"
local options = require "sproc.options"

local M = {}

local topo

-- A fresh topology: the runtime calls this before running a script.
function M._reset(script_path)
  topo = { sources = {}, app = {}, nodes = {}, stores = {}, script = script_path }
  stream._set_topology(topo)
  return topo
end
M._reset(nil)

function M._topology() return topo end

local function check_table(fname, t)
  if type(t) ~= "table" then
    error("sproc." .. fname .. " expects a table of options, got " .. type(t), 3)
  end
end

local serdes = { bytes = true, string = true, json = true, avro = true }
local policies = { fail = true, skip = true, dlq = true }
local schema = require "sproc.schema"

--- A schema: sproc.schema{ {"id", "int64", nullable = false},
--- {"pickup", "timestamp"}, {"where", { {"lat", "double"}, {"lon", "double"} }} }.
--- Give it to a source (schema = s) to convert every value, and to
--- to_parquet (the source's is the default).
--- sproc.schema.from_avro(avro) derives one from an Avro record schema,
--- and s:to_avro(name) gives an Avro schema of one.
M.schema = setmetatable({
  from_avro = function(avro) return schema.from_avro(avro, 2) end,
}, { __call = function(_, fields) return schema.new(fields, 2) end })

--- Application settings: id (group id and prefix of internal topics),
--- errors ("fail", "skip" or "dlq"), dlq (the dead-letter topic) and
--- processing_guarantee ("at_least_once", the default, or "exactly_once")
--- and idle (a duration: a partition without records that long has its
--- stream time follow the wall clock, so its windows close).
-- sproc.app{ topics = { ["name"] = { partitions = 8, replication = 3,
-- config = { ["retention.ms"] = 86400000 } } } }: topics made at start
-- when missing.
local function check_topics(topics)
  if type(topics) ~= "table" then error("sproc.app: topics must be a table of topic name = { ... }", 3) end
  for name, t in pairs(topics) do
    local where = "sproc.app: topics[" .. tostring(name) .. "]"
    if type(name) ~= "string" or name == "" then error("sproc.app: topics are keyed by topic name", 3) end
    if type(t) ~= "table" then error(where .. " must be a table", 3) end
    options.check(where, t, { "partitions", "replication", "config" }, 3)
    for _, k in ipairs({ "partitions", "replication" }) do
      local v = t[k]
      if v ~= nil and (type(v) ~= "number" or v < 1 or v ~= math.floor(v)) then
        error(where .. ": " .. k .. " must be a positive integer", 3)
      end
    end
    if t.config ~= nil then
      if type(t.config) ~= "table" then error(where .. ": config must be a table of setting = value", 3) end
      for k, v in pairs(t.config) do
        if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
          error(where .. ": config maps a setting's name to a string or number", 3)
        end
      end
    end
  end
end

function M.app(opts)
  check_table("app", opts)
  options.check("sproc.app", opts, { "id", "errors", "dlq", "processing_guarantee", "idle", "topics" }, 2)
  if opts.id ~= nil and (type(opts.id) ~= "string" or opts.id == "") then
    error("sproc.app: id must be a non-empty string", 2)
  end
  if opts.errors ~= nil and not policies[opts.errors] then
    error("sproc.app: errors must be \"fail\", \"skip\" or \"dlq\", got " .. tostring(opts.errors), 2)
  end
  if opts.dlq ~= nil and type(opts.dlq) ~= "string" then
    error("sproc.app: dlq must be a topic name", 2)
  end
  if opts.idle ~= nil then opts.idle = require("sproc.window").duration(opts.idle, "sproc.app: idle", 2) end
  local g = opts.processing_guarantee
  if g ~= nil and g ~= "at_least_once" and g ~= "exactly_once" then
    error("sproc.app: processing_guarantee must be \"at_least_once\" or \"exactly_once\", got " ..
          tostring(g), 2)
  end
  if opts.topics ~= nil then check_topics(opts.topics) end
  for k, v in pairs(opts) do topo.app[k] = v end
end

--- A source: a Kafka topic (topic = "t"), several (topics = {...}), a
--- pattern (pattern = "trips-.*", a regular expression matched against
--- whole topic names), or a file (file = "path", format = "lines"|"json").
--- schema = sproc.schema{...} converts each JSON value (a value that does
--- not convert falls under the error policy).
function M.source(opts)
  check_table("source", opts)
  options.check("sproc.source", opts, { "topic", "topics", "pattern", "file", "format", "key",
                                        "value", "time", "schema", "tombstones" }, 2)
  local src = { key = opts.key or "string", value = opts.value, time = opts.time,
                tombstones = opts.tombstones or "pass" }
  if src.tombstones ~= "pass" and src.tombstones ~= "skip" then
    error('sproc.source: tombstones must be "pass" or "skip", got ' .. tostring(opts.tombstones), 2)
  end
  if opts.schema ~= nil then
    if not schema.is_schema(opts.schema) then
      error("sproc.source: schema must be made by sproc.schema{...}", 2)
    end
    if opts.value ~= nil and opts.value ~= "json" then
      error("sproc.source: a schema applies to JSON values (value = \"json\")", 2)
    end
    src.schema, opts.value = opts.schema, "json"
    src.value = "json"
  end
  local n = (opts.topic and 1 or 0) + (opts.topics and 1 or 0)
          + (opts.pattern and 1 or 0) + (opts.file and 1 or 0)
  if n ~= 1 then
    error("sproc.source: give exactly one of topic, topics, pattern or file", 2)
  end
  if opts.topic then
    if type(opts.topic) ~= "string" or opts.topic == "" then
      error("sproc.source: topic must be a non-empty string", 2)
    end
    src.kind, src.names = "topic", { opts.topic }
  elseif opts.topics then
    if type(opts.topics) ~= "table" or #opts.topics == 0 then
      error("sproc.source: topics must be a non-empty list of names", 2)
    end
    src.kind, src.names = "topic", opts.topics
  elseif opts.pattern then
    src.kind, src.names = "pattern", { opts.pattern }
  else
    local fmt = opts.format or "lines"
    if fmt ~= "lines" and fmt ~= "json" then
      error("sproc.source: format must be \"lines\" or \"json\", got " .. tostring(fmt), 2)
    end
    src.kind, src.names = "file", { M.here(opts.file) }
    src.value = src.value or (fmt == "json" and "json" or "string")
  end
  src.value = src.value or "string"
  if not serdes[src.key] then error("sproc.source: unknown key serde " .. tostring(src.key), 2) end
  if not serdes[src.value] then error("sproc.source: unknown value serde " .. tostring(src.value), 2) end
  -- Avro decodes to JSON that becomes the record's: from there on the
  -- source is a JSON one
  if src.value == "avro" then src.value, src.avro_value = "json", true end
  if src.key == "avro" then src.key, src.avro_key = "json", true end
  if src.time ~= nil and type(src.time) ~= "function" then
    error("sproc.source: time must be a function of the record returning epoch milliseconds", 2)
  end
  local s = stream.new_source(src)
  topo.sources[#topo.sources + 1] = src
  return s
end

--- on_reload(function(partitions) ... end): runs once when this version
--- of the script replaces a running one (sproc --watch, SIGHUP), before it
--- processes a record: the place to migrate state. partitions lists those
--- this process holds (give them to store calls: there is no current
--- record).
function M.on_reload(fn)
  if type(fn) ~= "function" then error("sproc.on_reload expects a function", 2) end
  topo.on_reload = fn
end

--- A timer: a source that, every so many milliseconds of stream time
--- (time = "stream", the default: a partition's highest record time) or
--- of the wall clock (time = "wall"), sends one record per partition
--- through its operators: r.ts is the time it fired at, r.partition the
--- partition, and store handles used there see that partition's state.
function M.timer(opts)
  check_table("timer", opts)
  options.check("sproc.timer", opts, { "every", "time" }, 2)
  if type(opts.every) ~= "number" or opts.every <= 0 then
    error("sproc.timer: every must be a positive number of milliseconds", 2)
  end
  local t = opts.time or "stream"
  if t ~= "stream" and t ~= "wall" then
    error("sproc.timer: time must be \"stream\" or \"wall\", got " .. tostring(t), 2)
  end
  local src = { kind = "timer", names = { "timer" }, key = "string", value = "string",
                every = math.floor(opts.every), time_kind = t }
  local s = stream.new_source(src)
  topo.sources[#topo.sources + 1] = src
  return s
end

--- A state store: { name = "counts", kind = "kv", ttl = ms, backend =
--- "memory" (default) or "lmdb" (on disk, for state larger than memory) }. The name is the
--- state's identity: it names the changelog topic (<app>-<name>-changelog)
--- and a reloaded script with a store of that name finds its state.
function M.store(opts)
  local h = store.new(opts)
  for _, other in ipairs(topo.stores) do
    if other.name == h.name then error("sproc.store: a store named " .. h.name .. " exists already", 2) end
  end
  topo.stores[#topo.stores + 1] = h
  return h
end

--- A path relative to the directory of the running script (absolute
--- paths are kept).
function M.here(path)
  if type(path) ~= "string" then error("sproc.here expects a path", 2) end
  if path:sub(1, 1) == "/" or not topo.script then return path end
  local dir = topo.script:match("^(.*)/[^/]*$")
  return dir and (dir .. "/" .. path) or path
end

M.json = require "sproc.json"

M.time = {}
do
  local core = require "sproc.core"
  local ffi = require "ffi"
  local msp = ffi.new("int64_t[1]")
  --- Epoch milliseconds of an ISO-8601 time ("2016-01-01 00:05:00",
  --- "2016-01-01T00:05:00+01:00"; no zone: UTC), or nil and an error.
  function M.time.parse_iso(s)
    if type(s) ~= "string" then return nil, "not a time: " .. tostring(s) end
    if core.C.sp_time_parse(s, msp) ~= 0 then return nil, "not an ISO-8601 time: " .. s end
    return tonumber(msp[0])
  end
end
local window = require "sproc.window"
M.window = window.window
M.agg = window.agg

local tables = require "sproc.tables"
M.table = tables.table
M.global_table = tables.global_table

return M
