-- The Lua modules and libsproc must come from one build: a contract that
-- differs is refused at load with a message that says what to do.
describe("the FFI contract", function()
  local root = debug.getinfo(1, "S").source:match("^@(.*)/tests/spec/[^/]*$") or "."

  local function load_core(header)
    local cmd = string.format("SPROC_FFI_H=%q LUA_PATH=%q luajit -e 'require \"sproc.core\"' 2>&1; " ..
                              "echo rc=$?", header, package.path)
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    return out
  end

  local function header_with(edit)
    local f = assert(io.open(root .. "/core/sp_ffi.h", "rb"))
    local text = f:read("*a")
    f:close()
    local path = os.tmpname()
    f = assert(io.open(path, "wb"))
    f:write(edit(text))
    f:close()
    return path
  end

  it("loads when the library was built from the header the modules read", function()
    local path = header_with(function(t) return t end)
    local out = load_core(path)
    os.remove(path)
    assert.are.equal("rc=0\n", out)
  end)

  it("refuses a library built from another contract", function()
    local path = header_with(function(t)
      return (t:gsub("SP_POLICY_DLQ = 2", "SP_POLICY_DLQ = 2, SP_POLICY_RETRY = 3"))
    end)
    local out = load_core(path)
    os.remove(path)
    assert.matches("rc=1", out, 1, true)
    assert.matches("was built from another sp_ffi.h than " .. path, out, 1, true)
    assert.matches("rebuild it", out, 1, true)
  end)
end)
