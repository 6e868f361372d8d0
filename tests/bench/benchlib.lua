-- What the in-process benchmarks share: a monotonic clock, the RSS, and
-- pipelines fed straight into the core's batch (no test driver between).
local ffi = require "ffi"
local core = require "sproc.core"
local sproc = require "sproc"
local runtime = require "sproc.runtime"

local C = core.C
local M = {}

ffi.cdef [[ int clock_gettime(int clk, struct timespec_ { long s; long ns; } *ts); ]]
local ts = ffi.new("struct timespec_")

--- Seconds of CLOCK_MONOTONIC.
function M.now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.s) + tonumber(ts.ns) * 1e-9
end

--- Resident set size of this process, KiB.
function M.rss_kb()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end

--- The median of a list of numbers.
function M.median(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

local errp = ffi.new("const char *[1]")
local keybuf = ffi.new("char[32]")

--- Writes prefix and the decimal digits of n (width digits, zero-padded)
--- into a reused buffer; returns pointer and length. No Lua string.
function M.key(prefix, n, width)
  local p = #prefix
  ffi.copy(keybuf, prefix, p)
  for i = p + width - 1, p, -1 do
    keybuf[i] = 48 + n % 10
    n = (n - n % 10) / 10
  end
  return keybuf, p + width
end

--- A pipeline that build(sproc) declares, compiled on a context of its
--- own. Returns feed(topic, first, n, fill), which pushes records
--- first..first+n-1 of topic (fill(i) returns key pointer, key length,
--- value and timestamp) and runs them as one batch, the context and the
--- compiled pipeline (for runtime.run_batch).
function M.pipeline(build)
  local ctx = ffi.gc(C.sp_ctx_create(), C.sp_ctx_destroy)
  sproc._reset(nil)
  build(sproc)
  local env = runtime.compile(ctx, { default_id = "bench" })
  local tids = {}
  local function feed(topic, first, n, fill)
    local tid = tids[topic]
    if not tid then
      tid = C.sp_topic_id(ctx, topic)
      tids[topic] = tid
    end
    C.sp_batch_reset(ctx)
    for i = first, first + n - 1 do
      local kp, kl, v, t = fill(i)
      C.sp_batch_push(ctx, tid, 0, i, kp, kl, v, v and #v or 0, t or i, errp)
    end
    local msg = runtime.run_batch(env)
    if msg then error(msg) end
    C.sp_out_clear(ctx)
  end
  return feed, ctx, env
end

return M
