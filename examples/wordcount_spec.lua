-- The word count, on the test driver: no broker, no files.
local testing = require "sproc.testing"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

describe("examples/wordcount.lua", function()
  it("counts words of four letters or more, case-insensitively", function()
    local d = testing.driver{ script = here .. "/wordcount.lua" }
    d:pipe("lines", { { value = "Kafka keeps the records" }, { value = "kafka, KAFKA! and more records" } })
    local got = {}
    for _, r in ipairs(d:output("stdout")) do got[#got + 1] = r.key .. "=" .. r.value end
    assert.are.same({ "kafka=1", "keeps=1", "records=1", "kafka=2", "kafka=3", "more=1", "records=2" }, got)
  end)

  it("feeds the sample file into the lines topic", function()
    local d = testing.driver{ script = here .. "/wordcount.lua" }
    d:pipe("lines", { value = "" })
    assert.are.equal(0, #d:output("stdout"))
  end)
end)
