-- sproc.window and sproc.agg: the declarations of windowed aggregations.
--
--   s:key_by(function(r) return r.value.vendor end)
--    :window(sproc.window.tumbling{ size = "10m", grace = "30s" })
--    :aggregate{ trips = sproc.agg.count(),
--                revenue = sproc.agg.sum(function(r) return r.value.amount end) }
--    :emit "final"
--    :to{ topic = "stats" }
--
-- The windows and their accumulators live in the C core (sp_window.c);
-- these are the checked specifications it is built from.
local M = {}

local units = { ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000 }

--- Milliseconds from a number of ms or a string like "500ms", "30s",
--- "10m", "1h", "2d".
function M.duration(v, what, level)
  if type(v) == "number" and v >= 0 and v == math.floor(v) then return v end
  if type(v) == "string" then
    local n, u = v:match("^(%d+%.?%d*)%s*(%a+)$")
    if n and units[u] then return math.floor(tonumber(n) * units[u] + 0.5) end
  end
  error(what .. " must be whole milliseconds or a duration like \"30s\", \"10m\", \"1h\", got " ..
        tostring(v), (level or 2) + 1)
end

local function spec(kind, opts, need)
  if type(opts) ~= "table" then error("sproc.window." .. kind .. " expects a table of options", 3) end
  local allowed = { "grace" }
  for _, k in ipairs(need) do allowed[#allowed + 1] = k end
  require("sproc.options").check("sproc.window." .. kind, opts, allowed, 3)
  if opts.grace == nil then
    error("sproc.window." .. kind .. ": grace is required (how late a record may be; \"0s\" for none)", 3)
  end
  local w = { kind = kind, grace = M.duration(opts.grace, kind .. ": grace", 3) }
  for _, k in ipairs(need) do
    if opts[k] == nil then error("sproc.window." .. kind .. ": " .. k .. " is required", 3) end
    w[k] = M.duration(opts[k], kind .. ": " .. k, 3)
    if w[k] <= 0 then error("sproc.window." .. kind .. ": " .. k .. " must be positive", 3) end
  end
  return w
end

M.window = {}

--- Fixed, adjacent windows [start, start + size) aligned to the epoch.
function M.window.tumbling(opts) return spec("tumbling", opts, { "size" }) end

--- Windows of size every advance: a record is in each window it falls in.
function M.window.hopping(opts)
  local w = spec("hopping", opts, { "size", "advance" })
  if w.advance > w.size then error("sproc.window.hopping: advance must not exceed size", 2) end
  return w
end

--- Sliding windows (Kafka Streams' SlidingWindows): every distinct set of
--- records at most size apart, windows [start, start + size] both ends
--- included, defined by the records' times.
function M.window.sliding(opts) return spec("sliding", opts, { "size" }) end

--- Sessions: records at most gap apart form one window [first, last].
function M.window.session(opts) return spec("session", opts, { "gap" }) end

M.agg = {}
for _, kind in ipairs { "count", "sum", "min", "max", "avg", "first", "last",
                        "count_distinct", "approx_count_distinct" } do
  M.agg[kind] = function(fn)
    if fn ~= nil and type(fn) ~= "function" then
      error("sproc.agg." .. kind .. " expects a function of the record (or nothing)", 2)
    end
    if kind ~= "count" and fn == nil then
      error("sproc.agg." .. kind .. " needs a function of the record", 2)
    end
    return { agg = kind, fn = fn }
  end
end

--- An aggregate written in Lua: custom{ init = function() return acc end,
--- add = function(acc, r) return acc end, merge = function(a, b) return
--- acc end (for session windows), result = function(acc) return value end
--- (optional) }. The accumulator is stored as the store keeps values
--- (tables as JSON), so it survives reloads and restarts.
function M.agg.custom(spec)
  require("sproc.options").check("sproc.agg.custom", spec, { "init", "add", "merge", "result" }, 2)
  if type(spec) ~= "table" or type(spec.init) ~= "function" or type(spec.add) ~= "function" then
    error("sproc.agg.custom expects { init = function, add = function, merge = function, result = function }", 2)
  end
  for _, k in ipairs { "merge", "result" } do
    if spec[k] ~= nil and type(spec[k]) ~= "function" then
      error("sproc.agg.custom: " .. k .. " must be a function", 2)
    end
  end
  return { agg = "custom", init = spec.init, add = spec.add, merge = spec.merge, result = spec.result }
end

return M
