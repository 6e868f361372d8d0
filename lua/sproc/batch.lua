-- The batch loop: the core calls run() once per batch through one
-- protected call; a record that fails goes to the error policy here, and
-- the batch goes on after it.
local ffi = require "ffi"
local core = require "sproc.core"
local errors = require "sproc.errors"

local C = core.C
local ffi_string = ffi.string
local errp, cerr = errors.errp, errors.cerr
local xpcall, tostring = xpcall, tostring

local M = {}

-- env.chains caches the entry function per topic id. A topic that several
-- sources read has an entry that runs each source's in turn: state.sub
-- says which one runs, so that after a record failed in one, resume(i)
-- goes on with the next source's on that record.
local function make_process(env)
  local batch, chains, ctx = env.batch, env.chains, env.ctx
  local by_source, stats = env.by_source, env.stats
  local state = { sub = 0, first = 1 }
  local timed = env.stream_timers
  local function several(entries)
    local ne = #entries
    return function(i)
      local k = state.first
      state.first = 1
      while k <= ne do
        state.sub = k
        entries[k](i)
        k = k + 1
      end
      state.sub = 0
    end, ne
  end
  local counts, internal = {}, {}
  local function resolve(topic)
    local entries = {}
    for s = 0, C.sp_source_count(ctx) - 1 do
      if C.sp_source_matches(ctx, s, topic) == 1 then entries[#entries + 1] = by_source[s + 1] end
    end
    if #entries == 0 then
      error("sproc: a record from a topic no source reads (id " .. topic .. ")", 0)
    end
    local entry = entries[1]
    counts[topic] = #entries
    internal[topic] = C.sp_topic_internal(ctx, topic) == 1
    if #entries > 1 then entry = several(entries) end
    chains[topic] = entry
    return entry
  end
  local function process(from)
    local i = from
    -- batch.n grows (and batch.recs may move) when a stream timer fires
    while i < batch.n do
      batch.cur = i
      local rec = batch.recs[i]
      -- the core's own records (timer firings, window results) have no
      -- offset, and a repartition topic's were input when first read:
      -- they are not input; a record resumed in its next source was
      -- counted already
      local t = rec.topic
      local entry = chains[t] or resolve(t)
      if rec.offset >= 0 and state.first == 1 and not internal[t] then
        stats.records_in = stats.records_in + 1
      end
      entry(i)
      -- the stream timers this record's time made due run right after it
      if timed and batch.recs[i].offset >= 0 and C.sp_ctx_fire_stream_timers_after(ctx, i) < 0 then
        error("out of memory while firing timers", 0)
      end
      i = i + 1
    end
  end
  -- Where to go on after record i failed: (i, its next source) or i + 1.
  local function resume(i)
    local sub = state.sub
    state.sub = 0
    if sub > 0 and sub < (counts[batch.recs[i].topic] or 1) then
      state.first = sub + 1
      return i
    end
    state.first = 1
    return i + 1
  end
  return process, resume
end

local function describe_record(env, i)
  local rec = env.batch.recs[i]
  local topic = C.sp_topic_name(env.ctx, rec.topic)
  return string.format("topic %s, partition %d, offset %s",
                       topic ~= nil and ffi_string(topic) or "?", rec.partition,
                       tostring(rec.offset):gsub("LL$", ""))
end

-- Skip logs are rate-limited: one line a second, with what was suppressed.
local last_skip_log, suppressed = 0, 0
local function log_skip(ctx, i, msg)
  local now = os.time()
  if now ~= last_skip_log then
    local extra = suppressed > 0 and string.format(" (%d more skipped in the last second)", suppressed) or ""
    C.sp_log_record(ctx, 1, i, "skipped a record: " .. msg .. extra)
    last_skip_log, suppressed = now, 0
  else
    suppressed = suppressed + 1
  end
end

-- Record i failed with err: applies the policy. Returns nil to go on, or
-- the message the pipeline stops with (and true when a version just
-- swapped in should give way to the one before).
local function failed(env, i, err)
  local stats = env.stats
  stats.errors = stats.errors + 1
  local kind = errors.kind(err)
  local msg = string.format("%s: %s\n  record: %s", kind, tostring(err), describe_record(env, i))
  if env.rollback and kind == "error in script" then
    -- a version just swapped in by --watch: the previous one takes over
    -- at this record
    stats.errors = stats.errors - 1
    return msg, true
  end
  if env.policy == "fail" or kind == "state store" or kind == "out of memory" then
    return msg
  elseif env.policy == "skip" then
    stats.skipped = stats.skipped + 1
    log_skip(env.ctx, i, msg)
  else
    local why = tostring(err)
    if C.sp_dead_letter(env.ctx, i, why, #why, errp) ~= 0 then
      return msg .. "\n  and the dead-letter topic failed: " .. ffi_string(errp[0])
    end
  end
  -- what it output before it failed does not make it an output
  C.sp_emit_forget(env.ctx, i)
  return nil
end

--- Runs the current batch (records from..n-1) under the error policy.
--- Returns nil, or an error message when the pipeline must stop (and
--- true after it when a version just swapped in should give way to the
--- one before: env.rollback).
function M.run(env, from)
  local process = env.process
  if not process then
    process, env.resume = make_process(env)
    env.process = process
  end
  local batch, stats, ctx = env.batch, env.stats, env.ctx
  stats.batches = stats.batches + 1
  from = from or 0
  -- the input records (with the stream timers they make due), then the
  -- records of timers due between batches, until no timer is due
  while true do
    if from >= batch.n then
      local fired = C.sp_ctx_fire_timers(ctx)
      if fired < 0 then return "out of memory while firing timers" end
      if fired == 0 then break end
    end
    local ok, err = xpcall(process, errors.handler, from)
    if ok then
      from = batch.n
    else
      local i = batch.cur
      local msg, rollback = failed(env, i, err)
      if msg then return msg, rollback end
      from = env.resume(i)
      -- a record that failed moves stream time as well: its timers
      if from > i and C.sp_ctx_fire_stream_timers_after(ctx, i) < 0 then
        return "out of memory while firing timers"
      end
    end
  end
  batch.cur = -1
  if C.sp_store_end_batch(ctx, errp) ~= 0 then return cerr("state store") end
  return nil
end

return M
