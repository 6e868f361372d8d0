-- sproc describe: the compiled topology as an indented text, or as
-- Graphviz DOT.
local sproc = require "sproc"
local aggregate = require "sproc.aggregate"

local M = {}

--- The topology as text, or as Graphviz DOT.
function M.describe(env, dot)
  local topo = sproc._topology()
  local out = {}
  local function label(n)
    if n.kind == "source" then
      local s = n.source
      if s.kind == "timer" then return "timer every " .. s.every .. " ms of " .. s.time_kind .. " time" end
      return (s.kind == "file" and "file " or (s.kind == "pattern" and "pattern " or "topic ")) ..
             table.concat(s.names, ", ") .. " (key " .. s.key .. ", value " .. s.value .. ")"
    elseif n.kind == "to" then return "to topic " .. n.opts.topic
    elseif n.kind == "to_files" then return "to files in " .. n.opts.dir
    elseif n.kind == "to_parquet" then return "to Parquet files in " .. n.opts.dir
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
  if dot then
    out[#out + 1] = "digraph \"" .. env.app_id .. "\" {"
    out[#out + 1] = "  rankdir=LR;"
    for _, n in ipairs(topo.nodes) do
      local shape = (n.kind == "source" or n.terminal and n.kind ~= "branch") and "box" or "ellipse"
      out[#out + 1] = string.format("  n%d [label=%q, shape=%s];", n.id, label(n), shape)
      for _, c in ipairs(n.children) do
        out[#out + 1] = string.format("  n%d -> n%d;", n.id, c.id)
      end
      if n.kind == "aggregate" then
        out[#out + 1] = string.format("  s%d [label=%q, shape=cylinder];", n.id,
                                      "store " .. n.store_name .. " / changelog " .. env.app_id ..
                                      "-" .. n.store_name .. "-changelog")
        out[#out + 1] = string.format("  n%d -> s%d [style=dashed, dir=both];", n.id, n.id)
      end
    end
    for i, h in ipairs(topo.stores) do
      out[#out + 1] = string.format("  store%d [label=%q, shape=cylinder];", i,
                                    "store " .. h.name .. " (" .. h.kind .. ") / changelog " ..
                                    env.app_id .. "-" .. h.name .. "-changelog")
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = "application " .. env.app_id .. " (errors: " .. env.policy ..
                    (env.policy == "dlq" and (", dead letters to " .. env.dlq) or "") .. ")"
    local function walk(n, depth)
      out[#out + 1] = string.rep("  ", depth) .. label(n)
      for _, c in ipairs(n.children) do walk(c, depth + 1) end
    end
    for _, s in ipairs(topo.sources) do walk(s.node, 1) end
    for _, h in ipairs(topo.stores) do
      out[#out + 1] = "  store " .. h.name .. " (" .. h.kind .. ", changelog " ..
                      env.app_id .. "-" .. h.name .. "-changelog)"
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
