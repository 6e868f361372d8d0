-- Aggregates written in Lua (sproc.agg.custom): after the core placed the
-- record in its windows, each accumulator (a companion store entry) is
-- read, added to, and written back. As in Kafka Streams, sessions that
-- merge go into a fresh init() (merge each, then add); a new sliding
-- window is built by merging the accumulators of the records it holds
-- (add(init(), r), kept per record), so Lua aggregates on sessions and
-- sliding windows need merge().
local ffi = require "ffi"
local core = require "sproc.core"
local store = require "sproc.store"
local errors = require "sproc.errors"

local C = core.C
local ffi_string = ffi.string
local errp, cerr = errors.errp, errors.cerr
local char, byte = string.char, string.byte
local tonumber, ipairs, error = tonumber, ipairs, error

local M = {}

-- The companion store's entries of one aggregation: load and save decoded
-- values, and read the accumulators its records keep between two times.
local function entries(ctx, st, where)
  local valp, vlenp = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local keyp, klenp = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local wkey = store.wkey
  local e = {}
  function e.load(key)
    if C.sp_store_get(ctx, st, -1, key, #key, valp, vlenp) == 0 then return nil end
    return store.decode(valp[0], tonumber(vlenp[0]))
  end
  function e.save(key, v, ts, c)
    local p, len = store.encode(v)
    if not p then error(where .. ": " .. c.a.name .. ": " .. len, 0) end
    if C.sp_store_put_at(ctx, st, -1, key, #key, p, len, ts, errp) ~= 0 then error(cerr(where), 0) end
  end
  function e.delete(key)
    C.sp_store_delete(ctx, st, -1, key, #key, errp)
  end
  -- the records' own accumulators of k from time from to time to, merged
  -- into acc in time order
  function e.merge_records(c, k, from, to, acc)
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
  return e
end

-- The accumulator of one window after record r: sessions merge the
-- sessions r joined into a fresh one, a sliding window made now merges
-- its records', others add r to what they hold.
local function accumulate(e, kind, c, k, r, start, wend, made, mstarts, nm)
  local wkey = store.wkey
  if kind == "session" then
    local acc = c.a.init()
    for m = 0, nm - 1 do
      local mkey = wkey(k, tonumber(mstarts[m])) .. char(0x40 + c.index)
      local other = e.load(mkey)
      if other ~= nil then
        acc = c.a.merge(acc, other)
        e.delete(mkey)
      end
    end
    return c.a.add(acc, r)
  elseif kind == "sliding" and made then
    return e.merge_records(c, k, start, wend, c.a.init())
  end
  local acc = e.load(wkey(k, start) .. char(0x40 + c.index))
  if acc == nil then acc = c.a.init() end
  return c.a.add(acc, r)
end

--- The function that updates the Lua aggregates of aggregation node n
--- (core operator op) after a record of key k, or nil when it has none.
function M.compile(n, env, op)
  local ctx = env.ctx
  local list = {}
  for i, a in ipairs(n.aggs) do
    if a.agg == "custom" then list[#list + 1] = { index = i - 1, a = a } end
  end
  if #list == 0 then return nil end
  local kind = n.parent.window.kind
  local e = entries(ctx, C.sp_window_companion(ctx, op), "aggregate(" .. n.store_name .. ")")
  local cap = 64
  local starts, ends, made = ffi.new("int64_t[?]", cap), ffi.new("int64_t[?]", cap),
                             ffi.new("int32_t[?]", cap)
  local mstarts = ffi.new("int64_t[64]")
  local wkey = store.wkey
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
        local own = e.load(key) or {}
        own[#own + 1] = c.a.add(c.a.init(), r)
        e.save(key, own, r.ts, c)
      end
    end
    local nm = kind == "session" and C.sp_window_merged(ctx, mstarts, 64) or 0
    for j = 0, nj - 1 do
      local start, wend = tonumber(starts[j]), tonumber(ends[j])
      for _, c in ipairs(list) do
        local acc = accumulate(e, kind, c, k, r, start, wend, made[j] == 1, mstarts, nm)
        e.save(wkey(k, start) .. char(0x40 + c.index), acc, wend, c)
      end
    end
  end
end

return M
