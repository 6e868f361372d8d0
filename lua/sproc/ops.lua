-- Compilers of the operators that need no state and no sink: each takes
-- the node, the compile environment and the compiler (c.children(n, env)
-- compiles what follows), and returns the function a record goes through.
-- A replaced key or value is put back after the operators that follow
-- ran, so that a record a branch shares is seen unchanged by the others.
local record = require "sproc.record"
local errors = require "sproc.errors"

local VSET, KSET = record.VSET, record.KSET
local rawget, rawset = rawget, rawset
local bad_input = errors.bad_input

local function count_filtered(stats)
  stats.filtered = stats.filtered + 1
end

local M = { compilers = {} }
local compile = M.compilers

function compile.source(n, env, c)
  return c.children(n, env)
end
compile.branch_out = compile.source

function compile.filter(n, env, c)
  local fn, stats = n.fn, env.stats
  local nxt = c.children(n, env)
  return function(r)
    if fn(r) then nxt(r) else count_filtered(stats) end
  end
end

-- map and key_by: the record goes on with its value (key) replaced by
-- what fn returns.
local function replacing(field, flag)
  return function(n, env, c)
    local fn = n.fn
    local nxt = c.children(n, env)
    return function(r)
      local v = fn(r)
      local old, oldset = rawget(r, field), rawget(r, flag)
      rawset(r, field, v); r[flag] = true
      nxt(r)
      rawset(r, field, old); r[flag] = oldset
    end
  end
end
compile.map = replacing("value", VSET)
compile.key_by = replacing("key", KSET)

function compile.select(n, env, c)
  local batch = env.batch
  local nxt = c.children(n, env)
  local view, project = record.projection(env.ctx, batch, n.fields)
  return function(r)
    -- a tombstone goes on as one
    if batch.recs[batch.cur].val == nil then return (nxt(r)) end
    if not project() then bad_input("select(): the value is not a JSON object") end
    -- the projection stays in the core's buffer until a sink reads it
    local old = rawget(r, "value")
    rawset(r, "value", nil); r[VSET] = view
    nxt(r)
    rawset(r, "value", old); r[VSET] = false
  end
end

function compile.each(n, env, c)
  local fn = n.fn
  local nxt = c.children(n, env)
  return function(r)
    fn(r)
    nxt(r)
  end
end

function compile.flat_map(n, env, c)
  local fn, stats = n.fn, env.stats
  local nxt = c.children(n, env)
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
end

function compile.branch(n, env, c)
  local stats = env.stats
  local preds, outs = n.preds, {}
  for i = 1, #preds do outs[i] = c.node(n.children[i], env) end
  local np = #preds
  return function(r)
    for i = 1, np do
      if preds[i](r) then return (outs[i](r)) end
    end
    count_filtered(stats)
  end
end

return M
