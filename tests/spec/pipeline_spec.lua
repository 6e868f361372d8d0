-- The stateless operators, record by record, on the native core.
local testing = require "sproc.testing"
local json = require "sproc.json"

local function rec(key, value, extra)
  local r = { key = key, value = value }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

describe("operators", function()
  it("filter keeps matching records in order and counts the rest", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :filter(function(r) return r.value.n % 2 == 0 end)
        :to{ topic = "out" }
    end)
    local input = {}
    for i = 1, 10 do input[i] = rec("k" .. i, { n = i }) end
    d:pipe("in", input)
    local out = d:output("out")
    assert.are.equal(5, #out)
    for i, r in ipairs(out) do
      assert.are.equal("k" .. (2 * i), r.key)
      assert.are.equal('{"n":' .. (2 * i) .. '}', r.value)
    end
    local s = d:stats()
    assert.are.equal(10, s.records_in)
    assert.are.equal(5, s.filtered)
    assert.are.equal(5, s.records_out)
  end)

  it("map replaces the value and keeps key, timestamp and headers", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :map(function(r) return { id = r.value.id, total = r.value.a + r.value.b } end)
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec("x", { id = "one", a = 1.5, b = 2 }, { ts = 1000, headers = { h = "v" } }),
                   rec("y", { id = "two", a = 0.1, b = 0.2 }, { ts = 2000 }) })
    local out = d:output("out", { json = true })
    assert.are.equal(2, #out)
    assert.are.same({ id = "one", total = 3.5 }, out[1].value)
    assert.are.equal("x", out[1].key)
    assert.are.equal(1000, out[1].ts)
    assert.are.same({ h = "v" }, out[1].headers)
    -- doubles are written as the shortest text that reads back the same
    assert.are.equal(0.1 + 0.2, out[2].value.total)
    assert.are.equal(2000, out[2].ts)
  end)

  it("flat_map emits zero or more records per input", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "lines" }
        :flat_map(function(r, emit)
          for w in r.value:gmatch("%S+") do emit(w) end
        end)
        :to{ topic = "words" }
    end)
    d:pipe("lines", { rec(nil, "a b c"), rec(nil, ""), rec(nil, "d") })
    assert.are.same({ "a", "b", "c", "d" }, d:values("words"))
    assert.are.equal(1, d:stats().filtered) -- the empty line emitted nothing
  end)

  it("key_by re-keys, and outputs land on the Java partitioner's partition", function()
    local d = testing.driver{ partitions = 8, build = function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :key_by(function(r) return r.value.user end)
        :to{ topic = "out" }
    end }
    d:pipe("in", { rec("old", { user = "alice" }), rec("old", { user = "bob" }) })
    local out = d:output("out")
    assert.are.equal("alice", out[1].key)
    assert.are.equal("bob", out[2].key)
    assert.are.equal(testing.partition_for("alice", 8), out[1].partition)
    assert.are.equal(testing.partition_for("bob", 8), out[2].partition)
  end)

  it("branch sends each record to the first matching branch only", function()
    local d = testing.driver(function(sproc)
      local big, small = sproc.source{ topic = "in", value = "json" }
        :branch(function(r) return r.value.n >= 10 end,
                function(r) return r.value.n >= 0 end)
      big:to{ topic = "big" }
      small:map(function(r) return { n = r.value.n, small = true } end):to{ topic = "small" }
    end)
    d:pipe("in", { rec(nil, { n = 5 }), rec(nil, { n = 50 }), rec(nil, { n = -1 }), rec(nil, { n = 10 }) })
    assert.are.same({ '{"n":50}', '{"n":10}' }, d:values("big"))
    assert.are.same({ { n = 5, small = true } }, d:values("small", { json = true }))
    assert.are.equal(1, d:stats().filtered)
  end)

  it("fans out when several operators read one stream", function()
    local d = testing.driver(function(sproc)
      local s = sproc.source{ topic = "in" }
      s:map(function(r) return r.value:upper() end):to{ topic = "upper" }
      s:to{ topic = "copy" }
    end)
    d:pipe("in", { rec(nil, "a"), rec(nil, "b") })
    assert.are.same({ "A", "B" }, d:values("upper"))
    assert.are.same({ "a", "b" }, d:values("copy"))
  end)

  it("each sees every record and the stream goes on", function()
    local seen = {}
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in" }
        :each(function(r) seen[#seen + 1] = r.value .. "@" .. r.offset end)
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec(nil, "a"), rec(nil, "b") })
    assert.are.same({ "a@0", "b@1" }, seen)
    assert.are.equal(2, #d:output("out"))
  end)

  it("gives record views their coordinates and headers", function()
    local got
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in" }:each(function(r)
        got = { r.topic, r.partition, r.offset, r.ts, r.key, r.value, r.headers.trace }
      end)
    end)
    d:pipe("in", rec("k", "v", { partition = 3, offset = 41, ts = 1234, headers = { trace = "t1" } }))
    assert.are.same({ "in", 3, 41, 1234, "k", "v", "t1" }, got)
  end)

  it("reads JSON fields of every type and escaped strings", function()
    local got
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }:each(function(r)
        local v = r.value
        got = { v.s, v.n, v.t, v.f, v.z, v.missing, v.obj.a, v.arr[2], v["k\"q"] }
      end)
    end)
    d:pipe("in", rec(nil, '{"s":"a\\nb\\u00e9","n":-1.5e2,"t":true,"f":false,"z":null,' ..
                          '"obj":{"a":[1]},"arr":[1,2],"k\\"q":"quoted key"}'))
    assert.are.same({ "a\nb\195\169", -150, true, false, nil, nil, { 1 }, 2, "quoted key" }, got)
  end)

  it("writes an unchanged JSON value byte for byte", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }:to{ topic = "out" }
    end)
    local raw = '{ "b" : 1.50, "a":"x" }'
    d:pipe("in", rec(nil, raw))
    assert.are.equal(raw, d:values("out")[1])
  end)

  it("passes records through unchanged: bytes, null key and value, timestamp, headers", function()
    local d = testing.driver{ partitions = 4, build = function(sproc)
      sproc.source{ topic = "in", value = "bytes" }:to{ topic = "out" }
    end }
    d:pipe("in", { rec("k1", "\0binary\255", { ts = 7, headers = { h = "1" } }),
                   rec(nil, "no key", { ts = 8 }),
                   rec("tombstone", nil, { ts = 9 }) })
    local out = d:output("out")
    assert.are.equal(3, #out)
    assert.are.equal("k1", out[1].key)
    assert.are.equal("\0binary\255", out[1].value)
    assert.are.equal(7, out[1].ts)
    assert.are.same({ h = "1" }, out[1].headers)
    assert.are.equal(testing.partition_for("k1", 4), out[1].partition)
    assert.is_nil(out[2].key)
    assert.are.equal("no key", out[2].value)
    assert.are.equal("tombstone", out[3].key)
    assert.is_nil(out[3].value)
    assert.are.equal(9, out[3].ts)
  end)

  it("map and key_by returning nil give a null value and a null key", function()
    local seen = {}
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in" }
        :map(function() return nil end)
        :key_by(function() return nil end)
        :each(function(r) seen[#seen + 1] = { r.key == nil, r.value == nil } end)
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec("k", "v") })
    local out = d:output("out")
    assert.is_nil(out[1].key)
    assert.is_nil(out[1].value)
    assert.are.same({ { true, true } }, seen)
  end)

  it("print() goes to stdout, key and value separated by a tab", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in" }:print{ key = true }
    end)
    d:pipe("in", rec("k", "v"))
    assert.are.same({ { topic = "stdout", key = "k", value = "v", ts = 0, partition = 0 } },
                    d:output("stdout"))
  end)
end)

describe("building a pipeline", function()
  it("raises on misuse, pointing at the caller", function()
    assert.has_error(function()
      testing.driver(function(sproc) sproc.source{ topic = "in" }:filter("nope") end)
    end, "filter() expects a function, got string")
    assert.has_error(function()
      testing.driver(function(sproc) sproc.source{ topic = "a", file = "b" } end)
    end)
    assert.has_error(function()
      testing.driver(function(sproc) sproc.source{ topic = "in" }:to{ topic = "o" }:map(print) end)
    end)
    assert.has_error(function()
      testing.driver(function(sproc) sproc.app{ errors = "ignore" } end)
    end)
    assert.has_error(function() testing.driver(function() end) end,
                     "the script declares no source (sproc.source{...})")
  end)
end)

describe("bad input", function()
  local input = {
    rec("1", '{"n":1}'),
    rec("2", '{"n":'),          -- malformed JSON
    rec("3", '{"n":3}'),
    rec("4", '{"n":"boom"}'),   -- the user function raises on this one
    rec("5", '{"n":5}'),
  }
  local function build(policy)
    return function(sproc)
      sproc.app{ errors = policy, dlq = "dead" }
      sproc.source{ topic = "in", value = "json" }
        :map(function(r)
          if r.value.n == "boom" then error("cannot handle boom") end
          return { n = r.value.n * 10 }
        end)
        :to{ topic = "out" }
    end
  end

  it("fail stops at the first bad record with what and where", function()
    local d = testing.driver(build("fail"))
    local ok, err = pcall(d.pipe, d, "in", input)
    assert.is_false(ok)
    assert.matches("bad input: malformed JSON value: .* at byte 5", err)
    assert.matches("record: topic in, partition 0, offset 1", err)
    -- what came before the bad record was processed
    assert.are.same({ '{"n":10}' }, d:values("out"))
  end)

  it("a script error names the script's file and line", function()
    local d = testing.driver(build("fail"))
    local ok, err = pcall(d.pipe, d, "in", { input[4] })
    assert.is_false(ok)
    assert.matches("error in script: .*pipeline_spec%.lua:%d+: cannot handle boom", err)
    assert.matches("offset 0", err)
  end)

  it("skip counts bad records and processes all others", function()
    local d = testing.driver(build("skip"))
    d:pipe("in", input)
    assert.are.same({ '{"n":10}', '{"n":30}', '{"n":50}' }, d:values("out"))
    local s = d:stats()
    assert.are.equal(2, s.skipped)
    assert.are.equal(5, s.records_in)
  end)

  it("dlq writes each bad record as it came, with the error in headers", function()
    local d = testing.driver(build("dlq"))
    d:pipe("in", input)
    assert.are.same({ '{"n":10}', '{"n":30}', '{"n":50}' }, d:values("out"))
    local dead = d:output("dead")
    assert.are.equal(2, #dead)
    assert.are.equal("2", dead[1].key)
    assert.are.equal('{"n":', dead[1].value)
    assert.matches("malformed JSON", dead[1].headers["sproc.error"])
    assert.are.equal("in", dead[1].headers["sproc.source.topic"])
    assert.are.equal("1", dead[1].headers["sproc.source.offset"])
    assert.are.equal('{"n":"boom"}', dead[2].value)
    assert.matches("cannot handle boom", dead[2].headers["sproc.error"])
    -- every input is accounted for: output or dead-lettered
    local s = d:stats()
    assert.are.equal(5, s.records_in)
    assert.are.equal(3, s.records_out)
    assert.are.equal(2, s.dead_lettered)
  end)

  it("an event-time function that returns no number is bad input", function()
    local d = testing.driver(function(sproc)
      sproc.app{ errors = "dlq", dlq = "dead" }
      sproc.source{ topic = "in", value = "json", time = function(r) return r.value.t end }
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec(nil, '{"t":5}'), rec(nil, '{"x":1}') })
    assert.are.equal(5, d:output("out")[1].ts)
    assert.matches("event time function returned nil", d:output("dead")[1].headers["sproc.error"])
  end)
end)

describe("select", function()
  it("projects the named fields in order, null where missing, as JSON", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }:select{ "n", "id", "gone" }:to{ topic = "out" }
    end)
    d:pipe("in", rec("k", '{"id":1,"n":{"a":[1,2]},"x":3}'))
    assert.are.same({ '{"n":{"a":[1,2]},"id":1,"gone":null}' }, d:values("out"))
  end)

  it("leaves a value whose selected fields read as before", function()
    -- issue 14 #1: r.value.n read nil after select, so this filter dropped everything
    local seen = {}
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :select{ "id", "n" }
        :filter(function(r) return r.value.n ~= nil end)
        :each(function(r) seen[#seen + 1] = { r.value.id, r.value.n, r.value.x } end)
        :map(function(r) return { id = r.value.id, twice = r.value.n * 2 } end)
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec(nil, '{"id":1,"n":2,"x":3}'), rec(nil, '{"id":2,"x":3}') })
    assert.are.same({ { id = 1, twice = 4 } }, d:values("out", { json = true }))
    assert.are.same({ { 1, 2, nil } }, seen)   -- x was not selected
  end)

  it("writes the projection, not the whole record, when a map returns the value", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :select{ "id" }
        :map(function(r) return r.value end)
        :to{ topic = "out" }
    end)
    d:pipe("in", rec(nil, '{"id":"a","secret":1}'))
    assert.are.same({ '{"id":"a"}' }, d:values("out"))
  end)

  it("is refused after an operator that replaces the value", function()
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.source{ topic = "in", value = "json" }
          :map(function(r) return { a = 1 } end):select{ "a" }:to{ topic = "out" }
      end)
    end, "select() reads the record's own JSON value: put it before map() (or after an aggregate())")
  end)
end)

-- issue 14 #11
describe("JSON edge cases", function()
  local function dlq_pipeline(opts)
    return testing.driver(function(sproc)
      sproc.app{ errors = "dlq", dlq = "dead" }
      local src = { topic = "in", value = "json" }
      for k, v in pairs(opts or {}) do src[k] = v end
      sproc.source(src):to{ topic = "out" }
    end)
  end

  it("invalid UTF-8 and lone surrogates are bad input, not passed on", function()
    local d = dlq_pipeline()
    d:pipe("in", { rec("a", '{"s":"ok \\u00e9 \\ud83d\\ude00"}'), rec("b", '{"s":"\xff\xfe"}'),
                   rec("c", '{"s":"\\ud800"}'), rec("d", '{"s":"\\udc00x"}'),
                   rec("e", '{"s":"\xed\xa0\x80"}'), rec("f", '{"s":"\xc0\xaf"}') })
    assert.are.same({ '{"s":"ok \\u00e9 \\ud83d\\ude00"}' }, d:values("out"))
    local why = {}
    for _, r in ipairs(d:output("dead")) do why[r.key] = r.headers["sproc.error"] end
    assert.matches("UTF%-8", why.b)
    assert.matches("surrogate", why.c)
    assert.matches("surrogate", why.d)
    assert.matches("UTF%-8", why.e)
    assert.matches("UTF%-8", why.f)
  end)

  it("a number beyond a double's range is bad input", function()
    local d = dlq_pipeline()
    d:pipe("in", { rec("a", '{"n":1e308}'), rec("b", '{"n":1e999}'), rec("c", '{"n":-1e999}') })
    assert.are.same({ '{"n":1e308}' }, d:values("out"))
    assert.matches("out of range", d:output("dead")[1].headers["sproc.error"])
    assert.are.equal(2, #d:output("dead"))
  end)

  it("a script's string that is not UTF-8 is refused when it is encoded as JSON", function()
    local d = testing.driver(function(sproc)
      sproc.app{ errors = "dlq", dlq = "dead" }
      sproc.source{ topic = "in" }:map(function(r) return { s = r.value } end):to{ topic = "out" }
    end)
    d:pipe("in", { rec("a", "fine"), rec("b", "\xff") })
    assert.are.same({ '{"s":"fine"}' }, d:values("out"))
    assert.matches("UTF%-8", d:output("dead")[1].headers["sproc.error"])
  end)

  it("a top-level null value reads as nil", function()
    local seen = {}
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }:each(function(r) seen[#seen + 1] = type(r.value) end)
    end)
    d:pipe("in", { rec("a", "null"), rec("b", "3"), rec("c", "[1]") })
    assert.are.same({ "nil", "number", "table" }, seen)
  end)

  it("tombstones pass with r.value == nil, or are skipped as filtered", function()
    local seen = {}
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :each(function(r) seen[#seen + 1] = r.value == nil end):to{ topic = "out" }
      sproc.source{ topic = "in2", value = "json", tombstones = "skip" }
        :map(function(r) return { x = r.value.x } end):to{ topic = "out2" }
    end)
    d:pipe("in", { rec("a", nil), rec("b", '{"x":1}') })
    assert.are.same({ true, false }, seen)
    local out = d:output("out")
    assert.are.equal(2, #out)
    assert.is_nil(out[1].value)            -- a tombstone goes on as one
    d:pipe("in2", { rec("a", nil), rec("b", '{"x":1}') })
    assert.are.same({ '{"x":1}' }, d:values("out2"))
    assert.are.equal(1, d:stats().filtered)
    assert.has_error(function()
      testing.driver(function(sproc) sproc.source{ topic = "t", tombstones = "drop" } end)
    end, 'sproc.source: tombstones must be "pass" or "skip", got drop')
  end)

  it("refuses nesting deeper than 64 levels", function()
    local d = dlq_pipeline()
    d:pipe("in", { rec("a", '{"a":' .. ("["):rep(63) .. ("]"):rep(63) .. '}'),
                   rec("b", '{"a":' .. ("["):rep(64) .. ("]"):rep(64) .. '}') })
    assert.are.equal(1, #d:values("out"))
    assert.matches("nesting too deep", d:output("dead")[1].headers["sproc.error"])
  end)
end)

describe("json", function()
  it("encodes tables, arrays, nested values and escapes", function()
    assert.are.equal('[1,2,3]', json.encode({ 1, 2, 3 }))
    assert.are.equal('{"a":"x\\"y\\n"}', json.encode({ a = 'x"y\n' }))
    assert.are.equal('{}', json.encode({}))
    assert.are.equal('null', json.encode(nil))
    assert.are.equal('0.1', json.encode(0.1))
    assert.are.equal('12345678901', json.encode(12345678901))
    assert.are.same({ a = { 1, { b = true } } }, json.decode(json.encode({ a = { 1, { b = true } } })))
  end)
  it("decode returns nil and an error for malformed text", function()
    local v, err = json.decode("{")
    assert.is_nil(v)
    assert.is_string(err)
  end)
end)
