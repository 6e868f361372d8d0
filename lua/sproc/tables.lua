-- Tables and joins, as a script declares them (sproc.joins compiles them).
--
--   local vendors = sproc.table{ topic = "vendors", value = "json" }
--   sproc.source{ topic = "trips", value = "json" }
--     :left_join(vendors, function(trip, vendor) return { trip = trip, vendor = vendor } end)
--     :to{ topic = "enriched" }
--
-- A table is the latest value per key of a topic (a null value deletes the
-- key), kept in a store named after it; its topic is its changelog. Its
-- changes (a new value, or nil for a deleted key) go to the operators
-- after it: filter, map_values, to_stream and table joins. Joins follow
-- Kafka Streams' semantics (README "Tables and joins").
local stream = require "sproc.stream"
local store = require "sproc.store"
local options = require "sproc.options"
local window = require "sproc.window"

local Stream = stream.Stream
local node = stream.node

local M = {}

local Table = {}
Table.__index = Table
M.Table = Table

-- What the values after a join or a table are: Lua values, not the bytes
-- of a topic (select() does not apply).
local LUA_VALUES = { value = "lua", key = "string" }

local function is_table(t) return getmetatable(t) == Table end
local function is_stream(s) return getmetatable(s) == Stream end
M.is_table = is_table

local function want_fn(what, fn, level)
  if type(fn) ~= "function" then
    error(what .. " expects a function, got " .. type(fn), level + 1)
  end
end

local serdes = { bytes = true, string = true, json = true }

-- A table over a topic: its source, its store and the node of its state.
local function new_table(opts, what, global)
  if type(opts) ~= "table" then error(what .. " expects a table of options", 3) end
  options.check(what, opts, { "topic", "key", "value", "name", "backend", "history" }, 3)
  if opts.history ~= nil and global then error(what .. ": a global table keeps no history", 3) end
  if type(opts.topic) ~= "string" or opts.topic == "" then
    error(what .. ": topic must be a non-empty string", 3)
  end
  local src = { kind = global and "global_table" or "table", names = { opts.topic },
                key = opts.key or "string", value = opts.value or "string", tombstones = "pass" }
  if not serdes[src.key] then error(what .. ": unknown key serde " .. tostring(src.key), 3) end
  if not serdes[src.value] then error(what .. ": unknown value serde " .. tostring(src.value), 3) end
  local topo = stream.topology()
  local name = opts.name or opts.topic
  local ok, h = pcall(store.new, { name = name, backend = opts.backend })
  if not ok then error((tostring(h):gsub("^sproc%.store", what)), 3) end
  for _, other in ipairs(topo.stores) do
    if other.name == h.name then error(what .. ": a store named " .. h.name .. " exists already", 3) end
  end
  h.table_of, h.global = opts.topic, global
  topo.stores[#topo.stores + 1] = h
  local s = stream.new_source(src)
  topo.sources[#topo.sources + 1] = src
  local t = node(s, "table", { store = h, global = global, topic = opts.topic }, Table)
  src.table = t
  if opts.history ~= nil then
    -- a versioned table: its rows of the history in a store of their own
    t.history = window.duration(opts.history, what .. ": history", 3)
    ok, t.versions = pcall(store.new, { name = name .. ".history", backend = opts.backend })
    if not ok then error((tostring(t.versions):gsub("^sproc%.store", what)), 3) end
    topo.stores[#topo.stores + 1] = t.versions
  end
  return t
end

--- sproc.table{ topic = "vendors", key = "string", value = "json",
--- name = "vendors" (the store; default: the topic), backend = "memory" |
--- "lmdb", history = "1h" }: the latest value per key of a topic. A
--- stream joins it by key: the topics must have as many partitions
--- (co-partitioned). With a history the table is versioned: a stream
--- record joins the row valid at its time (sproc.versions).
function M.table(opts) return new_table(opts, "sproc.table", false) end

--- sproc.global_table{ ... }: a table of every partition of its topic, on
--- every process, read to its end before processing starts and followed
--- after; a stream joins it by any key (key = function(r) ... end).
function M.global_table(opts) return new_table(opts, "sproc.global_table", true) end

-- The table node a derived table reads its values through.
local function derive(t, kind, props)
  if t.global then error("a global table has no operators: join it", 3) end
  if t.history then error("a versioned table (history) has no operators: join it", 3) end
  props.global = false
  return node(t, kind, props, Table)
end

--- Keeps the rows for which fn(r) is true (r.key, r.value, r.ts); a row
--- that does not pass is deleted downstream (a nil value).
function Table:filter(fn)
  want_fn("filter()", fn, 2)
  return derive(self, "table_filter", { fn = fn })
end

--- Replaces each row's value by fn(r); deleted rows stay deleted.
function Table:map_values(fn)
  want_fn("map_values()", fn, 2)
  return derive(self, "table_map", { fn = fn })
end

--- The table's changes as a stream: a record per update, value nil when
--- a key was deleted (a tombstone when written to a topic).
function Table:to_stream()
  if self.global then error("a global table has no operators: join it", 2) end
  return node(self, "to_stream", {})
end

--- The latest value per key of a stream as a table, in a store of that
--- name (with a changelog): to_table{ name = "latest", backend = ... }; a
--- nil value deletes the key.
function Stream:to_table(opts)
  if type(opts) ~= "table" then error("to_table() expects { name = \"store\" }", 2) end
  options.check("to_table()", opts, { "name", "backend" }, 2)
  local ok, h = pcall(store.new, { name = opts.name, backend = opts.backend })
  if not ok then error((tostring(h):gsub("^sproc%.store", "to_table()")), 2) end
  local topo = stream.topology()
  for _, other in ipairs(topo.stores) do
    if other.name == h.name then error("to_table(): a store named " .. h.name .. " exists already", 2) end
  end
  topo.stores[#topo.stores + 1] = h
  return node(self, "to_table", { store = h, global = false }, Table)
end

local hows = { join = "inner", left_join = "left", outer_join = "outer" }

-- The name of a join's stores and repartition topics.
local function join_name(opts, what)
  local topo = stream.topology()
  topo.njoins = (topo.njoins or 0) + 1
  local name = opts.name or ("join-" .. topo.njoins)
  if type(name) ~= "string" or not name:match("^[%w._-]+$") then
    error(what .. ": name must be letters, digits, '.', '_' and '-' (it names stores)", 3)
  end
  return name
end

-- stream:join(table, fn, { key = function(r) ... end }): each record looks
-- up the table's value for its key (or key(r)).
local function stream_table(self, t, fn, opts, how, what)
  options.check(what, opts, { "key", "name" }, 3)
  if how == "outer" then error(what .. ": a stream joins a table inner or left", 3) end
  if opts.key ~= nil then want_fn(what .. ": key", opts.key, 3) end
  return node(self, "join_table", { table = t, fn = fn, how = how, keyfn = opts.key,
                                    name = join_name(opts, what) })
end

-- left:join(right, fn, { within = "5m" | before, after, grace }): records
-- of the two streams with the same key at most that far apart.
local function stream_stream(self, other, fn, opts, how, what)
  options.check(what, opts, { "within", "before", "after", "grace", "name", "backend" }, 3)
  local before = opts.before or opts.within
  local after = opts.after or opts.within
  if before == nil or after == nil then
    error(what .. ": a stream-stream join needs within (or before and after)", 3)
  end
  if opts.grace == nil then
    error(what .. ": grace is required (how late a record may be; \"0s\" for none)", 3)
  end
  local w = { before = window.duration(before, what .. ": before", 3),
              after = window.duration(after, what .. ": after", 3),
              grace = window.duration(opts.grace, what .. ": grace", 3) }
  local name = join_name(opts, what)
  local j = node(nil, "stream_join", { fn = fn, how = how, window = w, name = name,
                                       backend = opts.backend or "memory" })
  j.source = setmetatable({ task_of = self }, { __index = LUA_VALUES })
  j.left = node(self, "join_side", { join = j, side = "left" })
  j.right = node(other, "join_side", { join = j, side = "right" })
  j.left.terminal, j.right.terminal = true, true
  return j
end

for method, how in pairs(hows) do
  local what = method .. "()"
  Stream[method] = function(self, other, fn, opts)
    want_fn(what, fn, 2)
    opts = opts or {}
    if type(opts) ~= "table" then error(what .. ": options must be a table", 2) end
    if is_table(other) then return stream_table(self, other, fn, opts, how, what) end
    if is_stream(other) then return stream_stream(self, other, fn, opts, how, what) end
    error(what .. " joins a stream or a table (sproc.table, sproc.global_table, to_table())", 2)
  end
  -- table:join(table, fn): a table of the two tables' rows of one key,
  -- updated whenever either side changes.
  Table[method] = function(self, other, fn, opts)
    want_fn(what, fn, 2)
    opts = opts or {}
    options.check(what, opts, { "name" }, 2)
    if not is_table(other) then error(what .. ": a table joins a table", 2) end
    if self.global or other.global then error(what .. ": a global table is joined by streams", 2) end
    local j = node(nil, "table_join", { fn = fn, how = how, name = join_name(opts, what),
                                        global = false }, Table)
    j.source = setmetatable({ task_of = self }, { __index = LUA_VALUES })
    j.left = node(self, "join_side", { join = j, side = "left" })
    j.right = node(other, "join_side", { join = j, side = "right" })
    j.left.terminal, j.right.terminal = true, true
    return j
  end
end

--- A table's value of key (in partition p, default the record's), for
--- operators that look it up themselves; nil when absent.
function Table:get(key, p)
  local base = self
  while base.kind ~= "table" and base.kind ~= "to_table" do
    if base.kind == "table_join" then error("get(): read a joined table's sides", 2) end
    base = base.parent
  end
  local v = base.store:get(key, p)
  if base == self or v == nil then return v end
  error("get(): read the table the operators start from", 2)
end

return M
