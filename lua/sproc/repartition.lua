-- Repartition topics: records re-keyed on their way to an operator that
-- needs each key's records in one place go through a topic of sproc's own
-- keyed by the new key (Kafka Streams' repartition topics).
local ffi = require "ffi"
local core = require "sproc.core"
local record = require "sproc.record"
local store = require "sproc.store"
local encode = require "sproc.encode"
local errors = require "sproc.errors"

local C = core.C
local VSET = record.VSET
local ffi_string = ffi.string
local errp, cerr, bad_input = errors.errp, errors.cerr, errors.bad_input
local key_string, value_bytes = encode.key_string, encode.value_bytes
local rawget, error = rawget, error

local M = {}

--- The entry of records of a topic the core reads for this pipeline (a
-- repartition topic, an aggregation's results): a view of serdes over
-- them, in the stream time of task.
function M.internal_entry(env, serdes, task, nxt)
  local batch = env.batch
  local view, reset = record.new_view(env.ctx, batch, serdes)
  return function(i)
    batch.task = task
    local bad = reset(i)
    if bad then bad_input(bad) end
    nxt(view)
  end, view, reset
end

-- A record's value as a repartition topic of a source that is not JSON
-- holds it: a store value (its type in the first byte), the record's own
-- bytes as a string when nothing replaced them.
local function tagged_value(batch)
  local T_STR = string.char(C.SP_VAL_STRING)
  return function(r)
    if not rawget(r, VSET) then
      local rec = batch.recs[batch.cur]
      if rec.val == nil then return nil, 0 end
      local s = T_STR .. ffi_string(rec.val, rec.val_len)
      return s, #s
    end
    local v = r.value
    if v == nil then return nil, 0 end
    local p, len = store.encode(v)
    if not p then error(len, 0) end
    return p, len
  end
end

--- Re-keyed records reach what needs a key's records together (an
--- aggregation, a join) through a repartition topic keyed by the new key,
--- so that each key has one partition (and one process) whatever partition
--- it came from: the function records arriving at n go through; after()
--- compiles what runs on them on the other side. The test driver, which
--- has no Kafka, moves the record to that partition in place.
function M.through(n, env, topic, after)
  local ctx, batch = env.ctx, env.batch
  if C.sp_ctx_kafka_backed(ctx) == 0 then
    local nxt = after()
    local nparts = C.sp_ctx_partitions(ctx)
    return function(r)
      local k = key_string(r.key)
      if k == nil then return nxt(r) end
      local rec = batch.recs[batch.cur]
      local old = rec.partition
      -- its time counts where it was read, as on the broker
      C.sp_ctx_count_to_current(ctx)
      rec.partition = C.sp_partition_for(k, #k, nparts)
      nxt(r)
      rec.partition = old
    end
  end
  local src = n.source
  local sink = C.sp_sink_kafka(ctx, topic, errp)
  if sink < 0 then error(cerr("repartition topic " .. topic), 0) end
  if C.sp_source_internal(ctx, topic, errp) < 0 then error(cerr("repartition topic " .. topic), 0) end
  local index = C.sp_source_count(ctx)   -- before the aggregation adds its own
  -- JSON stays JSON; other values go tagged with their Lua type, so that a
  -- table a map made of a string comes out of the topic a table again
  local tagged = src.value ~= "json"
  local rsrc = { key = "string", value = tagged and "tagged" or "json", kind = "topic",
                 names = { topic } }
  local saved, saved_task = env.serdes, env.task
  local task = C.sp_ctx_task(ctx, env.task_names[topic] or topic)
  env.serdes, env.task = rsrc, task
  local nxt = after()
  env.serdes, env.task = saved, saved_task
  env.by_source[index] = M.internal_entry(env, rsrc, task, nxt)
  local enc_val = tagged and tagged_value(batch) or encode.encoder("json", batch, "value", ctx)
  return function(r)
    local k = key_string(r.key)
    local vp, vl
    if tagged then vp, vl = enc_val(r) else vp, vl = value_bytes(r, enc_val, batch) end
    -- the event time travels as the record's timestamp (Kafka's producer
    -- reads 0 as "now": epoch 0 goes as 1 ms, in the same windows unless a
    -- window is 1 ms long)
    local ts = r.ts
    if ts == 0 then ts = 1 end
    if C.sp_emit(ctx, sink, k, k and #k or 0, vp, vl, ts, 0, errp) ~= 0 then
      errors.output_failed("repartition topic " .. topic)
    end
  end
end

return M
