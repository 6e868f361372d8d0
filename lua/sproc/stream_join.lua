-- Windowed stream-stream joins, after Kafka Streams' KStreamKStreamJoin
-- (3.x, with its fix of spurious left/outer results). Each side keeps its
-- records in a store of its own for before + after + grace; a record
-- joins the other side's records of its key from ts - before to ts +
-- after (for the right side: ts - after to ts + before). A left (outer)
-- join's record that found no partner waits in the join's "outer" store
-- until its window has closed in the join's stream time, and goes out
-- with nil for the other side then, unless a partner came first. The
-- join's stream time (the latest record time either side brought) and
-- each side's latest record time live in the stores too, so a restore
-- brings them back.
local ffi = require "ffi"
local core = require "sproc.core"
local store = require "sproc.store"
local encode = require "sproc.encode"
local errors = require "sproc.errors"
local joins = require "sproc.joins"
local record = require "sproc.record"
local KSET, RAWKEY = record.KSET, record.RAWKEY

local C = core.C
local ffi_string = ffi.string
local errp, cerr = errors.errp, errors.cerr
local key_string = encode.key_string
local tonumber, error, char, byte = tonumber, error, string.char, string.byte
local getinfo = debug.getinfo
local rawget, rawset, type, getmetatable = rawget, rawset, type, getmetatable
local decode, encode_value = store.decode, store.encode
local joined = require "sproc.joined"
local jput, jnext = C.sp_jstore_put, C.sp_jstore_next
local B_JSON = C.SP_VAL_JSON
local with_value = joins.with_value

local M = {}

-- Keys of the stores' own entries: longer than 2 bytes, shorter than any
-- record's (a window key is at least 10), after every time.
-- (core/state/sp_jstore.c keeps a side store's records and its own two
-- such entries: the latest time it saw and its last sequence number)
local TIME, SEQ = "\255\255\255t", "\255\255\255s"

local function be8(t)
  local b = {}
  for i = 8, 1, -1 do b[i] = t % 256; t = (t - b[i]) / 256 end
  return char(b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8])
end

local function be4(n)
  return char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
              math.floor(n / 256) % 256, n % 256)
end

local function unbe(s, i, n)
  local v = 0
  for k = i, i + n - 1 do v = v * 256 + byte(s, k) end
  return v
end

-- A join's stores: left, right and outer (the last for left and outer
-- joins), bound once for both sides.
local function stores(j, env)
  env.join_stores = env.join_stores or {}
  local s = env.join_stores[j]
  if s then return s end
  local ctx = env.ctx
  local w = j.window
  local retention = w.before + w.after + w.grace
  s = { retention = retention }
  for _, part in ipairs { "left", "right", "outer" } do
    local name = j.name .. "." .. part
    local id = C.sp_store_open(ctx, name, C.SP_STORE_KV, errp)
    if id < 0 or (j.backend == "lmdb" and C.sp_store_set_disk(ctx, id, errp) ~= 0)
       or (part ~= "outer" and C.sp_jstore_open(ctx, id, retention, errp) ~= 0) then
      error(cerr("join " .. j.name), 0)
    end
    -- (what the join can no longer see leaves a side's store as its
    -- records move on: core/state/sp_jstore.c)
    s[part] = id
  end
  env.join_stores[j] = s
  return s
end

-- One partition's view of a store: get/put/delete and a scan, on the
-- partition of the record being processed.
local function access(ctx, id)
  local valp, vlenp = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local keyp, klenp = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local a = {}
  function a.get(k)
    if C.sp_store_get(ctx, id, -1, k, #k, valp, vlenp) == 0 then return nil end
    return (decode(valp[0], tonumber(vlenp[0])))
  end
  function a.put(k, v, ts)
    local p, len = encode_value(v)
    if not p then error("join: " .. len, 0) end
    if C.sp_store_put_at(ctx, id, -1, k, #k, p, len, ts or -1, errp) ~= 0 then error(cerr("join"), 0) end
  end
  function a.delete(k)
    if C.sp_store_delete(ctx, id, -1, k, #k, errp) ~= 0 then error(cerr("join"), 0) end
  end
  -- the first key from `from` on (after it when strict), its value's
  -- pointer and length; nil at the end. A cursor rather than a callback:
  -- closures made per record keep LuaJIT from compiling the join.
  function a.seek(from, strict)
    if C.sp_store_next(ctx, id, -1, from, #from, strict and 1 or 0, keyp, klenp, valp, vlenp) ~= 1 then
      return nil
    end
    return ffi_string(keyp[0], klenp[0]), valp[0], tonumber(vlenp[0])
  end
  return a
end

-- The next sequence number of a store partition (duplicates of one key
-- and time keep their order).
local function next_seq(a)
  local n = (a.get(SEQ) or 0) + 1
  a.put(SEQ, n)
  return n
end

-- An outer-store key: time, side, key, sequence: scanned in time order.
local function outer_key(ts, side, k, seq)
  return be8(ts) .. (side == "left" and "\0" or "\1") .. char(math.floor(#k / 256), #k % 256) .. k ..
         (seq and be4(seq) or "")
end

-- Deletes the outer store's records of a side, time and key (matched).
local function forget_waiting(outer, ts, side, k)
  local ob = outer_key(ts, side, k)
  local ck = outer.seek(ob, false)
  while ck and ck:sub(1, #ob) == ob do
    outer.delete(ck)
    ck = outer.seek(ck, true)
  end
end

-- The function that sends the records waiting in the outer store whose
-- window closed by stream time now: out with nil for the other side, in
-- time order.
local function closed_emitter(outer, w, fn, nxt, decode)
  return function(r, now)
    local open0, open1 = false, false
    local k, vp, vl = outer.seek("", false)
    while k and #k >= 11 and byte(k, 1) ~= 255 and not (open0 and open1) do
      local ts, sd = unbe(k, 1, 8), byte(k, 9)
      -- a left record's window ends after ts + after, a right one's after ts + before
      local reach = sd == 0 and w.after or w.before
      if ts + reach + w.grace >= now then
        if sd == 0 then open0 = true else open1 = true end
      elseif not (sd == 0 and open0 or sd == 1 and open1) then
        local klen = unbe(k, 10, 2)
        local key = k:sub(12, 11 + klen)
        local val = decode(vp, vl)
        local out = sd == 0 and fn(val, nil, key) or fn(nil, val, key)
        -- deleted before going on: the cursor continues after its key
        outer.delete(k)
        local oldkey, oldset = rawget(r, "key"), rawget(r, KSET)
        rawset(r, "key", key); r[KSET] = true
        with_value(nxt, r, out, ts)
        rawset(r, "key", oldkey); r[KSET] = oldset
      end
      k, vp, vl = outer.seek(k, true)
    end
  end
end

function M.side(n, env, c)
  local j, side = n.join, n.side
  local ctx, stats, batch = env.ctx, env.stats, env.batch
  local nxt = joins.downstream(j, env, c)
  local s = stores(j, env)
  local outer = access(ctx, s.outer)
  local w, fn, how = j.window, j.fn, j.how
  local is_left = side == "left"
  -- this side looks from ts - before to ts + after (the right side the
  -- other way round)
  local before, after = w.before, w.after
  if not is_left then before, after = w.after, w.before end
  local this_outer = how == "outer" or (how == "left" and is_left)
  local uses_outer = how ~= "inner"
  local retention = s.retention
  local function join(v, ov, key)
    if is_left then return (fn(v, ov, key)) end
    return (fn(ov, v, key))
  end

  local decode = joined.of(env)
  local emit_closed = closed_emitter(outer, w, fn, nxt, decode)

  local this_id, other_id = s[side], s[is_left and "right" or "left"]
  local hit = ffi.new("sp_jstore_hit")
  local other_side = is_left and "right" or "left"

  -- the partner in hit joins r; then the next one: 1, 0 at the end, < 0
  -- out of memory
  -- k, kl: the key's bytes (a string, or the record's own pointer)
  local function joined_with(r, v, key, k, kl, ts)
    local ots = tonumber(hit.ts)
    local ov = decode(hit.val, tonumber(hit.vlen))
    -- the partner is no longer waiting for one
    if uses_outer then forget_waiting(outer, ots, other_side, k) end
    with_value(nxt, r, join(v, ov, key), ts > ots and ts or ots)
    return (jnext(ctx, other_id, k, kl, ts - before, ts + after, retention, hit))
  end

  -- a record with more than one partner: a loop of its own, so that the
  -- usual one with none or one compiles without an inner loop
  local function the_others(r, v, key, k, kl, ts)
    local rc
    repeat rc = joined_with(r, v, key, k, kl, ts) until rc ~= 1
    return rc
  end

  -- An inner join whose function takes no key reads a record's key as
  -- its bytes, when they are the key (no serde, not replaced): no Lua
  -- string per record.
  local info = type(fn) == "function" and getinfo(fn, "u")
  local bytes_key = how == "inner" and info and not info.isvararg and info.nparams <= 2

  return function(r)
    local ts = r.ts
    -- the join's stream time: what closes windows of left and outer joins
    local now = uses_outer and outer.get(TIME) or -1
    if uses_outer and ts > now then
      now = ts
      outer.put(TIME, now)
    end
    -- k, kl: the key's bytes, nil for no key (key stays nil for a
    -- function that takes none)
    local v, key, k, kl = r.value, nil, nil, nil
    if bytes_key and rawget(r, RAWKEY) and not rawget(r, KSET) then
      local rec = batch.recs[batch.cur]
      k, kl = rec.key, rec.key_len
    else
      key = r.key
      if this_outer and key == nil and v ~= nil then
        return (with_value(nxt, r, join(v, nil, key)))
      end
      if key ~= nil then k = key_string(key); kl = #k end
    end
    if k == nil or v == nil then
      stats.filtered = stats.filtered + 1
      return
    end
    if uses_outer and ts == now then emit_closed(r, now) end
    -- the other side's records of the key within the window, and still
    -- within its store's retention
    hit.started = 0
    local rc = jnext(ctx, other_id, k, kl, ts - before, ts + after, retention, hit)
    local found = rc == 1
    if found then
      rc = joined_with(r, v, key, k, kl, ts)
      if rc == 1 then rc = the_others(r, v, key, k, kl, ts) end
    end
    if rc < 0 then error("join " .. j.name .. ": out of memory", 0) end
    if not found and this_outer then
      if not uses_outer or ts + after < now then
        with_value(nxt, r, join(v, nil, key))
      else
        outer.put(outer_key(ts, side, k, next_seq(outer)), v)
      end
    end
    -- then this record joins this side's store, unless the store's
    -- retention is past it: a record's own JSON as it came
    local rc
    local mt = type(v) == "table" and getmetatable(v)
    if mt and mt.__sproc_raw == 1 then
      local rec = batch.recs[batch.cur]
      rc = jput(ctx, this_id, k, kl, ts, B_JSON, rec.val, rec.val_len, retention, errp)
    else
      local p, len = encode_value(v)
      if not p then error("join: " .. len, 0) end
      rc = jput(ctx, this_id, k, kl, ts, -1, p, len, retention, errp)
    end
    if rc < 0 then error(cerr("join " .. j.name), 0) end
  end
end

return M
