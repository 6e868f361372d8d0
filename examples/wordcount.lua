-- Word count: the first pipeline to run.
--
--   sproc examples/wordcount.lua
--
-- With no --brokers, sproc starts an embedded Kafka dev cluster. The file
-- source feeds the sample text into the topic "lines"; the second pipeline
-- splits lines into words, keyed by the word, into the topic "words"; the
-- third counts each word in a state store and prints the running count.
local sproc = require "sproc"

sproc.app{ id = "wordcount" }

-- Feed: each line of the sample file becomes a record of topic "lines".
sproc.source{ file = "data/sample.txt" }
  :to{ topic = "lines" }

-- Split: writing the words keyed by themselves puts every occurrence of a
-- word in one partition, so that one process counts it, however many
-- processes share the work.
sproc.source{ topic = "lines" }
  :flat_map(function(r, emit)
    for word in r.value:lower():gmatch("%a+") do emit(word) end
  end)
  :filter(function(r) return #r.value > 3 end)
  :key_by(function(r) return r.value end)
  :to{ topic = "words" }

-- Count: the store is changelogged to the topic wordcount-counts-changelog,
-- so the counts survive restarts and follow their partition to another
-- process.
local counts = sproc.store{ name = "counts" }

sproc.source{ topic = "words" }
  :map(function(r) return counts:incr(r.key) end)
  :print{ key = true }
