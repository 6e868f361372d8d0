-- issue 14 #12: misspelled options were accepted silently. Option tables
-- of the Lua API, sproc settings and librdkafka properties are checked
-- while the script loads, with the nearest known name.
local testing = require "sproc.testing"

local function build_error(fn)
  local ok, err = pcall(testing.driver, fn)
  assert.is_false(ok)
  return tostring(err)
end

describe("misspelled options", function()
  it("are refused in the option tables of the Lua API, with the key meant", function()
    local cases = {
      { function(s) s.source{ topic = "t", fromat = "json" } end, "sproc.source: unknown option fromat %(did you mean format%?%)" },
      { function(s) s.app{ erors = "skip" } end, "sproc.app: unknown option erors %(did you mean errors%?%)" },
      { function(s) s.store{ name = "x", tll = 5 } end, "sproc.store: unknown option tll %(did you mean ttl%?%)" },
      { function(s) s.timer{ every = 5, tme = "wall" } end, "sproc.timer: unknown option tme %(did you mean time%?%)" },
      { function(s) s.window.tumbling{ size = 5, grase = 0 } end, "unknown option grase %(did you mean grace%?%)" },
      { function(s) s.source{ topic = "t" }:to{ topic = "o", vaule = "json" } end, "to%(%): unknown option vaule %(did you mean value%?%)" },
      { function(s) s.source{ topic = "t" }:to_files{ dir = "d", roll_second = 5 } end, "did you mean roll_seconds%?" },
      { function(s) s.agg.custom{ init = print, add = print, marge = print } end, "did you mean merge%?" },
      { function(s) s.schema{ { "a", "string", nulable = false } } end, "did you mean nullable%?" },
    }
    for _, c in ipairs(cases) do
      assert.matches(c[2], build_error(c[1]))
    end
  end)

  it("point at the script's line, not at sproc's", function()
    local err = build_error(function(sproc)
      sproc.source{ topic = "t", fromat = "json" }
    end)
    assert.matches("options_spec.lua:%d+: sproc.source", err)
  end)

  local bin = os.getenv("SPROC_BIN") or "build/sproc"
  local function run(script, args)
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local p = io.popen(bin .. " " .. path .. " " .. (args or "") .. " --until-end 2>&1; echo rc=$?")
    local out = p:read("*a")
    p:close()
    os.remove(path)
    return out
  end
  local timer_only = 'local sproc = require "sproc"\nsproc.timer{ every = 1000, time = "wall" }:print()\n'

  it("are refused in --set: sproc settings and librdkafka's, exit 2", function()
    local out = run(timer_only, "--set sproc.batch.sise=5")
    assert.matches("unknown sproc setting %(did you mean sproc.batch.size%?%)", out)
    assert.matches("rc=2", out)
    -- a consumer setting in a script that makes no consumer is checked too
    out = run(timer_only, "--set consumer.sesion.timeout.ms=6000")
    assert.matches("sesion.timeout.ms: not a librdkafka or sproc setting %(did you mean session.timeout.ms%?%)", out)
    assert.matches("rc=2", out)
    out = run(timer_only, "--set sproc.commit.interval.ms=soon")
    assert.matches("a whole number", out)
    assert.matches("rc=2", out)
  end)

  it("--help lists every sproc setting with its default, and --set takes each", function()
    local p = io.popen(bin .. " --help")
    local help = p:read("*a")
    p:close()
    local values = {
      ["sproc.batch.size"] = "10", ["sproc.commit.interval.ms"] = "100",
      ["sproc.processing.guarantee"] = "exactly_once", ["sproc.state.dir"] = "",
      ["sproc.state.max.bytes"] = "1000000", ["sproc.idle.timeout.ms"] = "0",
      ["sproc.max.task.idle.ms"] = "-1", ["sproc.dev.partitions"] = "2",
    }
    for name, v in pairs(values) do
      assert.matches(name:gsub("%.", "%%.") .. "=", help)
      assert.matches("rc=0", run(timer_only, "--set " .. name .. "=" .. v))
    end
  end)

  it("--bootstrap-server is --brokers (Kafka's tools' name)", function()
    local out = run('local sproc = require "sproc"\nsproc.source{ topic = "t" }:print()\n',
                    "--bootstrap-server 127.0.0.1:1 --connect-timeout 1")
    assert.matches("no Kafka broker answered at 127.0.0.1:1", out)
    assert.matches("rc=1", out)
  end)

  it("take sproc.max.task.idle.ms from -1 (never wait) up, as the README documents", function()
    for _, v in ipairs({ "-1", "0", "500" }) do
      assert.matches("rc=0", run(timer_only, "--set sproc.max.task.idle.ms=" .. v))
    end
    local out = run(timer_only, "--set sproc.max.task.idle.ms=-2")
    assert.matches("a whole number >= %-1", out)
    assert.matches("rc=2", out)
  end)

  it("a misspelled operator says which one was meant, with one traceback of the script's", function()
    local out = run('local sproc = require "sproc"\nsproc.source{ topic = "x" }\n  :fitler(function() end)\n')
    assert.matches("did you mean filter%?", out)
    assert.matches("rc=2", out)
    assert.is_nil(out:find("[sproc]", 1, true))
    local _, n = out:gsub("stack traceback:", "")
    assert.are.equal(1, n)
  end)
end)
