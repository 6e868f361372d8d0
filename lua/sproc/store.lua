-- sproc.store: handles on the native state stores.
--
--   local counts = sproc.store{ name = "counts" }
--   stream:each(function(r) counts:incr(r.key, 1) end)
--
-- State lives in C, split by the partition of the record being processed,
-- so a handle used inside an operator reads and writes the state of that
-- record's partition, and the state follows the partition to whichever
-- process owns it. Values are numbers, strings, booleans or tables (kept as
-- JSON); keys are strings (numbers are turned into strings).
local ffi = require "ffi"
local core = require "sproc.core"
local json = require "sproc.json"

local C = core.C
local ffi_string, ffi_copy = ffi.string, ffi.copy
local type, tostring, error, setmetatable = type, tostring, error, setmetatable
local byte, sub = string.byte, string.sub

local M = {}

local errp = ffi.new("const char *[1]")
local valp = ffi.new("const char *[1]")
local vlenp = ffi.new("size_t[1]")
local keyp = ffi.new("const char *[1]")
local klenp = ffi.new("size_t[1]")
local nump = ffi.new("double[1]")
local numbuf = ffi.new("char[9]")

-- A fatal error: the pipeline stops whatever the error policy, because
-- going on would lose state.
M.Fatal, M.fatal = require("sproc.errors").Fatal, require("sproc.errors").fatal

local B_NUM, B_STR, B_JSON = C.SP_VAL_NUMBER, C.SP_VAL_STRING, C.SP_VAL_JSON
local B_TRUE, B_FALSE = C.SP_VAL_TRUE, C.SP_VAL_FALSE
local T_STR, T_JSON, T_TRUE, T_FALSE = string.char(B_STR), string.char(B_JSON), string.char(B_TRUE),
                                       string.char(B_FALSE)

local function encode(v)
  local tv = type(v)
  if tv == "number" then
    numbuf[0] = B_NUM
    nump[0] = v
    ffi_copy(numbuf + 1, nump, 8)
    return numbuf, 9
  elseif tv == "string" then
    local s = T_STR .. v
    return s, #s
  elseif tv == "boolean" then
    return v and T_TRUE or T_FALSE, 1
  elseif tv == "table" then
    local s = T_JSON .. json.encode(v)
    return s, #s
  end
  return nil, "a store value must be a number, string, boolean or table, got " .. tv
end

local function decode(p, n)
  local tag = p[0]
  if tag == B_NUM then
    ffi_copy(nump, p + 1, 8)
    return nump[0]
  elseif tag == B_STR then
    return (ffi_string(p + 1, n - 1))
  elseif tag == B_TRUE then
    return true
  elseif tag == B_FALSE then
    return false
  elseif tag == B_JSON then
    return (json.decode(ffi_string(p + 1, n - 1)))
  end
  return (ffi_string(p, n))
end
M.decode = decode

local function keyof(k)
  local tk = type(k)
  if tk == "string" then return k end
  if tk == "number" then return (tostring(k)) end
  return nil, "a store key must be a string or a number, got " .. tk
end

local function failed(rc)
  local msg = ffi_string(errp[0])
  if rc == C.SP_ENOMEM then M.fatal(msg) end
  return nil, msg
end

local Store = {}
Store.__index = Store

local function unbound(self)
  error("store " .. self.name .. " is used before the pipeline runs " ..
        "(use it inside an operator)", 3)
end

--- The value of key, or nil. part: a partition (the test driver's
--- inspection); by default the partition of the record being processed.
function Store:get(k, part)
  local ctx = self._ctx
  if not ctx then unbound(self) end
  local key, e = keyof(k)
  if not key then return nil, e end
  if C.sp_store_get(ctx, self._id, part or -1, key, #key, valp, vlenp) == 0 then return nil end
  return (decode(valp[0], tonumber(vlenp[0])))
end

--- Sets key to value (nil deletes). Returns true, or nil and an error.
function Store:put(k, v, part)
  local ctx = self._ctx
  if not ctx then unbound(self) end
  local key, e = keyof(k)
  if not key then return nil, e end
  if v == nil then return self:delete(key, part) end
  local p, n = encode(v)
  if not p then return nil, n end
  local rc = C.sp_store_put(ctx, self._id, part or -1, key, #key, p, n, errp)
  if rc ~= 0 then return failed(rc) end
  return true
end

function Store:delete(k, part)
  local ctx = self._ctx
  if not ctx then unbound(self) end
  local key, e = keyof(k)
  if not key then return nil, e end
  local rc = C.sp_store_delete(ctx, self._id, part or -1, key, #key, errp)
  if rc ~= 0 then return failed(rc) end
  return true
end

--- Adds by (default 1) to the number at key (missing counts as 0) and
--- returns the new value.
function Store:incr(k, by, part)
  local ctx = self._ctx
  if not ctx then unbound(self) end
  local key, e = keyof(k)
  if not key then return nil, e end
  by = by or 1
  if type(by) ~= "number" then return nil, "incr: by must be a number" end
  local rc = C.sp_store_incr(ctx, self._id, part or -1, key, #key, by, nump, errp)
  if rc ~= 0 then return failed(rc) end
  return nump[0]
end

-- Iterates the store's entries from the stored key from (the first when
-- nil) in byte order; entry(key, value) gives what the iterator returns,
-- nil to stop.
local function iterate(self, from, part, entry)
  local ctx, id = self._ctx, self._id
  if not ctx then unbound(self) end
  part = part or -1
  local last, strict = from, 0
  return function()
    local n = last and #last or 0
    if C.sp_store_next(ctx, id, part, last, n, strict, keyp, klenp, valp, vlenp) == 0 then
      return nil
    end
    last, strict = ffi_string(keyp[0], klenp[0]), 1
    return entry(last, decode(valp[0], tonumber(vlenp[0])))
  end
end

-- Keys >= from while keep(key) holds.
local function scan(self, from, keep, part)
  return iterate(self, from, part, function(k, v)
    if keep and not keep(k) then return nil end
    return k, v
  end)
end

--- for key, value in store:range(from, to): keys from..to (both included,
--- either may be nil for an open end), in byte order.
function Store:range(from, to, part)
  if from ~= nil and type(from) ~= "string" then from = tostring(from) end
  if to ~= nil and type(to) ~= "string" then to = tostring(to) end
  return scan(self, from, to and function(k) return k <= to end, part)
end

--- for key, value in store:prefix(p): the keys that start with p.
function Store:prefix(p, part)
  local n = #p
  return scan(self, p, function(k) return sub(k, 1, n) == p end, part)
end

--- for key, value in store:all(): every key of the partition.
function Store:all(part) return scan(self, nil, nil, part) end

--- Number of keys (of the partition; of all partitions in the driver,
--- outside a record).
function Store:size(part)
  if not self._ctx then unbound(self) end
  return tonumber(C.sp_store_size(self._ctx, self._id, part or -1))
end

--- Window stores: values per key and window start (epoch ms), kept
--- until stream time passes the start by the retention.
local Window = {}
Window.__index = Window

local char, floor = string.char, math.floor

-- key (2-byte length first) .. start (8 bytes big-endian): a key's
-- windows are adjacent and in time order
local function wkey(k, start)
  local key, e = keyof(k)
  if not key then return nil, e end
  if #key > 65535 then return nil, "a window store key is at most 65535 bytes" end
  if type(start) ~= "number" or start < 0 or start ~= floor(start) then
    return nil, "a window start must be whole milliseconds >= 0"
  end
  local b8 = start % 256; start = (start - b8) / 256
  local b7 = start % 256; start = (start - b7) / 256
  local b6 = start % 256; start = (start - b6) / 256
  local b5 = start % 256; start = (start - b5) / 256
  local b4 = start % 256; start = (start - b4) / 256
  local b3 = start % 256; start = (start - b3) / 256
  local b2 = start % 256; start = (start - b2) / 256
  return char(floor(#key / 256), #key % 256) .. key ..
         char(start % 256, b2, b3, b4, b5, b6, b7, b8)
end

-- A window store key's parts: the user's key and the start.
local function wsplit(raw)
  local klen = byte(raw, 1) * 256 + byte(raw, 2)
  local t = 0
  for i = 3 + klen, 10 + klen do t = t * 256 + byte(raw, i) end
  return sub(raw, 3, 2 + klen), t
end

function Window:get(k, start, part)
  local ctx = self._ctx
  if not ctx then unbound(self) end
  local key, e = wkey(k, start)
  if not key then return nil, e end
  if C.sp_store_get(ctx, self._id, part or -1, key, #key, valp, vlenp) == 0 then return nil end
  return (decode(valp[0], tonumber(vlenp[0])))
end

--- Sets the value of key's window at start (nil deletes).
function Window:put(k, start, v, part)
  local ctx = self._ctx
  if not ctx then unbound(self) end
  local key, e = wkey(k, start)
  if not key then return nil, e end
  if v == nil then return self:delete(k, start, part) end
  local p, n = encode(v)
  if not p then return nil, n end
  local rc = C.sp_store_put_at(ctx, self._id, part or -1, key, #key, p, n, start, errp)
  if rc ~= 0 then return failed(rc) end
  return true
end

function Window:delete(k, start, part)
  local ctx = self._ctx
  if not ctx then unbound(self) end
  local key, e = wkey(k, start)
  if not key then return nil, e end
  local rc = C.sp_store_delete(ctx, self._id, part or -1, key, #key, errp)
  if rc ~= 0 then return failed(rc) end
  return true
end

function Window:incr(k, start, by, part)
  local ctx = self._ctx
  if not ctx then unbound(self) end
  local key, e = wkey(k, start)
  if not key then return nil, e end
  by = by or 1
  if type(by) ~= "number" then return nil, "incr: by must be a number" end
  local rc = C.sp_store_incr_at(ctx, self._id, part or -1, key, #key, by, start, nump, errp)
  if rc ~= 0 then return failed(rc) end
  return nump[0]
end

-- Windows from the encoded key from while keep(key, start) holds.
local function wscan(self, from, keep, part)
  return iterate(self, from, part, function(raw, v)
    local k, t = wsplit(raw)
    if keep and not keep(k, t) then return nil end
    return k, t, v
  end)
end

--- for start, value in ws:fetch(key, from, to): key's windows with
--- from <= start <= to, in time order.
function Window:fetch(k, from, to, part)
  local lo, e = wkey(k, from or 0)
  if not lo then error(e, 2) end
  local key = keyof(k)
  to = to or 2^53
  local it = wscan(self, lo, function(wk, t) return wk == key and t <= to end, part)
  return function()
    local _, t, v = it()
    return t, v
  end
end

--- for key, start, value in ws:range(from, to): every key's windows with
--- from <= start <= to (a scan of the partition).
function Window:range(from, to, part)
  from, to = from or 0, to or 2^53
  local it = wscan(self, nil, nil, part)
  return function()
    while true do
      local k, t, v = it()
      if k == nil then return nil end
      if t >= from and t <= to then return k, t, v end
    end
  end
end

function Window:all(part) return self:range(nil, nil, part) end

function Window:size(part)
  if not self._ctx then unbound(self) end
  return tonumber(C.sp_store_size(self._ctx, self._id, part or -1))
end

M.encode, M.wkey = encode, wkey

local kinds = { kv = C.SP_STORE_KV, window = C.SP_STORE_WINDOW }
local classes = { kv = Store, window = Window }

--- A new, unbound handle (sproc.store calls this while the script builds
--- its pipeline). A window store's retention (default a day, as in Kafka
--- Streams) keeps a window until stream time passes its start by that
--- much: make it at least the window's size plus its grace.
function M.new(opts)
  if type(opts) ~= "table" then error("sproc.store expects a table of options", 3) end
  require("sproc.options").check("sproc.store", opts,
                                 { "name", "kind", "ttl", "retention", "backend" }, 3)
  if type(opts.name) ~= "string" or not opts.name:match("^[%w._-]+$") then
    error("sproc.store: name must be a non-empty string of letters, digits, '.', '_' and '-' " ..
          "(it names the changelog topic)", 3)
  end
  local kind = opts.kind or "kv"
  if not kinds[kind] then
    error("sproc.store: kind must be \"kv\" or \"window\", got " .. tostring(kind), 3)
  end
  if opts.ttl ~= nil and (type(opts.ttl) ~= "number" or opts.ttl <= 0) then
    error("sproc.store: ttl must be a positive number of milliseconds", 3)
  end
  if kind == "window" then
    if opts.ttl ~= nil then error("sproc.store: a window store has a retention, not a ttl", 3) end
    local r = opts.retention or 24 * 3600 * 1000
    if type(r) ~= "number" or r <= 0 then
      error("sproc.store: retention must be a positive number of milliseconds", 3)
    end
    opts = setmetatable({ ttl = r }, { __index = opts })
  end
  local backend = opts.backend or "memory"
  if backend ~= "memory" and backend ~= "lmdb" then
    error("sproc.store: backend must be \"memory\" or \"lmdb\", got " .. tostring(backend), 3)
  end
  return setmetatable({ name = opts.name, kind = kind, ttl = opts.ttl, backend = backend },
                      classes[kind])
end

--- Binds a handle to a context's store of its name (the runtime does, once
--- the script has built its pipeline).
function M.bind(h, ctx)
  local id = C.sp_store_open(ctx, h.name, kinds[h.kind], errp)
  if id < 0 then error("store " .. h.name .. ": " .. ffi_string(errp[0]), 0) end
  if C.sp_store_set_ttl(ctx, id, h.ttl or 0, errp) ~= 0 or
     (h.backend == "lmdb" and C.sp_store_set_disk(ctx, id, errp) ~= 0) then
    error("store " .. h.name .. ": " .. ffi_string(errp[0]), 0)
  end
  h._ctx, h._id = ctx, id
  return h
end

return M
