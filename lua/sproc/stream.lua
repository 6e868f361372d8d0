-- Streams: the nodes a script chains (filter, map, ...) and their
-- compilation into one Lua function per source. A compiled node is a
-- closure that calls the next one, so a record runs through the whole
-- pipeline as plain Lua calls that LuaJIT compiles into traces.
local schema = require "sproc.schema"
local options = require "sproc.options"

local M = {}

local Stream = {}
Stream.__index = Stream

local topo

function M._set_topology(t) topo = t end

-- A node of the topology under parent (nil: a source's or a join's),
-- with methods mt (Stream by default).
local function node(parent, kind, props, mt)
  local n = props or {}
  n.kind, n.children, n.parent = kind, {}, parent
  n.source = parent and parent.source or n.source
  n.id = #topo.nodes + 1
  topo.nodes[n.id] = n
  if parent then
    if parent.terminal then
      error("sproc: cannot chain after " .. parent.kind .. "()", 3)
    end
    parent.children[#parent.children + 1] = n
  end
  return setmetatable(n, mt or Stream)
end
M.node = node
function M.topology() return topo end

function M.new_source(src)
  topo.nodes = topo.nodes or {}
  local n = node(nil, "source", { source = src })
  src.node = n
  return n
end

local function want_fn(name, fn)
  if type(fn) ~= "function" then
    error(name .. "() expects a function, got " .. type(fn), 3)
  end
end

--- Keeps the records for which fn(r) is true.
function Stream:filter(fn)
  want_fn("filter", fn)
  return node(self, "filter", { fn = fn })
end

--- Replaces the value by fn(r); the key stays.
function Stream:map(fn)
  want_fn("map", fn)
  return node(self, "map", { fn = fn })
end

--- fn(r, emit) calls emit(value) zero or more times.
function Stream:flat_map(fn)
  want_fn("flat_map", fn)
  return node(self, "flat_map", { fn = fn })
end

--- Replaces the key by fn(r).
function Stream:key_by(fn)
  want_fn("key_by", fn)
  return node(self, "key_by", { fn = fn })
end

-- The serde of the values reaching a node: an aggregation's results are
-- JSON whatever its source reads.
local function value_serde(n)
  while n.parent do
    n = n.parent
    if n.kind == "aggregate" then return "json" end
  end
  return n.source.value
end

-- An operator before n (since the source or the last aggregation) that
-- replaces the value.
local function replaced_value(n)
  while n.parent and n.kind ~= "aggregate" do
    if n.kind == "map" or n.kind == "flat_map" or n.kind == "select" then return n.kind end
    if n.kind == "join_table" then return n.how == "left" and "left_join" or "join" end
    n = n.parent
  end
end

--- Keeps only the named fields of a JSON value, in the given order,
--- copied as they are (null where missing) without decoding the record:
--- the fastest projection. Operators after it read the selected fields
--- of r.value as before (others read nil); sinks write the projection.
function Stream:select(fields)
  if type(fields) ~= "table" or #fields == 0 then
    error("select() expects a list of field names", 2)
  end
  for _, f in ipairs(fields) do
    if type(f) ~= "string" then error("select(): field names must be strings", 2) end
  end
  if value_serde(self) ~= "json" then
    error("select() needs a source with value = \"json\"", 2)
  end
  if replaced_value(self) then
    error("select() reads the record's own JSON value: put it before " .. replaced_value(self) ..
          "() (or after an aggregate())", 2)
  end
  return node(self, "select", { fields = fields })
end

--- Calls fn(r) for its side effects; the stream goes on unchanged.
function Stream:each(fn)
  want_fn("each", fn)
  return node(self, "each", { fn = fn })
end

--- Splits the stream: a record goes to the stream of the first predicate
--- that holds for it (Kafka Streams' branch); records that match none are
--- dropped. Returns one stream per predicate.
function Stream:branch(...)
  local preds = { ... }
  if #preds == 0 then error("branch() expects at least one predicate", 2) end
  for i = 1, #preds do want_fn("branch", preds[i]) end
  local b = node(self, "branch", { preds = preds })
  b.terminal = true
  local outs = {}
  for i = 1, #preds do
    local o = node(nil, "branch_out", { source = self.source, index = i })
    o.parent = b
    b.children[i] = o
    outs[i] = o
  end
  return unpack(outs)
end

local sink_serdes = { auto = true, json = true, string = true, bytes = true, avro = true }

local function check_serde(what, v)
  if v ~= nil and not sink_serdes[v] then
    error("to(): unknown " .. what .. " serde " .. tostring(v) ..
          " (auto, json, string, bytes or avro)", 3)
  end
end

--- Writes the records to a Kafka topic: to{ topic = "t", key = serde,
--- value = serde, headers = function(r) return { name = "value" } end }.
--- Input headers are forwarded unless forward_headers = false.
function Stream:to(opts)
  if type(opts) == "string" then opts = { topic = opts } end
  if type(opts) ~= "table" or type(opts.topic) ~= "string" or opts.topic == "" then
    error("to() expects { topic = \"name\", ... }", 2)
  end
  options.check("to()", opts, { "topic", "key", "value", "headers", "forward_headers", "schema",
                                "subject", "subject_strategy", "key_schema", "key_subject",
                                "schema_id" }, 2)
  check_serde("key", opts.key)
  check_serde("value", opts.value)
  if opts.schema_id ~= nil then
    if opts.value ~= "avro" or opts.schema ~= nil
       or type(opts.schema_id) ~= "number" or opts.schema_id < 0 or opts.schema_id % 1 ~= 0 then
      error("to(): schema_id (a registered schema's id) goes with value = \"avro\", instead of schema", 2)
    end
  end
  for _, w in ipairs { { "value", "schema" }, { "key", "key_schema" } } do
    local serde, sk = w[1], w[2]
    if (opts[serde] == "avro") ~= (opts[sk] ~= nil or (sk == "schema" and opts.schema_id ~= nil)) then
      error("to(): " .. serde .. " = \"avro\" takes " .. sk .. " (Avro's JSON, as a string or a " ..
            "table), and " .. sk .. " goes with " .. serde .. " = \"avro\"", 2)
    end
    if opts[sk] ~= nil then
      local t = type(opts[sk])
      if t == "table" then
        opts[sk] = require("sproc.json").encode(opts[sk])
      elseif t ~= "string" then
        error("to(): " .. sk .. " must be Avro's JSON, as a string or a table", 2)
      end
    end
  end
  if opts.subject ~= nil and (type(opts.subject) ~= "string" or opts.subject == "") then
    error("to(): subject must be a name (default: the topic's name .. \"-value\")", 2)
  end
  -- Confluent's subject name strategies: the topic's (the default) or the
  -- record's full name
  local ss = opts.subject_strategy
  if ss ~= nil and ss ~= "topic" and ss ~= "record" then
    error("to(): subject_strategy is \"topic\" (<topic>-value) or \"record\" (the record's " ..
          "full name)", 2)
  end
  if ss == "record" and not opts.subject then
    local ok, t = pcall(require("sproc.json").decode, opts.schema or "")
    if not ok or type(t) ~= "table" or type(t.name) ~= "string" then
      error("to(): subject_strategy = \"record\" needs a named record schema", 2)
    end
    opts.subject = (t.name:find(".", 1, true) or not t.namespace) and t.name or (t.namespace .. "." .. t.name)
  end
  if opts.headers ~= nil and type(opts.headers) ~= "function" then
    error("to(): headers must be a function of the record returning a table", 2)
  end
  local n = node(self, "to", { opts = opts })
  n.terminal = true
  return n
end

-- Options the file sinks share.
local function check_file_opts(what, opts, level)
  for _, k in ipairs { "roll_bytes", "roll_seconds" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] <= 0) then
      error(what .. "(): " .. k .. " must be a positive number", level)
    end
  end
  for _, k in ipairs { "prefix", "suffix", "checkpoint" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "string" or opts[k] == "") then
      error(what .. "(): " .. k .. " must be a non-empty string", level)
    end
  end
end

--- Prints each record's value on stdout, one line each; with
--- { key = true } as "key<TAB>value".
function Stream:print(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("print() expects an optional table", 2) end
  options.check("print()", opts, { "key" }, 2)
  local n = node(self, "print", { opts = opts })
  n.terminal = true
  return n
end

--- Writes values as lines to rolling files in a directory:
--- to_files{ dir = "out", prefix = "part", suffix = ".jsonl",
---           roll_bytes = 64 * 2^20, roll_seconds = 60, checkpoint = "chk" }.
--- With a checkpoint directory, files are exactly-once across crashes.
function Stream:to_files(opts)
  if type(opts) ~= "table" or type(opts.dir) ~= "string" or opts.dir == "" then
    error("to_files() expects { dir = \"path\", ... }", 2)
  end
  options.check("to_files()", opts, { "dir", "prefix", "suffix", "roll_bytes", "roll_seconds",
                                      "checkpoint" }, 2)
  check_file_opts("to_files", opts, 3)
  local n = node(self, "to_files", { opts = opts })
  n.terminal = true
  return n
end

local codecs = { none = true, snappy = true, zstd = true }

--- Writes values to rolling Parquet files: to_parquet{ dir = "out",
--- schema = s (default: the source's), compression = "snappy" | "zstd" |
--- "none", dictionary = true, row_group_bytes = 64 * 2^20,
--- row_group_rows = n, roll_bytes = 128 * 2^20, roll_seconds = 60,
--- prefix = "part", checkpoint = "chk", partition_by = { "day", ... } }.
--- partition_by writes Hive-style directories (day=2024-01-02/) named by
--- those top-level fields' values, which the files then leave out.
function Stream:to_parquet(opts)
  if type(opts) ~= "table" or type(opts.dir) ~= "string" or opts.dir == "" then
    error("to_parquet() expects { dir = \"path\", schema = ..., ... }", 2)
  end
  options.check("to_parquet()", opts, { "dir", "schema", "compression", "dictionary",
                                        "row_group_bytes", "row_group_rows", "roll_bytes",
                                        "roll_seconds", "prefix", "suffix", "checkpoint",
                                        "partition_by" }, 2)
  check_file_opts("to_parquet", opts, 3)
  local sch = opts.schema
  if sch == nil then sch = self.source and self.source.schema end
  if not schema.is_schema(sch) then
    error("to_parquet() needs schema = sproc.schema{...} (or a source with a schema)", 2)
  end
  local pb = opts.partition_by
  if pb ~= nil then
    if type(pb) == "string" then pb = { pb } end
    if type(pb) ~= "table" or #pb == 0 then
      error("to_parquet(): partition_by must be a list of field names", 2)
    end
    local fields = {}
    for _, f in ipairs(sch.names) do fields[f] = true end
    for _, f in ipairs(pb) do
      if type(f) ~= "string" or not fields[f] then
        error("to_parquet(): partition_by: " .. tostring(f) .. " is not a top-level field " ..
              "of the schema (" .. table.concat(sch.names, ", ") .. ")", 2)
      end
    end
  end
  local c = opts.compression or "snappy"
  if not codecs[c] then
    error("to_parquet(): compression must be \"snappy\", \"zstd\" or \"none\", got " .. tostring(c), 2)
  end
  for _, k in ipairs { "row_group_bytes", "row_group_rows" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] <= 0) then
      error("to_parquet(): " .. k .. " must be a positive number", 2)
    end
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.schema, o.compression = sch, c
  o.dictionary = opts.dictionary ~= false
  o.partition_by = pb and table.concat(pb, ",")
  local n = node(self, "to_parquet", { opts = o })
  n.terminal = true
  return n
end

--- Groups records by key into windows: window(sproc.window.tumbling{
--- size = "10m", grace = "1m" }), hopping{ size, advance, grace } or
--- session{ gap, grace }; aggregate() follows.
function Stream:window(w)
  if type(w) ~= "table" or not w.kind or w.grace == nil then
    error("window() expects sproc.window.tumbling{...}, hopping{...} or session{...}", 2)
  end
  return node(self, "window", { window = w })
end

--- Aggregates each key's windows: aggregate{ name = sproc.agg.count(), ... }
--- with the aggregations of sproc.agg; options: name (the state store's
--- name, stable across versions of the script) and late (a function of
--- the late record, or "dlq" to dead-letter it). Results are records:
--- key = the grouping key, value = { window_start, window_end, ... }.
function Stream:aggregate(spec)
  if self.kind ~= "window" then error("aggregate() follows window()", 2) end
  if type(spec) ~= "table" then error("aggregate() expects a table of aggregations", 2) end
  local aggs = {}
  for k, v in pairs(spec) do
    if k ~= "name" and k ~= "late" then
      if type(k) ~= "string" or type(v) ~= "table" or not v.agg then
        error("aggregate(): " .. tostring(k) .. " must be an aggregation of sproc.agg", 2)
      end
      aggs[#aggs + 1] = { name = k, agg = v.agg, fn = v.fn, init = v.init, add = v.add,
                          merge = v.merge, result = v.result }
    end
  end
  if #aggs == 0 then error("aggregate() needs at least one aggregation", 2) end
  table.sort(aggs, function(a, b) return a.name < b.name end)
  if spec.late ~= nil and spec.late ~= "dlq" and type(spec.late) ~= "function" then
    error("aggregate(): late must be a function of the record or \"dlq\"", 2)
  end
  if spec.name ~= nil and (type(spec.name) ~= "string" or not spec.name:match("^[%w._-]+$")) then
    error("aggregate(): name must be letters, digits, '.', '_' and '-' (it names a store)", 2)
  end
  for _, a in ipairs(aggs) do
    local wk = self.window.kind
    if a.agg == "custom" and (wk == "session" or wk == "sliding") and not a.merge then
      error("aggregate(): " .. a.name .. " needs a merge function: " ..
            (wk == "session" and "sessions merge" or "new sliding windows merge their records'"), 2)
    end
  end
  topo.naggregates = (topo.naggregates or 0) + 1
  return node(self, "aggregate", { aggs = aggs, late = spec.late, emit_mode = "final",
                                   store_name = spec.name or ("window-" .. topo.naggregates) })
end

--- When results come: "final" (default: once per window, when it
--- closes) or "update" (on every change); emit{ "update", interval =
--- "1s" } gives each changed window's latest result at most once per
--- interval of the wall clock.
function Stream:emit(mode)
  if self.kind ~= "aggregate" then error("emit() follows aggregate()", 2) end
  local interval
  if type(mode) == "table" then
    options.check("emit()", mode, { 1, "mode", "interval" }, 2)
    interval = mode.interval
    mode = mode[1] or mode.mode
  end
  if mode ~= "final" and mode ~= "update" then
    error("emit(): mode must be \"final\" or \"update\", got " .. tostring(mode), 2)
  end
  if interval ~= nil then
    if mode ~= "update" then error("emit(): an interval goes with \"update\"", 2) end
    interval = require("sproc.window").duration(interval, "emit(): interval", 2)
  end
  self.emit_mode, self.emit_interval = mode, interval
  return self
end

M.Stream = Stream
return M
