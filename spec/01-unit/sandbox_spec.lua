-- The plugin sandbox: allow-listed globals, no new globals, restricted
-- require.
local sandbox = require "disco.sandbox"

local function run_in(source, require_fn)
    local env = sandbox.new({ name = "test/plugin", require = require_fn or require })
    local chunk = assert(loadstring(source, "=plugin"))
    setfenv(chunk, env)
    return pcall(chunk)
end

describe("disco.sandbox", function()
    it("offers the safe standard library", function()
        local ok, result = run_in([[
            return string.format("%d-%s", math.floor(2.5), table.concat({ "a", "b" }))
                .. tostring(os.time() > 0) .. type(coroutine.create) .. type(bit.band)
        ]])
        assert.is_true(ok)
        assert.equals("2-abtruefunctionfunction", result)
    end)

    it("has no os.execute, io, loadstring, dofile, debug or getfenv", function()
        for _, expr in ipairs({ "os.execute('true')", "io.open('/etc/passwd')",
                                "loadstring('return 1')", "dofile('/dev/null')",
                                "debug.getinfo(1)", "getfenv(0)", "os.exit(1)",
                                "io.popen('true')", "loadfile('/dev/null')",
                                "collectgarbage()", "os.getenv('HOME')" }) do
            local ok, err = run_in(expr)
            assert.is_false(ok, expr)
            assert.is_string(err, expr)
        end
    end)

    it("refuses to set or read undeclared globals, naming the plugin", function()
        local ok, err = run_in("counter = 1")
        assert.is_false(ok)
        assert.matches("plugin 'test/plugin' may not set the global 'counter'", err)
        ok, err = run_in("_G.x = 1")
        assert.is_false(ok)
        assert.matches("may not set the global 'x'", err)
        ok, err = run_in("return undefined_thing")
        assert.is_false(ok)
        assert.matches("unknown global 'undefined_thing'", err)
        ok, err = run_in("setmetatable(_G, nil)")
        assert.is_false(ok)
        assert.matches("protected metatable", err)
    end)

    it("gives each plugin its own copy of the libraries", function()
        local ok = run_in("string.format = nil; table.insert = nil")
        assert.is_true(ok)
        assert.is_function(string.format)
        assert.is_function(table.insert)
        -- and not the process-wide string metatable
        local ok2, result = run_in("return getmetatable('')")
        assert.is_true(ok2)
        assert.is_nil(result)
    end)

    it("allows disco's public modules only", function()
        assert.is_true(sandbox.disco_module_allowed("disco"))
        assert.is_true(sandbox.disco_module_allowed("disco.log"))
        assert.is_true(sandbox.disco_module_allowed("disco.events"))
        assert.is_false(sandbox.disco_module_allowed("disco.core"))
        assert.is_false(sandbox.disco_module_allowed("disco.cli.run"))
        assert.is_false(sandbox.disco_module_allowed("disco.testing.process"))
        assert.is_false(sandbox.disco_module_allowed("disco.sandbox"))
        assert.is_false(sandbox.disco_module_allowed("discord"))
        assert.is_false(sandbox.disco_module_allowed("socket"))
    end)
end)
