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

-- the directories of to_files() sinks, emptied first (one case runs in
-- several modes)
local dirs, base = {}, script:match("^(.*)/[^/]*$") or "."
local function walk(ops)
  for _, o in ipairs(ops) do
    if o.op == "to_files" then dirs[#dirs + 1] = o.dir end
    if o.op == "branch" then for _, b in ipairs(o.branches) do walk(b) end end
  end
end
for _, s in ipairs(case.sources) do walk(s.ops) end
for _, dir in ipairs(dirs) do os.execute("rm -rf '" .. base .. "/" .. dir .. "'") end

local d = testing.driver{ script = script, partitions = case.partitions }
local ok, err = pcall(fuzz.run, d, case.inputs, mode, arg1, script, case.partitions)
local out = io.stdout
if ok then ok, err = pcall(d.flush, d) end
for _, dir in ipairs(dirs) do
  local ls = io.popen("ls '" .. base .. "/" .. dir .. "' 2>/dev/null")
  for name in ls:lines() do
    if name:sub(1, 1) ~= "." then
      for line in io.lines(base .. "/" .. dir .. "/" .. name) do
        out:write(cjson.encode({ topic = "file:" .. dir, key = cjson.null,
                                 value = line ~= "" and line or cjson.null, headers = {} }), "\n")
      end
    end
  end
  ls:close()
end
for _, r in ipairs(d:outputs()) do
  if r.topic ~= "stdout" then
    out:write(cjson.encode({ topic = r.topic, key = r.key or cjson.null, value = r.value or cjson.null,
                             headers = r.headers or {} }), "\n")
  end
end
if not ok then out:write(cjson.encode({ error = tostring(err) }), "\n") end
