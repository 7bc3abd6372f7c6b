-- disco.core: the loop, timers, signals, the protected-call path, the log
-- sink and the error tuples, through the Lua bindings.
local core = require "disco.core"
local helpers = require "spec.helpers"

describe("disco.core", function()
    local loop

    before_each(function()
        loop = assert(core.new_loop())
        loop:set_log_level("info")
    end)

    after_each(function()
        if not loop:is_closed() then
            assert.is_true(loop:close())
        end
        core.set_error_handler(nil)
    end)

    it("is safe to open twice (busted reloads modules)", function()
        package.loaded["disco.core"] = nil
        local again = require "disco.core"
        assert.equals(core.ABI_VERSION, again.ABI_VERSION)
        local other = assert(again.new_loop())
        assert.is_true(other:close())
    end)

    it("exposes the error map as names to codes", function()
        assert.equals(-4001, core.errors.EINVAL)
        local name, msg = core.strerror(core.errors.ETIMEDOUT)
        assert.equals("ETIMEDOUT", name)
        assert.equals("operation timed out", msg)
        assert.equals("EUNKNOWN", (core.strerror(12345)))
    end)

    it("runs a one-shot timer once and a repeating timer until stopped", function()
        local once, every = 0, 0
        local t1 = assert(loop:timer("once"))
        local t2 = assert(loop:timer("every"))
        assert.is_true(t1:start(5, 0, function() once = once + 1 end))
        assert.is_true(t2:start(1, 2, function(t)
            every = every + 1
            if every == 5 then
                t:stop()
            end
        end))
        assert.is_true(helpers.run_until(loop, function()
            return every >= 5 and once >= 1
        end, 2000))
        -- Nothing fires after stop, and the one-shot does not repeat.
        local until_ms = loop:now() + 30
        helpers.run_until(loop, function() return loop:now() >= until_ms end, 200)
        assert.equals(1, once)
        assert.equals(5, every)
        assert.is_false(t2:is_active())
        t1:close()
        t2:close()
    end)

    it("passes the timer itself to its callback, and closes from inside it", function()
        local got
        local t = assert(loop:timer("self"))
        t:start(1, 1, function(self)
            got = self
            self:close()
        end)
        assert.is_true(helpers.run_until(loop, function() return got ~= nil end))
        assert.equals(t, got)
        loop:step()
        assert.is_true(t:is_closed())
    end)

    it("raises on use after close, and close is idempotent", function()
        local t = assert(loop:timer())
        t:close()
        t:close()
        assert.has_error(function() t:start(1, 0, function() end) end)
        assert.has_error(function() t:start(-1, 0, function() end) end)
    end)

    it("logs an error raised by a callback with its traceback and keeps running", function()
        local lines = {}
        loop:set_log_sink(function(level, component, msg)
            lines[#lines + 1] = { level = level, component = component, msg = msg }
        end)
        local before = core.callback_errors()
        local ticks = 0
        local bad = assert(loop:timer("bad-plugin"))
        local good = assert(loop:timer("good"))
        bad:start(1, 0, function() error("boom from a timer") end)
        good:start(1, 1, function() ticks = ticks + 1 end)
        assert.is_true(helpers.run_until(loop, function() return ticks >= 5 end))
        assert.equals(before + 1, core.callback_errors())
        local found
        for _, line in ipairs(lines) do
            if line.msg:find("boom from a timer", 1, true) then
                found = line
            end
        end
        assert.is_not_nil(found)
        assert.equals("error", found.level)
        assert.equals("bad-plugin", found.component)
        assert.matches("stack traceback", found.msg)
        bad:close()
        good:close()
    end)

    it("reports non-string errors instead of losing them", function()
        local reported
        core.set_error_handler(function(who, msg) reported = { who = who, msg = msg } end)
        local t = assert(loop:timer("table-error"))
        t:start(1, 0, function() error({ code = 42 }) end)
        assert.is_true(helpers.run_until(loop, function() return reported ~= nil end))
        assert.equals("table-error", reported.who)
        assert.matches("error object is a table value", reported.msg)
    end)

    it("falls back to the logger when the error handler itself throws", function()
        local lines = {}
        loop:set_log_sink(function(_, _, msg) lines[#lines + 1] = msg end)
        core.set_error_handler(function() error("handler broke") end)
        local t = assert(loop:timer("x"))
        t:start(1, 0, function() error("original") end)
        assert.is_true(helpers.run_until(loop, function() return #lines > 0 end))
        assert.matches("handler broke", lines[1])
        assert.matches("original", lines[1])
    end)

    it("filters log lines by level and restores stderr when the sink is removed", function()
        local lines = {}
        loop:set_log_sink(function(level, component, msg)
            lines[#lines + 1] = level .. " " .. component .. " " .. msg
        end)
        loop:set_log_level("warn")
        assert.equals("warn", loop:get_log_level())
        loop:log("info", "spec", "hidden")
        loop:log("warn", "spec", "shown")
        loop:log("error", "spec", "also shown")
        assert.same({ "warn spec shown", "error spec also shown" }, lines)
        assert.has_error(function() loop:log("loud", "spec", "x") end)
        loop:set_log_sink(nil)
        loop:log("error", "spec", "to stderr") -- must not reach the old sink
        assert.equals(2, #lines)
    end)

    it("survives a log sink that throws, without recursing", function()
        local calls = 0
        loop:set_log_sink(function()
            calls = calls + 1
            error("sink broke")
        end)
        loop:log("error", "spec", "message")
        assert.equals(1, calls)
    end)

    it("delivers messages logged on other threads through the event queue", function()
        local result
        loop:queue_probe(4, 10000, function(r) result = r end)
        assert.is_true(helpers.run_until(loop, function() return result ~= nil end, 10000))
        assert.equals(40000, result.received)
        assert.equals(0, result.missing)
        assert.equals(0, result.out_of_order)
        assert.equals(0, result.duplicates)
        assert.is_true(result.wakeups >= 1 and result.wakeups <= 40000)
    end)

    it("rejects a queue probe outside its bounds with a clear error", function()
        assert.has_error(function() loop:queue_probe(0, 10, function() end) end)
        assert.has_error(function() loop:queue_probe(2, 0, function() end) end)
    end)

    it("delivers a signal to its callback on the loop", function()
        local got
        local sig = assert(loop:signal("usr1"))
        assert.is_true(sig:start("SIGUSR1", function(_, name) got = name end))
        os.execute("kill -USR1 " .. core.getpid())
        assert.is_true(helpers.run_until(loop, function() return got ~= nil end))
        assert.equals("SIGUSR1", got)
        sig:close()
        assert.has_error(function() sig:start("SIGNOPE", function() end) end)
    end)

    it("closes open handles when the loop closes", function()
        local t = assert(loop:timer())
        t:start(10000, 0, function() end)
        local s = assert(loop:signal())
        s:start("SIGUSR2", function() end)
        assert.is_true(loop:close())
        assert.is_true(t:is_closed())
        assert.is_true(s:is_closed())
        assert.is_true(loop:is_closed())
        assert.is_true(loop:close()) -- idempotent
        assert.has_error(function() loop:run() end)
        assert.has_error(function() loop:timer() end)
    end)

    it("refuses to run a loop from inside its own callback", function()
        local err
        local t = assert(loop:timer())
        t:start(1, 0, function()
            local ok, e = pcall(loop.run, loop)
            err = not ok and e
        end)
        assert.is_true(helpers.run_until(loop, function() return err ~= nil end))
        assert.matches("already running", err)
        t:close()
    end)

    it("lets the collector take stopped handles and unused loops", function()
        for _ = 1, 200 do
            local t = assert(loop:timer())
            t:start(1000, 0, function() end)
            t:stop()
        end
        for _ = 1, 20 do
            assert(core.new_loop())
        end
        collectgarbage()
        collectgarbage()
        loop:step() -- the core frees the closed timers
        local fired = false
        local t = assert(loop:timer())
        t:start(1, 0, function() fired = true end)
        assert.is_true(helpers.run_until(loop, function() return fired end))
    end)

    it("keeps an active timer alive without a Lua reference", function()
        local fired = false
        do
            local t = assert(loop:timer())
            t:start(20, 0, function() fired = true end)
        end
        collectgarbage()
        collectgarbage()
        assert.is_true(helpers.run_until(loop, function() return fired end))
    end)

    it("returns error tuples for runtime failures", function()
        -- A signal number the kernel refuses.
        local s = assert(loop:signal())
        local ok, err, name = s:start(99, function() end)
        assert.is_nil(ok)
        assert.equals("EINVAL", name)
        assert.matches("^EINVAL: ", err)
        s:close()
    end)
end)
