-- Runs a generated case on the test driver and prints its outputs as JSON
-- lines. Usage: luajit driver_run.lua CASE.json MODE ARG (spec_fuzz.run
-- says what the modes are).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../spec/?.lua;" .. package.path
local cjson = require "cjson"
local testing = require "sproc.testing"
local fuzz = require "spec_fuzz"

local case_path, mode, arg1 = arg[1], arg[2], tonumber(arg[3])
local f = assert(io.open(case_path))
local case = cjson.decode(f:read("*a"))
f:close()
local script = case_path:gsub("%.json$", ".lua")

local d = testing.driver{ script = script, partitions = case.partitions }
local ok, err = pcall(fuzz.run, d, case.inputs, mode, arg1, script, case.partitions)
local out = io.stdout
for _, r in ipairs(d:outputs()) do
  if r.topic ~= "stdout" then
    out:write(cjson.encode({ topic = r.topic, key = r.key or cjson.null, value = r.value or cjson.null,
                             headers = r.headers or {} }), "\n")
  end
end
if not ok then out:write(cjson.encode({ error = tostring(err) }), "\n") end
