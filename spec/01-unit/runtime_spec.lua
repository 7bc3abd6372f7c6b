-- disco (the module) and disco.runtime: version checks, configuration
-- errors, timers, signals and the logger.
local disco = require "disco"
local helpers = require "spec.helpers"

describe("disco", function()
    it("agrees with the C core on version and ABI", function()
        assert.equals(disco.VERSION, disco.core.VERSION)
        assert.equals(disco.ABI_VERSION, disco.core.ABI_VERSION)
    end)

    it("refuses a core with another ABI", function()
        local real = package.loaded["disco.core"]
        package.loaded["disco.core"] = setmetatable({ ABI_VERSION = 999 }, { __index = real })
        package.loaded["disco"] = nil
        local ok, err = pcall(require, "disco")
        package.loaded["disco.core"] = real
        package.loaded["disco"] = nil
        assert.is_false(ok)
        assert.matches("ABI 999 does not match", err)
    end)
end)

describe("disco.runtime", function()
    local rt

    after_each(function()
        if rt then
            rt:close()
            rt = nil
        end
    end)

    it("rejects unknown options and wrong types clearly", function()
        assert.has_error(function() disco.runtime({ nmae = "x" }) end,
                         "unknown runtime option 'nmae'")
        assert.has_error(function() disco.runtime({ name = 3 }) end,
                         "runtime option 'name' must be a string, got number")
        assert.has_error(function() disco.runtime({ log_level = "loud" }) end)
        assert.has_error(function() disco.runtime("x") end)
    end)

    it("runs after() once and every() repeatedly", function()
        rt = disco.runtime({ log_level = "warn" })
        local once, every = 0, 0
        rt:after(5, function() once = once + 1 end)
        local t = rt:every(2, function() every = every + 1 end)
        assert.is_true(helpers.run_until(rt, function() return every >= 4 end))
        t:close()
        assert.equals(1, once)
    end)

    it("ends run() when only signal watches remain", function()
        rt = disco.runtime()
        rt:on_signal("SIGUSR2", function() end)
        local fired = false
        rt:after(5, function() fired = true end)
        rt:run() -- must return once the timer has fired
        assert.is_true(fired)
    end)

    it("stops run() with an exit code", function()
        rt = disco.runtime()
        rt:every(1, function() rt:stop(3) end)
        rt:run()
        assert.equals(3, rt.exit_code)
        assert.has_error(function() rt:stop("x") end,
                         "exit code must be an integer from 0 to 255, got x")
        assert.has_error(function() rt:stop(256) end)
    end)

    it("formats log lines and survives a bad format", function()
        rt = disco.runtime({ name = "spec" })
        local lines = {}
        rt.loop:set_log_sink(function(level, component, msg)
            lines[#lines + 1] = { level, component, msg }
        end)
        rt.log:info("hello %s %d", "world", 42)
        rt.log:debug("not shown at info")
        rt:logger("plugin-x"):warn("%d", "not a number")
        assert.same({ "info", "spec", "hello world 42" }, lines[1])
        assert.equals("plugin-x", lines[2][2])
        assert.matches("bad log format", lines[2][3])
        assert.equals(2, #lines)
    end)
end)
