-- Compilers of the operators that write records out: to a Kafka topic,
-- to stdout, to rolling files and Parquet files (see sproc.ops for the
-- compilers' shape). A sink that takes a record's own bytes hands them to
-- the core without a Lua string in between.
local ffi = require "ffi"
local core = require "sproc.core"
local sproc = require "sproc"
local record = require "sproc.record"
local encode = require "sproc.encode"
local errors = require "sproc.errors"

local C = core.C
local VSET, KSET = record.VSET, record.KSET
local proj, proj_len = record.proj, record.proj_len
local errp, cerr = errors.errp, errors.cerr
local encoder, takes_raw, value_bytes = encode.encoder, encode.takes_raw, encode.value_bytes
local rawget, pairs, tostring, error = rawget, pairs, tostring, error

local codecs = { none = C.SP_CODEC_NONE, snappy = C.SP_CODEC_SNAPPY, zstd = C.SP_CODEC_ZSTD }

local M = { compilers = {} }
local compile = M.compilers

function compile.to(n, env)
  local ctx, batch = env.ctx, env.batch
  local o = n.opts
  local sink = C.sp_sink_kafka(ctx, o.topic, errp)
  if sink < 0 then error(cerr("to(" .. o.topic .. ")"), 0) end
  local enc_key = encoder(o.key or "auto", batch, "key", ctx)
  local enc_val = encoder(o.value or "auto", batch, "value", ctx)
  local headers = o.headers
  local fwd = o.forward_headers == false and 0 or 1
  local raw_key, raw_val = takes_raw(o.key, env.serdes.key), takes_raw(o.value, env.serdes.value)
  local what = "output to topic " .. o.topic
  -- Avro: the value as JSON (the record's own, a projection or a
  -- replacement), then as a datum of the registered schema
  local function register(subject, schema)
    local id = C.sp_avro_register(ctx, subject, schema, #schema, errp)
    if id < 0 then error(cerr("to(" .. o.topic .. "): schema of subject " .. subject), 0) end
    return id
  end
  local avro_id, avro_key_id
  if o.value == "avro" and o.schema_id then
    -- a fixed id: its schema is the registry's, nothing is registered
    avro_id = o.schema_id
    if C.sp_avro_use_id(ctx, avro_id, errp) ~= 0 then error(cerr("to(" .. o.topic .. "): schema_id"), 0) end
    raw_val = false
    enc_val = encoder("json", batch, "value", ctx)
  elseif o.value == "avro" then
    avro_id = register(o.subject or (o.topic .. "-value"), o.schema)
    raw_val = false
    enc_val = encoder("json", batch, "value", ctx)
  end
  if o.key == "avro" then
    avro_key_id = register(o.key_subject or (o.topic .. "-key"), o.key_schema)
    raw_key = false
    enc_key = encoder("json", batch, "key", ctx)
  end
  local framed, framed_len = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  return function(r)
    local kraw = raw_key and not rawget(r, KSET)
    local vraw = raw_val and not rawget(r, VSET)
    if kraw and vraw and not headers then
      -- pass-through: the core writes the record's own bytes
      local ts = rawget(r, "ts")
      if C.sp_emit_rec(ctx, sink, ts and 1 or 0, ts or 0, fwd, errp) ~= 0 then
        errors.output_failed(what)
      end
      return
    end
    local rec = batch.recs[batch.cur]
    local kp, kl, vp, vl
    if kraw then kp, kl = rec.key, rec.key_len else kp, kl = enc_key(r.key) end
    if vraw then
      vp, vl = rec.val, rec.val_len
    else
      local set = rawget(r, VSET)
      if set and set ~= true then vp, vl = proj[0], proj_len[0] else vp, vl = enc_val(r.value) end
    end
    if avro_key_id and kp ~= nil then
      if C.sp_avro_frame(ctx, avro_key_id, kp, kl, framed, framed_len, errp) ~= 0 then
        error("key does not fit the Avro schema: " .. ffi.string(errp[0]), 0)
      end
      -- the frame's buffer is reused by the value's
      kp = ffi.string(framed[0], framed_len[0])
      kl = #kp
    end
    if avro_id and vp ~= nil then
      if C.sp_avro_frame(ctx, avro_id, vp, vl, framed, framed_len, errp) ~= 0 then
        error("value does not fit the Avro schema: " .. ffi.string(errp[0]), 0)
      end
      vp, vl = framed[0], framed_len[0]
    end
    if headers then
      for hk, hv in pairs(headers(r) or {}) do
        hv = tostring(hv)
        C.sp_emit_header(ctx, hk, #hk, hv, #hv, errp)
      end
    end
    if C.sp_emit(ctx, sink, kp, kl, vp, vl, r.ts, fwd, errp) ~= 0 then
      errors.output_failed(what)
    end
  end
end

function compile.print(n, env)
  local ctx, batch = env.ctx, env.batch
  local sink = C.sp_sink_stdout(ctx, errp)
  if sink < 0 then error(cerr("print()"), 0) end
  local with_key = n.opts.key
  local enc_key = encoder("auto", batch, "key", ctx)
  local enc_val = encoder("auto", batch, "value", ctx)
  return function(r)
    local kp, kl
    if with_key then kp, kl = enc_key(r.key) end
    local vp, vl = value_bytes(r, enc_val, batch)
    if C.sp_emit(ctx, sink, kp, kl or 0, vp, vl, r.ts, 0, errp) ~= 0 then
      error(cerr("print()"), 0)
    end
  end
end

-- The options of a file sink as the core takes them (it copies them);
-- keep holds the strings they point at until then.
local function file_opts(n, keep)
  local o = n.opts
  local fo = ffi.new("sp_file_opts")
  keep[1], keep[2], keep[3], keep[4] = o.prefix, o.suffix, o.checkpoint and sproc.here(o.checkpoint),
                                       o.schema and o.schema.spec
  fo.prefix, fo.suffix, fo.checkpoint, fo.schema = keep[1], keep[2], keep[3], keep[4]
  fo.roll_bytes = o.roll_bytes or (n.kind == "to_parquet" and 128 or 64) * 1024 * 1024
  fo.roll_ms = o.roll_seconds and o.roll_seconds * 1000 or 0
  fo.codec = n.kind == "to_parquet" and codecs[o.compression or "snappy"] or C.SP_CODEC_NONE
  fo.dictionary = o.dictionary and 1 or 0
  fo.row_group_bytes = o.row_group_bytes or 64 * 1024 * 1024
  fo.row_group_rows = o.row_group_rows or 0
  keep[5] = o.partition_by
  fo.partition_by = keep[5]
  return fo
end

function compile.to_files(n, env)
  local ctx, batch = env.ctx, env.batch
  local o = n.opts
  local what = n.kind .. "(" .. o.dir .. ")"
  local keep = {}
  local fo = file_opts(n, keep)
  if keep[3] then
    -- entries are named after their files: one sink per checkpoint
    env.checkpoints = env.checkpoints or {}
    local other = env.checkpoints[keep[3]]
    if other and other ~= o.dir then
      error(what .. ": checkpoint " .. o.checkpoint .. " is used by the files in " .. other ..
            " already (give each file sink its own)", 0)
    end
    env.checkpoints[keep[3]] = o.dir
  end
  local sink = C.sp_sink_files(ctx, sproc.here(o.dir), fo, errp)
  if sink < 0 then error(cerr(what), 0) end
  local enc_val = encoder("auto", batch, "value", ctx)
  return function(r)
    local vp, vl = value_bytes(r, enc_val, batch)
    local rc = C.sp_emit(ctx, sink, nil, 0, vp, vl, r.ts, 0, errp)
    if rc == C.SP_EMALFORMED then
      errors.bad_input(cerr(what))
    elseif rc ~= 0 then
      error(cerr(what), 0)
    end
  end
end
compile.to_parquet = compile.to_files

return M
