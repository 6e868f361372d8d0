-- sproc describe: the compiled topology as an indented text, or as
-- Graphviz DOT.
local sproc = require "sproc"
local aggregate = require "sproc.aggregate"
local op_name = require("sproc.compile").op_name

local M = {}

local function ms(v) return v .. " ms" end

-- Tables and joins.
local function join_label(n, env)
  if n.kind == "table" then
    return (n.global and "global table " or "table ") .. n.topic .. " (store " .. n.store.name ..
           ", its changelog the topic)"
  elseif n.kind == "table_filter" then return "filter rows"
  elseif n.kind == "table_map" then return "map_values"
  elseif n.kind == "to_stream" then return "to_stream"
  elseif n.kind == "to_table" then
    return "to_table (store " .. n.store.name .. ", changelog " .. env.app_id .. "-" ..
           n.store.name .. "-changelog)"
  elseif n.kind == "join_table" then
    local t = n.table
    local by = n.keyfn and " by a key function" or ""
    local via = ""
    if not t.global and (n.keyfn or aggregate.rekeyed(n)) then
      via = " through topic " .. env.app_id .. "-" .. n.name .. "-repartition"
    end
    return n.how .. " join with " .. (t.global and "global table " or "table ") ..
           (t.topic or ("of " .. t.kind)) .. by .. via
  elseif n.kind == "join_side" then
    local j = n.join
    local what = j.kind == "stream_join"
        and ("window before " .. ms(j.window.before) .. ", after " .. ms(j.window.after) ..
             ", grace " .. ms(j.window.grace) .. ", stores " .. j.name .. ".left/.right" ..
             (j.how ~= "inner" and "/.outer" or ""))
        or "tables"
    return n.how_label or (j.how .. " join " .. j.name .. " (" .. n.side .. " side; " .. what .. ")")
  end
end

-- One node's line.
local function label(n, env)
  local jl = join_label(n, env)
  if jl then return jl end
  if n.kind == "source" then
    local s = n.source
    if s.kind == "timer" then return "timer every " .. s.every .. " ms of " .. s.time_kind .. " time" end
    if s.kind == "table" or s.kind == "global_table" then
      return "topic " .. s.names[1] .. " (key " .. s.key .. ", value " .. s.value .. ")"
    end
    return (s.kind == "file" and "file " or (s.kind == "pattern" and "pattern " or "topic ")) ..
           table.concat(s.names, ", ") .. " (key " .. s.key .. ", value " .. s.value .. ")"
  elseif n.kind == "to" then return "to topic " .. n.opts.topic
  elseif n.kind == "to_files" then return "to files in " .. n.opts.dir
  elseif n.kind == "to_parquet" then
    return "to Parquet files in " .. n.opts.dir ..
           (n.opts.partition_by and " (partitioned by " .. n.opts.partition_by .. ")" or "")
  elseif n.kind == "print" then return "print to stdout"
  elseif n.kind == "branch_out" then return "branch " .. n.index
  elseif n.kind == "window" then
    local w = n.window
    local via = ""
    if aggregate.rekeyed(n) then
      via = " through topic " .. aggregate.repartition_topic(env.app_id, n.children[1])
    end
    return "window " .. w.kind .. " (" .. (w.kind == "session" and ("gap " .. w.gap) or
           ("size " .. w.size .. (w.advance and (", advance " .. w.advance) or ""))) ..
           " ms, grace " .. w.grace .. " ms)" .. via
  elseif n.kind == "aggregate" then
    local parts = {}
    for _, a in ipairs(n.aggs) do parts[#parts + 1] = a.name .. " = " .. a.agg end
    return "aggregate " .. table.concat(parts, ", ") .. " (emit " .. n.emit_mode ..
           ", store " .. n.store_name .. ")"
  end
  return n.kind
end

-- The topology as Graphviz DOT.
local function as_dot(env, topo, label, out)
  out[#out + 1] = "digraph \"" .. env.app_id .. "\" {"
  out[#out + 1] = "  rankdir=LR;"
  for _, n in ipairs(topo.nodes) do
    local shape = (n.kind == "source" or n.terminal and n.kind ~= "branch") and "box" or "ellipse"
    out[#out + 1] = string.format("  n%d [label=%q, shape=%s];", n.id, label(n), shape)
    for _, c in ipairs(n.children) do
      out[#out + 1] = string.format("  n%d -> n%d;", n.id, c.id)
    end
    if n.kind == "join_side" then
      out[#out + 1] = string.format("  n%d -> n%d;", n.id, n.join.id)
    elseif n.kind == "join_table" then
      out[#out + 1] = string.format("  n%d -> n%d [style=dashed, label=\"looks up\"];", n.table.id, n.id)
    end
    if n.kind == "aggregate" then
      out[#out + 1] = string.format("  s%d [label=%q, shape=cylinder];", n.id,
                                    "store " .. n.store_name .. " / changelog " .. env.app_id ..
                                    "-" .. n.store_name .. "-changelog")
      out[#out + 1] = string.format("  n%d -> s%d [style=dashed, dir=both];", n.id, n.id)
    end
  end
  for i, h in ipairs(topo.stores) do
    local log = h.table_of and ("topic " .. h.table_of) or
                ("changelog " .. env.app_id .. "-" .. h.name .. "-changelog")
    out[#out + 1] = string.format("  store%d [label=%q, shape=cylinder];", i,
                                  "store " .. h.name .. " (" .. h.kind .. ") / " .. log)
  end
  out[#out + 1] = "}"
end

-- The topology as indented text.
local function as_text(env, topo, label, out)
  out[#out + 1] = "application " .. env.app_id .. " (errors: " .. env.policy ..
                  (env.policy == "dlq" and (", dead letters to " .. env.dlq) or "") .. ")"
  local function walk(n, depth)
    -- the name metrics and sproc tap know the operator by
    out[#out + 1] = string.rep("  ", depth) .. label(n) .. "  [" .. op_name(n) .. "]"
    for _, c in ipairs(n.children) do walk(c, depth + 1) end
    -- a join's operators after it, under its left side
    if n.kind == "join_side" and n.side == "left" then
      for _, c in ipairs(n.join.children) do walk(c, depth + 1) end
    end
  end
  for _, s in ipairs(topo.sources) do walk(s.node, 1) end
  for _, h in ipairs(topo.stores) do
    local log = h.table_of and ("its changelog the topic " .. h.table_of) or
                ("changelog " .. env.app_id .. "-" .. h.name .. "-changelog")
    out[#out + 1] = "  store " .. h.name .. " (" .. h.kind .. ", " .. log .. ")"
  end
end

--- The topology as text, or as Graphviz DOT.
function M.describe(env, dot)
  local topo = sproc._topology()
  local out = {}
  local function line(n) return label(n, env) end
  if dot then as_dot(env, topo, line, out) else as_text(env, topo, line, out) end
  return table.concat(out, "\n") .. "\n"
end

return M
