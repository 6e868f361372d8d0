-- The runtime, as the core and the test driver see it: loads a user
-- script, compiles its topology against the native core (sproc.compile),
-- runs batches (sproc.batch), swaps in a new version on reload and
-- describes the topology (sproc.describe).
local ffi = require "ffi"
local core = require "sproc.core"
local sproc = require "sproc"
local errors = require "sproc.errors"
local compile = require "sproc.compile"

local C = core.C
local user_traceback = errors.user_traceback

local M = {}

M.compile = compile.compile
M.run_batch = require("sproc.batch").run
M.describe = require("sproc.describe").describe

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

--- Loads and runs a script file, then compiles its topology.
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
function M.on_reload(_, partitions)
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

return M
