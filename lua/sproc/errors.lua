-- What can go wrong while a batch runs, and how it reads. An error about
-- an input record, an output Kafka refused at once (too large, ...) and
-- a state store that cannot go on carry a metatable each, so that the
-- batch loop applies the error policy to the first two and stops on the
-- third; anything else is the script's, reported with a traceback of the
-- script's own frames.
local ffi = require "ffi"

local ffi_string = ffi.string
local getmetatable, setmetatable, tostring, error = getmetatable, setmetatable, tostring, error

local M = {}

--- The out-argument of the core's calls, and its message after one failed.
M.errp = ffi.new("const char *[1]")
local errp = M.errp
function M.cerr(what)
  return what .. ": " .. ffi_string(errp[0])
end

local function kind(name)
  return { __tostring = function(e) return e.msg end, kind = name }
end
M.InputError = kind("bad input")
M.OutputError = kind("output refused")
-- going on would lose state: the pipeline stops whatever the policy
M.Fatal = kind("state store")

function M.bad_input(msg)
  error(setmetatable({ msg = msg }, M.InputError))
end

function M.output_failed(what)
  error(setmetatable({ msg = M.cerr(what) }, M.OutputError))
end

function M.fatal(msg)
  error(setmetatable({ msg = msg }, M.Fatal), 0)
end

--- What kind of error e is, as the log and dead letters name it.
function M.kind(e)
  -- LuaJIT's own message when an allocation fails (the heap's cap)
  if e == "not enough memory" then return "out of memory" end
  local mt = getmetatable(e)
  return mt and mt.kind or "error in script"
end

-- Drops the frames of sproc's own modules from a traceback, so that what
-- is left points at the user's script.
local stream_methods
function M.user_traceback(msg)
  msg = tostring(msg)
  -- a misspelled operator: say which one was meant
  local m = msg:match("attempt to call method '([%w_]+)' %(a nil value%)")
  if m then
    if not stream_methods then
      stream_methods = {}
      for k, v in pairs(require("sproc.stream").Stream) do
        if type(v) == "function" and not k:match("^_") then stream_methods[#stream_methods + 1] = k end
      end
      table.sort(stream_methods)
    end
    local near = require("sproc.options").nearest(m, stream_methods)
    if near then msg = msg .. " (a stream has no method " .. m .. ": did you mean " .. near .. "?)" end
  end
  local tb = debug.traceback("", 2)
  local keep = {}
  for line in tb:gmatch("[^\n]+") do
    if not line:match("sproc/[%w_]+%.lua:") and not line:match("%[C%]: in function 'xpcall'")
       and not line:match("%[C%]: in function 'error'")
       and not line:match("^stack traceback:") and not line:match("%[sproc%]") then
      keep[#keep + 1] = line
    end
  end
  if #keep == 0 then return msg end
  return msg .. "\nstack traceback:\n" .. table.concat(keep, "\n")
end

--- The handler of the batch's protected call: sproc's own kinds of error
--- go through as they are, the script's get their traceback.
function M.handler(e)
  local mt = getmetatable(e)
  if mt == M.InputError or mt == M.OutputError or mt == M.Fatal then return e end
  return M.user_traceback(tostring(e))
end

return M
