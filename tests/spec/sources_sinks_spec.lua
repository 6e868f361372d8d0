-- Sources by pattern, output headers and rolling files.
local testing = require "sproc.testing"

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = spec_dir .. "/?.lua;" .. package.path
local files = require "spec_files"
local tmpdir, ls, read = files.tmpdir, files.ls, files.read

describe("sources", function()
  it("a pattern source reads every topic whose whole name matches", function()
    local d = testing.driver(function(sproc)
      sproc.source{ pattern = "trips-[0-9]+" }:map(function(r) return r.topic .. ":" .. r.value end)
        :to{ topic = "out" }
    end)
    d:pipe("trips-1", { value = "a" })
    d:pipe("trips-22", { value = "b" })
    assert.are.same({ "trips-1:a", "trips-22:b" }, d:values("out"))
    -- Kafka matches the whole name: a prefix is not enough
    assert.has_error(function() d:pipe("trips-1x", { value = "c" }) end)
  end)

  it("a list of topics feeds one pipeline", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topics = { "a", "b" } }:to{ topic = "out" }
    end)
    d:pipe("a", { value = "1" })
    d:pipe("b", { value = "2" })
    assert.are.same({ "1", "2" }, d:values("out"))
  end)

  -- issue 14 #2: the second pipeline ran the first one's operators
  it("two sources of one topic each run their own pipeline on every record", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "t" }:map(function(r) return "first:" .. r.value end):to{ topic = "a" }
      sproc.source{ topic = "t", value = "json" }:map(function(r) return r.value.n * 10 end)
        :to{ topic = "b" }
      sproc.source{ pattern = "t|u" }:map(function(r) return "third:" .. r.value end):to{ topic = "c" }
    end)
    d:pipe("t", { { value = '{"n":1}' }, { value = '{"n":2}' } })
    assert.are.same({ 'first:{"n":1}', 'first:{"n":2}' }, d:values("a"))
    assert.are.same({ "10", "20" }, d:values("b"))
    assert.are.same({ 'third:{"n":1}', 'third:{"n":2}' }, d:values("c"))
    assert.are.equal(2, d:stats().records_in)
  end)

  it("a record that fails in one pipeline still goes through the others", function()
    local d = testing.driver(function(sproc)
      sproc.app{ errors = "skip" }
      sproc.source{ topic = "t", value = "json" }:to{ topic = "json" }
      sproc.source{ topic = "t" }:to{ topic = "text" }
    end)
    d:pipe("t", { { value = "not json" }, { value = "{}" } })
    assert.are.same({ "{}" }, d:values("json"))
    assert.are.same({ "not json", "{}" }, d:values("text"))
    assert.are.equal(1, d:stats().skipped)
  end)

  it("two file sources of one file read it once, each into its own pipeline", function()
    local dir = tmpdir()
    local f = assert(io.open(dir .. "/same.jsonl", "w"))
    f:write('{"n":1}\n{"n":2}\n')
    f:close()
    f = assert(io.open(dir .. "/two.lua", "w"))
    f:write([[
local sproc = require "sproc"
sproc.source{ file = "same.jsonl", format = "json" }:map(function(r) return { a = r.value.n } end):print()
sproc.source{ file = "same.jsonl", format = "json" }:map(function(r) return { b = r.value.n } end):print()
]])
    f:close()
    local bin = os.getenv("SPROC_BIN") or "build/sproc"
    local p = io.popen(bin .. " " .. dir .. "/two.lua --until-end --quiet 2>/dev/null")
    local lines = {}
    for l in p:lines() do lines[#lines + 1] = l end
    p:close()
    table.sort(lines)
    assert.are.same({ '{"a":1}', '{"a":2}', '{"b":1}', '{"b":2}' }, lines)
  end)
end)

describe("sinks", function()
  it("to{} adds headers from a function and forwards input headers", function()
    local d = testing.driver(function(sproc)
      local s = sproc.source{ topic = "in" }
      s:to{ topic = "with", headers = function(r) return { len = #r.value } end }
      s:to{ topic = "without", forward_headers = false }
    end)
    d:pipe("in", { value = "abc", headers = { trace = "t9" } })
    assert.are.same({ trace = "t9", len = "3" }, d:output("with")[1].headers)
    assert.is_nil(d:output("without")[1].headers)
  end)

  it("key and value serdes: json encodes strings, bytes refuses tables", function()
    local d = testing.driver(function(sproc)
      sproc.app{ errors = "dlq", dlq = "dead" }
      local s = sproc.source{ topic = "in" }
      s:to{ topic = "json", key = "json", value = "json" }
      s:map(function(r) return { r.value } end):to{ topic = "bytes", value = "bytes" }
    end)
    d:pipe("in", { key = "k", value = "v" })
    local out = d:output("json")[1]
    assert.are.equal('"k"', out.key)
    assert.are.equal('"v"', out.value)
    assert.are.equal(0, #d:output("bytes"))
    assert.matches("cannot write a table as bytes value", d:output("dead")[1].headers["sproc.error"])
  end)

  -- a flat table is written field by field (lua/sproc/encode.lua), any
  -- other through the C encoder: the text is json.encode's either way, and
  -- so is the error for what JSON cannot hold
  it("a table goes out as json.encode's text, and what JSON cannot hold fails alike", function()
    local json = require "sproc.json"
    local cases = {
      { a = "x", b = 1, c = 1.5, d = true, e = false },
      { s = 'quote " backslash \\ newline \n tab \t ctrl \1 é 日本', [""] = "empty name" },
      { z = -0.0, big = 2 ^ 53, huge = 1e300, small = 1e-7, neg = -12.25, nan = 0 / 0,
        inf = math.huge, third = 1 / 3 },
      {},
      { nested = { b = 1, list = { 1, 2 } }, x = "y" },
      { 1, 2, "three" },
      { 1, a = 2 },
      { n = json.null, m = 1 },
      { ["bad\255name"] = 1 },
      { bad = "value \255" },
    }
    local want = {}
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }:map(function(r)
        local t = cases[r.value.i]
        want[#want + 1] = select(2, pcall(json.encode, t))
        return t
      end):to{ topic = "out" }
    end)
    local n = 0
    for i = 1, #cases do
      local ok, err = pcall(d.pipe, d, "in", { value = '{"i":' .. i .. '}' })
      if ok then
        n = n + 1
        assert.are.equal(want[i], d:values("out")[n])
      else
        assert.matches(want[i]:gsub("%p", "%%%0"), tostring(err))
      end
    end
    assert.are.equal(8, n)
    assert.matches("not valid UTF%-8", want[9])
    assert.matches("not valid UTF%-8", want[10])
    assert.are.equal("{}", want[4])
  end)

  it("to_files publishes whole files only, rolled by size", function()
    local dir = tmpdir()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in" }:to_files{ dir = dir, prefix = "p", roll_bytes = 100 }
    end)
    local input = {}
    for i = 1, 30 do input[i] = { value = string.format("line-%02d", i) } end
    d:pipe("in", input)
    -- a file rolls once it holds 100 bytes or more: 13 lines of 8 bytes
    local names = ls(dir)
    local published, hidden = {}, {}
    for _, n in ipairs(names) do
      if n:sub(1, 1) == "." then hidden[#hidden + 1] = n else published[#published + 1] = n end
    end
    assert.are.equal(2, #published)
    assert.are.equal(1, #hidden)
    assert.matches("^%.p%-.*%.jsonl%.inprogress$", hidden[1])
    local first = read(dir .. "/" .. published[1])
    assert.are.equal(13, select(2, first:gsub("\n", "")))
    -- flushing publishes the open file; nothing is lost or repeated
    d:flush()
    local all = {}
    for _, n in ipairs(ls(dir)) do
      assert.is_nil(n:match("^%."))
      for line in io.lines(dir .. "/" .. n) do all[#all + 1] = line end
    end
    table.sort(all)
    assert.are.equal(30, #all)
    assert.are.equal("line-01", all[1])
    assert.are.equal("line-30", all[30])
    os.execute("rm -rf " .. dir)
  end)
end)
