-- Word count: the first pipeline to run.
--
--   sproc examples/wordcount.lua
--
-- With no --brokers, sproc starts an embedded Kafka dev cluster. The first
-- source feeds the sample text into the topic "lines"; the second reads it
-- back, splits it into words and prints a running count per word.
local sproc = require "sproc"

sproc.app{ id = "wordcount" }

-- Feed: each line of the sample file becomes a record of topic "lines".
sproc.source{ file = "data/sample.txt" }
  :to{ topic = "lines" }

-- Counts live in this Lua table for now; sproc.store (changelogged, kept
-- across reloads and restarts) is the place for state that must last.
local counts = {}

sproc.source{ topic = "lines" }
  :flat_map(function(r, emit)
    for word in r.value:lower():gmatch("%a+") do emit(word) end
  end)
  :filter(function(r) return #r.value > 3 end)
  :key_by(function(r) return r.value end)
  :map(function(r)
    local n = (counts[r.key] or 0) + 1
    counts[r.key] = n
    return n
  end)
  :print{ key = true }
