-- Option tables of the Lua API are checked while the pipeline is built: a
-- key no function takes is a mistake (`source{ fromat = "json" }` would
-- otherwise read lines), refused with the nearest known key.
local M = {}

-- Levenshtein distance, small strings only.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The candidate nearest to name when it is close enough to be what was
--- meant (a third of its length, at least 2 edits), or nil.
function M.nearest(name, candidates)
  local best, bestd
  for _, c in ipairs(candidates) do
    local d = distance(name, c)
    if not bestd or d < bestd then best, bestd = c, d end
  end
  if bestd and bestd <= math.max(2, math.floor(#name / 3)) then return best end
  return nil
end

--- " (did you mean x?)" or "".
function M.hint(name, candidates)
  local near = type(name) == "string" and M.nearest(name, candidates)
  return near and (" (did you mean " .. near .. "?)") or ""
end

--- Raises, at the caller's caller (level as error's), for a key of opts
--- not in allowed (a list). what names the function: "sproc.source".
function M.check(what, opts, allowed, level)
  if type(opts) ~= "table" then return end
  local ok = {}
  for _, k in ipairs(allowed) do ok[k] = true end
  for k in pairs(opts) do
    if not ok[k] then
      local shown = type(k) == "string" and k or ("[" .. tostring(k) .. "]")
      local names = {}
      for _, a in ipairs(allowed) do if type(a) == "string" then names[#names + 1] = a end end
      table.sort(names)
      error(what .. ": unknown option " .. shown .. M.hint(k, names) ..
            " (it takes " .. table.concat(names, ", ") .. ")", level + 1)
    end
  end
end

return M
