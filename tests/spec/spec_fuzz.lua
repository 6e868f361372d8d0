-- Helpers for the regression specs tests/fuzz writes (not a spec itself):
-- a driver's outputs as a sorted list of canonical lines, to compare with
-- the lines the model gave.
local cjson = require "cjson"

local M = {}

local function canon(v)
  if v == nil or v == cjson.null then return "null" end
  local t = type(v)
  if t == "number" then return string.format("%.12g", v) end
  if t == "boolean" then return tostring(v) end
  if t == "string" then return string.format("%q", v) end
  if #v > 0 then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = canon(x) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = string.format("%q", k) .. ":" .. canon(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end
M.canon = canon

local function value_of(text)
  if text == nil then return nil end
  if text:sub(1, 1) == "{" or text:sub(1, 1) == "[" then
    local ok, v = pcall(cjson.decode, text)
    if ok then return v end
  end
  return text
end

--- The outputs as "topic|key|value" lines, sorted; for the topics in
--- update (a set), the last result of each window ("topic|key|start|value").
function M.lines(d, update)
  local out, last = {}, {}
  for _, r in ipairs(d:outputs()) do
    local v = value_of(r.value)
    if update[r.topic] then
      local start = type(v) == "table" and v.window_start or tonumber(r.headers["sproc.window.start"])
      last[r.topic .. "|" .. tostring(r.key) .. "|" .. string.format("%.12g", start)] = canon(v)
    else
      out[#out + 1] = r.topic .. "|" .. tostring(r.key) .. "|" .. canon(v)
    end
  end
  for k, v in pairs(last) do out[#out + 1] = k .. "|" .. v end
  table.sort(out)
  return out
end

--- Pipes inputs ({ topic, key, value, ts, partition } each) into driver d
--- as tests/fuzz runs a case: mode "batch" (arg records a batch), "random"
--- (batch sizes from seed arg), "reload" (a reload to script halfway) or
--- "rebalance" (every partition revoked and assigned again halfway); a
--- batch holds records of one topic. Then the end of a bounded run.
function M.run(d, inputs, mode, arg, script, partitions)
  local n = #inputs
  local sizes = {}
  if mode == "batch" then
    local i = 1
    while i <= n do sizes[#sizes + 1] = math.min(arg, n - i + 1); i = i + arg end
  elseif mode == "random" then
    math.randomseed(arg)
    local i = 1
    while i <= n do local s = math.min(math.random(1, 12), n - i + 1); sizes[#sizes + 1] = s; i = i + s end
  else
    sizes = { math.floor(n / 2), n - math.floor(n / 2) }
  end
  local function null(v) if v == cjson.null then return nil end return v end
  local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
  local i = 1
  for b, size in ipairs(sizes) do
    local j = i
    while j < i + size do
      local topic = inputs[j].topic
      local batch = {}
      while j < i + size and inputs[j].topic == topic do
        local r = inputs[j]
        local v = r.value_hex and unhex(r.value_hex) or null(r.value)
        batch[#batch + 1] = { key = null(r.key), value = v, ts = r.ts, partition = r.partition }
        j = j + 1
      end
      d:pipe(topic, batch)
    end
    i = i + size
    if b == 1 and mode == "reload" then d:reload{ script = script } end
    if b == 1 and mode == "rebalance" then
      local all = {}
      for p = 0, partitions - 1 do all[#all + 1] = p end
      d:revoke(all)
      d:assign(all)
    end
  end
  d:close_windows()
end

return M
