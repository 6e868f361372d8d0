-- Tables and joins on the test driver, against Kafka Streams' rules
-- (KStreamKTableJoin, KTableKTable*Join, KStreamKStreamJoin with its fix
-- of spurious left/outer results, KTableFilter, KTableSource).
local testing = require "sproc.testing"

local function driver(text, opts)
  local script = os.tmpname() .. ".lua"
  local f = assert(io.open(script, "w"))
  f:write('local sproc = require "sproc"\n' .. text)
  f:close()
  opts = opts or {}
  opts.script = script
  return testing.driver(opts)
end

-- key|value|ts lines of a topic's outputs (nil for a tombstone)
local function lines(d, topic)
  local out = {}
  for _, o in ipairs(d:output(topic)) do
    out[#out + 1] = string.format("%s|%s|%d", tostring(o.key), tostring(o.value), o.ts)
  end
  return out
end

describe("a stream joined with a table", function()
  local d
  before_each(function()
    d = driver([[
local vendors = sproc.table{ topic = "vendors", value = "json" }
local trips = sproc.source{ topic = "trips", value = "json" }
trips:join(vendors, function(t, v) return t.id .. "@" .. v.name end):to{ topic = "inner" }
trips:left_join(vendors, function(t, v) return t.id .. "@" .. (v and v.name or "-") end):to{ topic = "left" }
]])
  end)

  it("looks up the table's latest value by key; table updates emit nothing", function()
    d:pipe("trips", { key = "v1", value = { id = 1 }, ts = 10 })
    d:pipe("vendors", { key = "v1", value = { name = "A" }, ts = 20 })
    d:pipe("trips", { key = "v1", value = { id = 2 }, ts = 30 })
    d:pipe("vendors", { key = "v1", value = { name = "B" }, ts = 40 })
    d:pipe("trips", { key = "v1", value = { id = 3 }, ts = 50 })
    d:pipe("vendors", { key = "v1", value = nil, ts = 60 })   -- deleted
    d:pipe("trips", { key = "v1", value = { id = 4 }, ts = 70 })
    assert.are.same({ "v1|2@A|30", "v1|3@B|50" }, lines(d, "inner"))
    assert.are.same({ "v1|1@-|10", "v1|2@A|30", "v1|3@B|50", "v1|4@-|70" }, lines(d, "left"))
    assert.is_nil(d:store("vendors"):get("v1"))
  end)

  it("drops a record without a value, and one without a key but in a left join", function()
    d:pipe("vendors", { key = "v1", value = { name = "A" } })
    d:pipe("trips", { key = "v1", value = nil })
    d:pipe("trips", { key = nil, value = { id = 5 } })
    assert.are.same({}, lines(d, "inner"))
    assert.are.same({ "nil|5@-|0" }, lines(d, "left"))
  end)
end)

describe("a table's operators", function()
  it("send a deleted row for a row that does not pass a filter", function()
    local d = driver([[
local t = sproc.table{ topic = "t", value = "json" }
t:filter(function(r) return r.value.n > 1 end)
 :map_values(function(r) return r.value.n * 10 end)
 :to_stream():to{ topic = "out" }
]])
    d:pipe("t", { key = "a", value = { n = 1 }, ts = 1 })
    d:pipe("t", { key = "a", value = { n = 2 }, ts = 2 })
    d:pipe("t", { key = "a", value = nil, ts = 3 })
    assert.are.same({ "a|nil|1", "a|20|2", "a|nil|3" }, lines(d, "out"))
  end)

  it("to_table keeps a stream's latest value per key, readable in its store", function()
    local d = driver([[
sproc.source{ topic = "in", value = "json" }:to_table{ name = "latest" }:to_stream():to{ topic = "out" }
]])
    d:pipe("in", { key = "k", value = { v = 1 } })
    d:pipe("in", { key = "k", value = { v = 2 } })
    assert.are.same({ v = 2 }, d:store("latest"):get("k"))
    d:pipe("in", { key = "k", value = nil })
    assert.is_nil(d:store("latest"):get("k"))
    assert.are.equal(3, #d:output("out"))
  end)
end)

describe("two tables joined", function()
  local function run(how)
    local d = driver(string.format([[
local a = sproc.table{ topic = "A", value = "json" }
local b = sproc.table{ topic = "B", value = "json" }
a:%s(b, function(x, y) return (x and x.v or "-") .. "+" .. (y and y.v or "-") end)
 :to_stream():to{ topic = "out" }
]], how))
    d:pipe("A", { key = "k", value = { v = "a1" }, ts = 1 })
    d:pipe("B", { key = "k", value = { v = "b1" }, ts = 5 })
    d:pipe("A", { key = "k", value = { v = "a2" }, ts = 3 })
    d:pipe("B", { key = "k", value = nil, ts = 7 })
    d:pipe("A", { key = "k", value = nil, ts = 8 })
    d:pipe("B", { key = "z", value = { v = "bz" }, ts = 9 })
    return lines(d, "out")
  end

  it("inner: a result when both sides have the key, a tombstone when one goes", function()
    -- the result's time is the later of the two rows'
    assert.are.same({ "k|a1+b1|5", "k|a2+b1|5", "k|nil|7" }, run("join"))
  end)

  it("left: the left side's rows, with the right side's or nil", function()
    assert.are.same({ "k|a1+-|1", "k|a1+b1|5", "k|a2+b1|5", "k|a2+-|7", "k|nil|8" },
                    run("left_join"))
  end)

  it("outer: either side's rows; a row deleted on both sides goes", function()
    assert.are.same({ "k|a1+-|1", "k|a1+b1|5", "k|a2+b1|5", "k|a2+-|7", "k|nil|8", "z|-+bz|9" },
                    run("outer_join"))
  end)
end)

describe("joined values", function()
  it("are read-only views that keep their own fields while several are alive", function()
    -- a table-table join reads both rows from stores; the stream's first
    -- join keeps its row in the result, which a second join reads after
    -- reading its own row
    local d = driver([[
local a = sproc.table{ topic = "A", value = "json" }
local b = sproc.table{ topic = "B", value = "json" }
local ab = a:join(b, function(x, y) return { x = x, y = y } end)
sproc.source{ topic = "s", value = "json" }
  :join(a, function(s, row) return { n = s.n, row = row } end)
  :join(b, function(j, row)
    return j.n .. ":" .. j.row.v .. "/" .. row.v .. "/" .. j.row.w .. "/" .. row.w
  end)
  :to{ topic = "chained" }
ab:to_stream():map(function(r)
  return r.value.x.v .. r.value.y.v .. r.value.x.w .. r.value.y.w ..
         (sproc.json.encode(r.value.y):find('"w":"B"', 1, true) and " encoded" or " lost")
end):to{ topic = "both" }
sproc.source{ topic = "t", value = "json" }
  :join(a, function(t, row)
    local ok, err = pcall(function() row.v = 1 end)
    return tostring(ok) .. " " .. tostring(err):match("read%-only") .. " " .. sproc.json.totable(row).w
  end)
  :to{ topic = "readonly" }
]])
    d:pipe("A", { key = "k", value = { v = "a", w = "A" }, ts = 1 })
    d:pipe("B", { key = "k", value = { v = "b", w = "B" }, ts = 2 })
    d:pipe("s", { key = "k", value = { n = 7 }, ts = 3 })
    d:pipe("t", { key = "k", value = { n = 8 }, ts = 4 })
    assert.are.same({ "k|abAB encoded|2" }, lines(d, "both"))
    assert.are.same({ "k|7:a/b/A/B|3" }, lines(d, "chained"))
    assert.are.same({ "k|false read-only A|4" }, lines(d, "readonly"))
  end)
end)

describe("two streams joined within a window", function()
  local function run(how, steps, w)
    local d = driver(string.format([[
local l = sproc.source{ topic = "L", value = "json" }
local r = sproc.source{ topic = "R", value = "json" }
l:%s(r, function(a, b) return (a and a.v or "-") .. "+" .. (b and b.v or "-") end, %s)
 :to{ topic = "out" }
]], how, w or "{ within = 10, grace = 5 }"))
    for _, s in ipairs(steps) do d:pipe(s[1], { key = s[2], value = s[3] and { v = s[3] }, ts = s[4] }) end
    return lines(d, "out")
  end

  it("inner: a record joins the other side's records of its key within the window", function()
    -- the result's time is the later record's
    assert.are.same({ "a|l1+r1|105", "a|l1+r3|100", "a|l2+r2|120" }, run("join", {
      { "L", "a", "l1", 100 },
      { "R", "a", "r1", 105 },
      { "R", "a", "r2", 112 },   -- 12 after l1: not within 10
      { "R", "a", "r3", 90 },    -- 10 before l1, and still in the right side's store
      { "L", "a", "l2", 120 },   -- r1 is 15 before: no; r2 8 before: yes
    }))
  end)

  it("left: a record without a partner goes out with nil once its window closed", function()
    assert.are.same({ "a|l2+r1|113", "b|l1+-|100", "c|x+-|116", "a|l3+-|200" }, run("left_join", {
      { "L", "b", "l1", 100 },
      { "L", "a", "l2", 110 },   -- b's window (100 + 10 + grace 5) is open at 110
      { "R", "a", "r1", 113 },   -- stream time 113: b still waits; l2 finds r1
      { "L", "c", "x", 116 },    -- 116 > 115: b goes out, before c's own join
      { "L", "a", "l3", 200 },   -- c's window closed too, l3 waits ...
      { "R", "z", "fl", 300 },   -- ... and goes out when stream time passes 215
    }))
  end)

  it("outer: either side's records without a partner, in time order", function()
    assert.are.same({ "a|l1+r1|105", "b|-+r2|106", "c|l2+-|107" }, run("outer_join", {
      { "L", "a", "l1", 100 },
      { "R", "a", "r1", 105 },
      { "R", "b", "r2", 106 },
      { "L", "c", "l2", 107 },
      { "L", "x", "l3", 200 },
    }, "{ within = 10, grace = 0 }"))
  end)

  it("takes before and after apart: the right side may be later only", function()
    assert.are.same({ "a|l1+r2|103" }, run("join", {
      { "L", "a", "l1", 100 },
      { "R", "a", "r1", 97 },    -- before the left record: not within before = 0
      { "R", "a", "r2", 103 },
    }, "{ before = 0, after = 5, grace = 100 }"))
  end)

  -- the side stores on disk: lookups and expiry through LMDB, the tree
  -- holding a batch's changes only
  it("gives the same results with its stores in LMDB", function()
    local steps = {
      { "L", "a", "l1", 100 }, { "R", "a", "r1", 105 }, { "R", "a", "r2", 112 },
      { "R", "a", "r3", 90 }, { "L", "b", "l2", 120 }, { "R", "c", "r4", 121 },
      { "L", "a", "l3", 130 }, { "R", "a", "r5", 131 }, { "L", "x", "l4", 300 },
    }
    for _, how in ipairs({ "join", "left_join", "outer_join" }) do
      local mem = run(how, steps, "{ within = 10, grace = 5 }")
      local disk = run(how, steps, '{ within = 10, grace = 5, backend = "lmdb" }')
      assert.is_true(#mem >= 3, how)
      assert.are.same(mem, disk, how)
    end
  end)

  it("keeps in a side's store only what the other side can still join", function()
    -- retention: before + after + grace = 25; a side's records older than
    -- its latest record time - 25 leave its store (as a Kafka Streams
    -- window store drops its segments), not an hour later
    local d = driver([[
local l = sproc.source{ topic = "L", value = "json" }
local r = sproc.source{ topic = "R", value = "json" }
l:join(r, function(a, b) return a.v .. "+" .. b.v end, { within = 10, grace = 5, name = "j" })
 :to{ topic = "out" }
]])
    for t = 100, 400, 10 do d:pipe("L", { key = "k" .. t, value = { v = "l" .. t }, ts = t }) end
    local function records(store)
      local n = 0
      for k in pairs(d:store(store):all()) do if k:byte(1) ~= 255 then n = n + 1 end end
      return n
    end
    -- 380, 390 and 400 can still be joined; the store sweeps each 12 of
    -- its time, so one or two older ones may wait for the next sweep
    local kept = records("j.left")
    assert.is_true(kept >= 3 and kept <= 5, "kept " .. kept)
    d:pipe("R", { { key = "k380", value = { v = "r" }, ts = 385 }, { key = "k300", value = { v = "r" }, ts = 400 } })
    assert.are.same({ "k380|l380+r|385" }, lines(d, "out"))
  end)

  it("matches raw keys by all their bytes", function()
    -- an inner join whose function takes no key reads raw keys as bytes,
    -- without a Lua string: a zero byte inside is part of the key
    local d = driver([[
local x = sproc.source{ topic = "X", value = "json" }
local y = sproc.source{ topic = "Y", value = "json" }
x:join(y, function(a, b) return a.v .. "+" .. b.v end, { within = 10, grace = 5 })
 :to{ topic = "raw" }
]])
    d:pipe("X", { key = "k\0b", value = { v = "x" }, ts = 10 })
    d:pipe("Y", { { key = "k\0a", value = { v = "no" }, ts = 11 }, { key = "k", value = { v = "no" }, ts = 11 },
                  { key = "k\0b", value = { v = "y" }, ts = 12 } })
    assert.are.same({ "k\0b|x+y|12" }, lines(d, "raw"))
  end)

  it("a left join's record without a key goes out at once; others without a key are dropped", function()
    assert.are.same({ "nil|l1+-|5" }, run("left_join", {
      { "L", nil, "l1", 5 },
      { "R", nil, "r1", 6 },
    }))
  end)
end)

describe("a global table", function()
  it("is joined by a key function, from any partition", function()
    local d = driver([[
local zones = sproc.global_table{ topic = "zones", value = "json" }
sproc.source{ topic = "trips", value = "json" }
  :join(zones, function(t, z) return t.id .. "@" .. z.name end, { key = function(r) return r.value.zone end })
  :to{ topic = "out" }
]], { partitions = 4 })
    d:pipe("zones", { key = "z1", value = { name = "north" }, partition = 2 })
    d:pipe("trips", { key = "t1", value = { id = 1, zone = "z1" }, partition = 0 })
    d:pipe("trips", { key = "t2", value = { id = 2, zone = "z1" }, partition = 3 })
    d:pipe("trips", { key = "t3", value = { id = 3, zone = "z9" }, partition = 1 })
    assert.are.same({ "t1|1@north|0", "t2|2@north|0" }, lines(d, "out"))
  end)
end)

describe("a join by another key than the record's", function()
  it("re-keys the stream to the table's partition of that key", function()
    local d = driver([[
local vendors = sproc.table{ topic = "vendors", value = "json" }
sproc.source{ topic = "trips", value = "json" }
  :join(vendors, function(t, v) return t.id .. "@" .. v.name end, { key = function(r) return r.value.vendor end })
  :to{ topic = "out" }
]], { partitions = 4 })
    for i = 1, 8 do d:pipe("vendors", { key = "v" .. i, value = { name = "V" .. i }, partition = i % 4 }) end
    -- the vendors' partitions above are not their keys': only those whose
    -- key falls in the partition they were written to are found
    local found = {}
    for i = 1, 8 do
      d:pipe("trips", { key = "t" .. i, value = { id = i, vendor = "v" .. i } })
    end
    for _, l in ipairs(lines(d, "out")) do found[#found + 1] = l end
    assert.is_true(#found >= 1)
    for _, l in ipairs(found) do assert.matches("^v%d|%d@V%d|0$", l) end
  end)
end)

describe("join declarations", function()
  local function fails(text)
    local ok, err = pcall(driver, text)
    assert.is_false(ok)
    return tostring(err)
  end

  it("say what is missing, at the script's line", function()
    local err = fails([[
local l = sproc.source{ topic = "L" }
l:join(sproc.source{ topic = "R" }, function() end, { grace = 0 })
]])
    assert.matches("join(): a stream-stream join needs within (or before and after)", err, 1, true)
    assert.matches("%.lua:3: in main chunk", err)
    err = fails([[
local t = sproc.table{ topic = "T" }
sproc.source{ topic = "L" }:outer_join(t, function() end)
]])
    assert.matches("outer_join(): a stream joins a table inner or left", err, 1, true)
  end)
end)

describe("a stream joined with a versioned table (history)", function()
  local d
  before_each(function()
    d = driver([[
local rates = sproc.table{ topic = "rates", value = "json", history = "1h" }
sproc.source{ topic = "orders", value = "json" }
  :left_join(rates, function(o, rate) return o.id .. "@" .. (rate and rate.r or "-") end)
  :to{ topic = "out" }
]])
  end)
  local H = 3600000

  it("joins each record with the row valid at the record's time, late or not", function()
    d:pipe("rates", { key = "eur", value = { r = 1 }, ts = 1000 })
    d:pipe("rates", { key = "eur", value = { r = 2 }, ts = 5000 })
    d:pipe("rates", { key = "eur", value = { r = 3 }, ts = 9000 })
    d:pipe("orders", {
      { key = "eur", value = { id = 1 }, ts = 500 },    -- before any row
      { key = "eur", value = { id = 2 }, ts = 1000 },
      { key = "eur", value = { id = 3 }, ts = 4999 },
      { key = "eur", value = { id = 4 }, ts = 7000 },
      { key = "eur", value = { id = 5 }, ts = 20000 },
    })
    assert.are.same({ "eur|1@-|500", "eur|2@1|1000", "eur|3@1|4999", "eur|4@2|7000", "eur|5@3|20000" },
                    lines(d, "out"))
    -- the latest row is what the store holds
    assert.are.equal(3, d:store("rates"):get("eur").r)
  end)

  it("puts an out-of-order row in the history without making it the latest", function()
    d:pipe("rates", { key = "eur", value = { r = 1 }, ts = 1000 })
    d:pipe("rates", { key = "eur", value = { r = 3 }, ts = 9000 })
    d:pipe("rates", { key = "eur", value = { r = 2 }, ts = 5000 })   -- out of order
    d:pipe("rates", { key = "eur", value = nil, ts = 12000 })        -- deleted
    d:pipe("orders", {
      { key = "eur", value = { id = 1 }, ts = 6000 },
      { key = "eur", value = { id = 2 }, ts = 9500 },
      { key = "eur", value = { id = 3 }, ts = 13000 },
    })
    assert.are.same({ "eur|1@2|6000", "eur|2@3|9500", "eur|3@-|13000" }, lines(d, "out"))
  end)

  it("forgets rows older than the history, and answers nothing that far back", function()
    d:pipe("rates", { key = "eur", value = { r = 1 }, ts = 1000 })
    d:pipe("rates", { key = "eur", value = { r = 2 }, ts = 2000 })
    d:pipe("rates", { key = "usd", value = { r = 7 }, ts = 3 * H })
    d:pipe("rates", { key = "eur", value = { r = 0 }, ts = 1500 })   -- older than the history: dropped
    d:pipe("orders", {
      { key = "eur", value = { id = 1 }, ts = 3 * H },       -- the latest row, however old
      { key = "eur", value = { id = 2 }, ts = 1500 },        -- older than the history
      { key = "eur", value = { id = 3 }, ts = 2 * H + 1 },   -- within it
    })
    assert.are.same({ "eur|1@2|" .. 3 * H, "eur|2@-|1500", "eur|3@2|" .. (2 * H + 1) }, lines(d, "out"))
    local function rows()
      local n = 0
      for k in pairs(d:store("rates.history"):all()) do if k:sub(1, 1) ~= "\255" then n = n + 1 end end
      return n
    end
    -- a key's rows are looked at when it changes: eur's row of 1000 goes
    -- then (the row after it began before the history), the one of 2000 stays
    assert.are.equal(3, rows())
    d:pipe("rates", { key = "eur", value = { r = 4 }, ts = 3 * H + 1 })
    assert.are.equal(3, rows())
    d:pipe("orders", { key = "eur", value = { id = 4 }, ts = 2 * H + 2 })
    assert.are.equal("eur|4@2|" .. (2 * H + 2), lines(d, "out")[4])
  end)

  it("is refused on global tables and before operators", function()
    assert.has_error(function() driver('sproc.global_table{ topic = "t", history = "1h" }') end,
                     nil)
    local ok, err = pcall(driver, 'sproc.table{ topic = "t", history = "1h" }:filter(function() return true end)')
    assert.is_false(ok)
    assert.matches("versioned table", tostring(err))
  end)
end)
