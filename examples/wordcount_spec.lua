-- The word count, on the test driver: no broker, no files.
local testing = require "sproc.testing"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

describe("examples/wordcount.lua", function()
  it("splits lines into words of four letters or more, keyed by the word", function()
    local d = testing.driver{ script = here .. "/wordcount.lua", partitions = 4 }
    d:pipe("lines", { { value = "Kafka keeps the records" }, { value = "kafka, KAFKA! and more" } })
    local words = d:output("words")
    local got = {}
    for _, r in ipairs(words) do
      assert.are.equal(r.key, r.value)
      assert.are.equal(testing.partition_for(r.key, 4), r.partition)
      got[#got + 1] = r.value
    end
    assert.are.same({ "kafka", "keeps", "records", "kafka", "kafka", "more" }, got)
  end)

  it("counts each word in its partition's store", function()
    local d = testing.driver{ script = here .. "/wordcount.lua", partitions = 4 }
    d:pipe("lines", { { value = "Kafka keeps the records" }, { value = "kafka, KAFKA! and more records" } })
    d:pipe("words", d:output("words"))
    local got = {}
    for _, r in ipairs(d:output("stdout")) do got[#got + 1] = r.key .. "=" .. r.value end
    assert.are.same({ "kafka=1", "keeps=1", "records=1", "kafka=2", "kafka=3", "more=1", "records=2" }, got)
    local counts = d:store("counts")
    assert.are.equal(3, counts:get("kafka", testing.partition_for("kafka", 4)))
    assert.are.equal(4, counts:size())
  end)
end)
