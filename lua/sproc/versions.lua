-- Versioned tables (sproc.table{ history = "1h" }), after Kafka Streams'
-- versioned key-value stores (KIP-889) and their stream-table joins
-- (KIP-914): besides its latest row, each key keeps its earlier rows for
-- the history, so that a stream record joins the row that was valid at
-- the stream record's time, even when it comes late or out of order.
--
-- The rows live in a store of their own (<table>.history, changelogged):
-- key = length (4 hex digits) .. key .. time (16 hex digits), so that a
-- key's rows are contiguous and in time order; value = { v = row } or
-- { d = true } for a deletion. A row stays while the row after it (the
-- end of its validity) is within the history of the partition's latest
-- time; a key's last row stays.
local format, tonumber, huge = string.format, tonumber, math.huge

local M = {}

-- The partition's latest table record time (Kafka Streams' observed
-- stream time of the store); above every row's key.
local OBSERVED = "\255observed"
local DELETED = { d = true }

local function prefix(k) return format("%04x", #k) .. k end
local function row_key(p, ts) return p .. format("%016x", ts) end

--- Records the row of key k at time ts (v nil: deleted). Returns false
--- when ts is older than the history (the row is dropped, as Kafka
--- Streams drops it), else true and whether the row is the key's latest.
function M.put(vs, history, k, v, ts)
  local observed = vs:get(OBSERVED) or -huge
  if ts > observed then
    observed = ts
    vs:put(OBSERVED, observed)
  end
  if ts < observed - history then return false end
  local p = prefix(k)
  local rows = {}
  for key in vs:prefix(p) do rows[#rows + 1] = key end
  local latest = #rows == 0 or ts >= tonumber(rows[#rows]:sub(-16), 16)
  local new = row_key(p, ts)
  vs:put(new, v == nil and DELETED or { v = v })
  if latest then rows[#rows + 1] = new end
  -- rows whose validity ended before the history (the next row's time)
  for i = 1, #rows - 1 do
    if tonumber(rows[i + 1]:sub(-16), 16) >= observed - history then break end
    vs:delete(rows[i])
  end
  return true, latest
end

--- The row of key k valid at time ts (nil: none, deleted, or ts older
--- than the history).
function M.get(vs, history, k, ts)
  local observed = vs:get(OBSERVED)
  if observed == nil or ts < observed - history then return nil end
  local p = prefix(k)
  local row
  for _, r in vs:range(row_key(p, 0), row_key(p, ts)) do row = r end
  return row and row.v
end

return M
