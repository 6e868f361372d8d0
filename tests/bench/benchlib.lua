-- What the in-process benchmarks share: a monotonic clock and the RSS.
local ffi = require "ffi"

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

return M
