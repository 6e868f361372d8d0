-- Schemas at sources, and exactly-once files through a checkpoint: what a
-- Spark user moving over relies on.
local testing = require "sproc.testing"

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = spec_dir .. "/?.lua;" .. package.path
local files = require "spec_files"
local tmpdir = files.tmpdir

local function lines_in(dir)
  local all = {}
  local p = io.popen("ls " .. dir)
  for n in p:lines() do
    for line in io.lines(dir .. "/" .. n) do all[#all + 1] = line end
  end
  p:close()
  table.sort(all)
  return all
end

local function trips(sproc)
  return sproc.schema{
    { "id", "int64", nullable = false },
    { "pickup", "timestamp" },
    { "fare", "double" },
    { "cash", "boolean" },
    { "flag", "string" },
    { "where", { { "lat", "double" }, { "lon", "double" } } },
  }
end

describe("sproc.schema at a source", function()
  it("converts values in C: typed fields, nulls for missing ones, extra fields dropped", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", schema = trips(sproc) }
        :map(function(r)
          local v = r.value
          return string.format("%d %d %s %s %s", v.id, v.pickup, tostring(v.fare),
                               tostring(v.cash), tostring(v.where and v.where.lon))
        end)
        :to{ topic = "typed" }
      sproc.source{ topic = "raw", schema = trips(sproc) }:to{ topic = "canonical" }
    end)
    d:pipe("in", { value = '{"id":"7","pickup":"2016-01-01 00:00:01","fare":"9.5","cash":true,' ..
                           '"where":{"lon":-73.5},"tip":"1.00"}' })
    assert.are.same({ "7 1451606401000 9.5 true -73.5" }, d:values("typed"))
    d:pipe("raw", { value = '{"flag":"N","id":1,"extra":{"a":1}}' })
    assert.are.same({ '{"id":1,"pickup":null,"fare":null,"cash":null,"flag":"N","where":null}' },
                    d:values("canonical"))
  end)

  it("sends a value that does not convert to the error policy, naming the field", function()
    local d = testing.driver(function(sproc)
      sproc.app{ errors = "dlq", dlq = "bad" }
      sproc.source{ topic = "in", schema = trips(sproc) }:to{ topic = "out" }
    end)
    d:pipe("in", { { value = '{"id":1,"fare":"nine"}' }, { value = '{"fare":1}' },
                   { value = '{"id":2,"where":[1,2]}' }, { value = '{"id":3}' } })
    assert.are.equal(1, #d:values("out"))
    local bad = d:output("bad")
    assert.are.equal(3, #bad)
    assert.matches('field "fare": "nine" is not a double', bad[1].headers["sproc.error"], 1, true)
    assert.matches('field "id" is missing and not nullable', bad[2].headers["sproc.error"], 1, true)
    assert.matches('field "where": "[1,2]" is not an object', bad[3].headers["sproc.error"], 1, true)
    assert.are.equal(3, d:stats().dead_lettered)
  end)

  it("raises on misuse while the pipeline is built", function()
    local sproc = require "sproc"
    assert.has_error(function() sproc.schema{ id = "int64" } end,
      'sproc.schema: "id" is not a field: give fields as { "id", "type" } in a list (a list keeps the column order)')
    assert.has_error(function() sproc.schema{ { "id", "int32" } } end,
      'sproc.schema: field id: unknown type "int32" (string, int64, double, boolean, timestamp, ' ..
      'date, decimal(p,s), list<type> or a struct)')
    assert.has_error(function() sproc.schema{ { "amt", "decimal(20,2)" } } end,
      "sproc.schema: field amt: decimal(p,s) needs a precision p from 1 to 18 and a scale s from 0 to p")
    assert.has_error(function() sproc.schema{ { "xs", "list<list<int64>>" } } end,
      "sproc.schema: field xs: a list's elements are of a plain type (string, int64, double, " ..
      "boolean, timestamp, date or decimal(p,s))")
    assert.has_error(function()
      testing.driver(function(s)
        s.source{ topic = "in", schema = trips(s) }:to_parquet{ dir = "/tmp/x", partition_by = { "day" } }
      end)
    end, "to_parquet(): partition_by: day is not a top-level field of the schema " ..
         "(id, pickup, fare, cash, flag, where)")
    assert.has_error(function()
      testing.driver(function(s)
        s.source{ topic = "in", schema = trips(s) }:to_parquet{ dir = "/tmp/x", partition_by = { "where" } }
      end)
    end)
    assert.has_error(function() sproc.schema{ { "a", "string" }, { "a", "double" } } end,
      "sproc.schema: field a is declared twice")
    assert.has_error(function()
      testing.driver(function(s) s.source{ topic = "in" }:to_parquet{ dir = "/tmp/x" } end)
    end, "to_parquet() needs schema = sproc.schema{...} (or a source with a schema)")
    assert.has_error(function()
      testing.driver(function(s)
        s.source{ topic = "in", schema = trips(s) }:to_parquet{ dir = "/tmp/x", compression = "lz4" }
      end)
    end, 'to_parquet(): compression must be "snappy", "zstd" or "none", got lz4')
  end)
end)

describe("dates, decimals and lists", function()
  it("convert in C and come out canonical: dates as text, decimals at their scale, lists as arrays", function()
    local d = testing.driver(function(sproc)
      local s = sproc.schema{ { "day", "date" }, { "amt", "decimal(9,2)" }, { "tags", "list<string>" },
                              { "xs", "list<decimal(4,1)>", nullable = false } }
      sproc.source{ topic = "in", schema = s }:to{ topic = "out" }
      sproc.source{ topic = "in2", schema = s }
        :map(function(r) return r.value.day .. " " .. r.value.amt .. " " .. #r.value.tags end)
        :to{ topic = "read" }
    end)
    d:pipe("in", { value = '{"day":"2024-01-02T23:30:00-02:00","amt":"12.345","tags":["a",null],"xs":[1]}' })
    assert.are.same({ '{"day":"2024-01-03","amt":12.35,"tags":["a",null],"xs":[1.0]}' }, d:values("out"))
    d:pipe("in2", { value = '{"day":"2024-01-02","amt":1,"tags":["a","b","c"],"xs":[]}' })
    assert.are.same({ "2024-01-02 1 3" }, d:values("read"))
  end)
end)

describe("Parquet partitioned by columns", function()
  it("writes Hive-style directories, one file each per publication, under one checkpoint entry", function()
    local out = tmpdir()
    local d = testing.driver(function(sproc)
      local s = sproc.schema{ { "day", "date" }, { "who", "string" }, { "n", "int64" } }
      sproc.source{ topic = "in", schema = s }
        :to_parquet{ dir = out, partition_by = { "day", "who" }, checkpoint = out .. "/_chk" }
    end)
    d:pipe("in", { { value = '{"day":"2024-01-01","who":"a/b","n":1}' },
                   { value = '{"day":"2024-01-02","who":"c","n":2}' },
                   { value = '{"day":"2024-01-01","who":"a/b","n":3}' },
                   { value = '{"day":null,"who":"c","n":4}' } })
    d:flush()
    local p = io.popen("cd " .. out .. " && find . -name '*.parquet' | sort")
    local names = {}
    for n in p:lines() do names[#names + 1] = n:gsub("/part%-.*", "") end
    p:close()
    assert.are.same({ "./day=2024-01-01/who=a%2Fb", "./day=2024-01-02/who=c",
                      "./day=__HIVE_DEFAULT_PARTITION__/who=c" }, names)
    local entries = files.ls(out .. "/_chk")
    assert.are.equal(1, #entries)
    local entry = files.read(out .. "/_chk/" .. entries[1])
    assert.matches("file day=2024-01-01/who=a%2Fb/part-", entry, 1, true)
    assert.matches("rows 4\noffsets in 0 0 3\n", entry, 1, true)
  end)
end)

describe("files with a checkpoint", function()
  it("drop the outputs of records a published file holds when they are read again", function()
    local out, chk = tmpdir(), tmpdir()
    local function run(from, to)
      local d = testing.driver(function(sproc)
        sproc.source{ topic = "in" }:to_files{ dir = out, checkpoint = chk, roll_bytes = 40 }
      end)
      local recs = {}
      for i = from, to do recs[#recs + 1] = { value = "r" .. i, offset = i } end
      d:pipe("in", recs)
      return d
    end
    -- the first run publishes files as they roll and leaves the last open
    -- (unpublished) as a crash would
    run(0, 19)
    local published = lines_in(out)
    assert.is_true(#published > 0 and #published < 20)
    -- the restart reads from an older committed offset: only what no
    -- published file holds is written again
    local d = run(0, 29)
    d:flush()
    local all = lines_in(out)
    assert.are.equal(30, #all)
    local seen = {}
    for _, l in ipairs(all) do
      assert.is_nil(seen[l])
      seen[l] = true
    end
  end)

  it("a Parquet sink takes the source's schema and publishes on flush", function()
    local out = tmpdir()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", schema = trips(sproc) }
        :to_parquet{ dir = out, compression = "zstd", checkpoint = out .. "/_chk" }
    end)
    d:pipe("in", { { value = '{"id":1}' }, { value = '{"id":2}' } })
    d:flush()
    local p = io.popen("ls " .. out .. "/*.parquet " .. out .. "/_chk/*.commit")
    local names = {}
    for n in p:lines() do names[#names + 1] = n end
    p:close()
    assert.are.equal(2, #names)
    local entry = io.open(names[1]):read("*a")
    assert.matches("rows 2\noffsets in 0 0 1\n", entry, 1, true)
  end)
end)

describe("file sinks across a reload", function()
  it("publish the open file when the schema changes, and the next file has the new one", function()
    local out = tmpdir()
    local function build(fields)
      return function(sproc)
        sproc.source{ topic = "in", schema = sproc.schema(fields) }:to_parquet{ dir = out }
      end
    end
    local d = testing.driver(build{ { "id", "int64" } })
    d:pipe("in", { value = '{"id":1,"x":"a"}' })
    d:reload(build{ { "id", "int64" }, { "x", "string" } })
    local p = io.popen("ls " .. out)
    local names = {}
    for n in p:lines() do names[#names + 1] = n end
    p:close()
    assert.are.equal(1, #names)   -- the first version's file, published whole
    d:pipe("in", { value = '{"id":2,"x":"b"}' })
    d:flush()
    p = io.popen("ls " .. out .. " | wc -l")
    assert.are.equal("2", p:read("*l"))
    p:close()
  end)

  it("refuse one checkpoint for two sinks", function()
    assert.has_error(function()
      testing.driver(function(sproc)
        local s = sproc.source{ topic = "in" }
        s:to_files{ dir = "/tmp/a", checkpoint = "/tmp/chk" }
        s:to_files{ dir = "/tmp/b", checkpoint = "/tmp/chk" }
      end)
    end, "to_files(/tmp/b): checkpoint /tmp/chk is used by the files in /tmp/a already (give each file sink its own)")
  end)
end)
