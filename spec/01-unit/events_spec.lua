-- disco.events: event construction, listener order, isolation, vetoes,
-- cancellation, re-entrancy, the nesting limit, deferred dispatch and close.
local core = require "disco.core"
local events = require "disco.events"
local helpers = require "spec.helpers"
local log = require "disco.log"

-- A logger stand-in that records what it is asked to log, formatted.
local function fake_log()
    local fake = { lines = {} }
    for level in pairs(log.LEVELS) do
        fake[level] = function(self, fmt, ...)
            self.lines[#self.lines + 1] = { level = level, msg = string.format(fmt, ...) }
        end
    end
    return fake
end

local INSTANCE = { name = "app", host = "127.0.0.1", port = 20880 }

describe("disco.events", function()
    local loop

    before_each(function()
        loop = assert(core.new_loop())
    end)

    after_each(function()
        if not loop:is_closed() then
            assert.is_true(loop:close())
        end
    end)

    describe("types and events", function()
        it("describes every type with its required fields and vetoability", function()
            local count, pre = 0, {}
            for name, spec in pairs(events.TYPES) do
                count = count + 1
                assert.equals("table", type(spec.required), name)
                assert.equals("boolean", type(spec.pre), name)
                if spec.pre then
                    pre[#pre + 1] = name
                end
            end
            table.sort(pre)
            assert.equals(22, count)
            assert.same({ "ServiceInstancePreRegistered", "ServiceInstancePreUnregistered" }, pre)
            assert.is_true(events.is_pre("ServiceInstancePreRegistered"))
            assert.is_false(events.is_pre("ServiceInstanceRegistered"))
            assert.same({ "name", "reason", "stage" }, events.TYPES.PluginReloadFailed.required)
            assert.has_error(function() events.is_pre("ServiceInstancePreRegisterd") end,
                             "unknown event type 'ServiceInstancePreRegisterd'")
        end)

        it("builds a fresh event with type and time from the clock", function()
            local real_clock = events.clock
            events.clock = function() return 1234 end
            local fields = { instance = INSTANCE, extra = "kept" }
            local ok, event = pcall(events.new, "ServiceInstanceRegistered", fields)
            events.clock = real_clock
            assert.is_true(ok, event)
            assert.equals("ServiceInstanceRegistered", event.type)
            assert.equals(1234, event.time)
            assert.equals(INSTANCE, event.instance)
            assert.equals("kept", event.extra)
            assert.are_not.equal(fields, event)
            assert.is_nil(fields.type) -- the caller's table is not touched
            -- The default clock is the wall clock in milliseconds.
            local t = events.new("ServiceDestroyed").time
            assert.is_true(math.abs(t - os.time() * 1000) <= 2000)
        end)

        it("raises on an unknown type, a missing field or bad fields, at the caller", function()
            local ok, err = pcall(events.new, "ServiceInstanceRegisterd", { instance = INSTANCE })
            assert.is_false(ok)
            assert.matches("unknown event type 'ServiceInstanceRegisterd'", err, 1, true)
            assert.has_error(function() events.new(42) end, "event type must be a string, got number")
            assert.has_error(function() events.new("ServiceInstancesChanged", { service_name = "app" }) end,
                             "event ServiceInstancesChanged requires the field 'instances'")
            assert.has_error(function() events.new("PluginUnloaded") end,
                             "event PluginUnloaded requires the field 'name'")
            assert.has_error(function() events.new("ServiceDestroyed", "x") end,
                             "event fields must be a table, got string")
            -- The message names the line that made the mistake, not events.lua.
            err = select(2, pcall(function() events.new("Nope") end))
            assert.matches("events_spec.lua:%d+:", err)
            -- `false` is a value: a plugin without a version can still load.
            assert.equals(false, events.new("PluginLoaded", { name = "p", version = false }).version)
        end)
    end)

    describe("dispatcher", function()
        local d

        after_each(function()
            if d then
                d:close()
                d = nil
            end
        end)

        it("raises on unknown types and bad listeners or options", function()
            d = events.dispatcher()
            assert.has_error(function() d:on("Nope", function() end) end, "unknown event type 'Nope'")
            assert.has_error(function() d:on("ServiceDestroyed", "f") end,
                             "listener must be a function, got string")
            assert.has_error(function() d:on("ServiceDestroyed", function() end, { priority = "high" }) end,
                             "listener priority must be a number, got string")
            assert.has_error(function() d:on("ServiceDestroyed", function() end, { prio = 1 }) end,
                             "unknown listener option 'prio'")
            assert.has_error(function() d:emit("Nope", {}) end, "unknown event type 'Nope'")
            assert.has_error(function() d:dispatch({ type = "Nope" }) end, "unknown event type 'Nope'")
            assert.has_error(function() d:dispatch("ServiceDestroyed") end, "event must be a table, got string")
            assert.has_error(function() d:emit("ServiceDestroyed", {}, { defered = true }) end,
                             "unknown dispatch option 'defered'")
            assert.has_error(function() events.dispatcher({ max_depth = 0 }) end,
                             "max_depth must be a positive integer, got 0")
            assert.has_error(function() events.dispatcher({ lop = loop }) end,
                             "unknown dispatcher option 'lop'")
            local err = select(2, pcall(function() d:emit("ServiceInstanceRegistered", {}) end))
            assert.matches("events_spec.lua:%d+: event ServiceInstanceRegistered requires the field 'instance'",
                           err)
        end)

        it("stamps emitted events with the loop's clock", function()
            d = events.dispatcher({ loop = loop })
            local got
            d:on("ServiceDestroyed", function(event) got = event end)
            assert.is_true(d:emit("ServiceDestroyed", { why = "test" }))
            assert.equals("ServiceDestroyed", got.type)
            assert.equals(loop:now(), got.time)
            assert.equals("test", got.why)
            assert.equals(1, d.stats.dispatched)
        end)

        it("runs listeners by priority, then registration order, with '*' merged in", function()
            d = events.dispatcher()
            local trace = {}
            local function record(tag)
                return function() trace[#trace + 1] = tag end
            end
            d:on("ServiceDestroyed", record("a0"))
            d:on("*", record("star5"), { priority = 5 })
            d:on("ServiceDestroyed", record("b10"), { priority = 10 })
            d:on("ServiceDestroyed", record("c5"), { priority = 5 })
            d:on("*", record("star0"))
            d:on("ServiceDestroyed", record("d-1"), { priority = -1 })
            d:on("ShutdownHookRegistered", record("other"), { priority = 100 })
            d:emit("ServiceDestroyed")
            assert.same({ "b10", "star5", "c5", "a0", "star0", "d-1" }, trace)
            trace = {}
            d:emit("ServiceDiscoveryInitialized")
            assert.same({ "star5", "star0" }, trace)
        end)

        it("names a listener after where it was defined unless told", function()
            d = events.dispatcher()
            local function listener() end
            local line = debug.getinfo(listener, "S").linedefined
            local sub = d:on("ServiceDestroyed", listener)
            assert.matches("events_spec%.lua:" .. line .. "$", sub.name)
            assert.equals("mine", d:on("*", listener, { name = "mine" }).name)
            assert.is_true(sub.active)
            assert.equals(0, sub.errors)
        end)

        it("isolates a listener that raises: logged with name and traceback, counted, the rest run", function()
            loop:set_log_level("info")
            local lines = {}
            loop:set_log_sink(function(level, component, msg)
                lines[#lines + 1] = { level = level, component = component, msg = msg }
            end)
            d = events.dispatcher({ loop = loop, log = log.new(loop, "events") })
            local ran = {}
            d:on("ServiceDiscoveryException", function() ran[#ran + 1] = "first" end, { priority = 2 })
            local bad = d:on("ServiceDiscoveryException", function()
                error("listener exploded")
            end, { priority = 1, name = "bad-listener" })
            d:on("ServiceDiscoveryException", function() ran[#ran + 1] = "last" end)
            assert.is_true(d:emit("ServiceDiscoveryException", { error = "EIO: x" }))
            assert.is_true(d:emit("ServiceDiscoveryException", { error = "EIO: y" }))
            assert.same({ "first", "last", "first", "last" }, ran)
            assert.equals(2, bad.errors)
            assert.equals(2, d.stats.listener_errors)
            assert.equals(2, #lines)
            local line = lines[1]
            assert.equals("error", line.level)
            assert.equals("events", line.component)
            assert.matches("bad-listener", line.msg, 1, true)
            assert.matches("ServiceDiscoveryException", line.msg, 1, true)
            assert.matches("listener exploded", line.msg, 1, true)
            assert.matches("stack traceback", line.msg, 1, true)
            assert.matches("events_spec.lua", line.msg, 1, true)
        end)

        it("writes listener failures to stderr without a logger, or when the logger fails", function()
            local written = {}
            local real_stderr = io.stderr
            -- The dispatcher looks io.stderr up when it writes, so that a host
            -- redirecting it (and this spec) is honoured.
            -- luacheck: push ignore 122
            io.stderr = { write = function(_, s) written[#written + 1] = s end }
            local ok, err = pcall(function()
                d = events.dispatcher()
                d:on("ServiceDestroyed", function() error({ code = 1 }) end, { name = "tabled" })
                d:emit("ServiceDestroyed")
                local broken = events.dispatcher({ log = { error = function() error("log down") end } })
                broken:on("ServiceDestroyed", function() error("boom") end, { name = "second" })
                broken:emit("ServiceDestroyed")
            end)
            io.stderr = real_stderr
            -- luacheck: pop
            assert.is_true(ok, err)
            assert.equals(2, #written)
            assert.matches("listener tabled failed on ServiceDestroyed: table: ", written[1], 1, true)
            assert.matches("listener second failed on ServiceDestroyed: .*boom", written[2])
        end)

        it("lets a Pre listener veto: later listeners do not run", function()
            local flog = fake_log()
            loop:set_log_level("debug")
            d = events.dispatcher({ log = flog })
            local ran = {}
            d:on("ServiceInstancePreRegistered", function(event)
                ran[#ran + 1] = "add-metadata"
                event.instance.metadata = { zone = "a" }
            end, { priority = 10 })
            d:on("ServiceInstancePreRegistered", function()
                ran[#ran + 1] = "port-check"
                return false, "port 20880 is taken"
            end, { name = "port-check" })
            d:on("*", function() ran[#ran + 1] = "after" end, { priority = -1 })
            local inst = { name = "app" }
            local ok, reason, by = d:emit("ServiceInstancePreRegistered", { instance = inst })
            assert.is_false(ok)
            assert.equals("port 20880 is taken", reason)
            assert.equals("port-check", by)
            assert.same({ "add-metadata", "port-check" }, ran)
            assert.same({ zone = "a" }, inst.metadata) -- listeners share the instance
            assert.equals(1, d.stats.vetoes)
            -- A veto without a reason still explains itself.
            d:on("ServiceInstancePreUnregistered", function() return false end, { name = "silent" })
            ok, reason, by = d:emit("ServiceInstancePreUnregistered", { instance = inst })
            assert.is_false(ok)
            assert.equals("vetoed by silent", reason)
            assert.equals("silent", by)
            assert.equals(2, d.stats.vetoes)
        end)

        it("does not take a raise on a Pre event, or nil/other returns, as a veto", function()
            d = events.dispatcher({ log = fake_log() })
            local ran = {}
            local bad = d:on("ServiceInstancePreRegistered", function() error("oops") end, { priority = 3 })
            d:on("ServiceInstancePreRegistered", function()
                ran[#ran + 1] = "nil"
                return nil, "not a veto"
            end, { priority = 2 })
            d:on("ServiceInstancePreRegistered", function()
                ran[#ran + 1] = "true"
                return true
            end, { priority = 1 })
            d:on("ServiceInstancePreRegistered", function() ran[#ran + 1] = "last" end)
            local ok, reason, by = d:emit("ServiceInstancePreRegistered", { instance = INSTANCE })
            assert.is_true(ok)
            assert.is_nil(reason)
            assert.is_nil(by)
            assert.same({ "nil", "true", "last" }, ran)
            assert.equals(1, bad.errors)
            assert.equals(0, d.stats.vetoes)
        end)

        it("ignores return values for non-Pre events", function()
            d = events.dispatcher()
            local ran = 0
            d:on("ServiceInstanceRegistered", function() ran = ran + 1; return false, "no" end, { priority = 1 })
            d:on("ServiceInstanceRegistered", function() ran = ran + 1 end)
            local ok, reason, by = d:emit("ServiceInstanceRegistered", { instance = INSTANCE })
            assert.is_true(ok)
            assert.is_nil(reason)
            assert.is_nil(by)
            assert.equals(2, ran)
            assert.equals(0, d.stats.vetoes)
        end)

        it("cancels listeners, idempotently, even during a dispatch", function()
            d = events.dispatcher()
            local calls = { a = 0, b = 0, c = 0 }
            local sub_c
            local sub_a = d:on("ServiceDestroyed", function()
                calls.a = calls.a + 1
                sub_c:cancel() -- c comes later in this very dispatch
            end, { priority = 2 })
            d:on("ServiceDestroyed", function() calls.b = calls.b + 1 end, { priority = 1 })
            sub_c = d:on("ServiceDestroyed", function() calls.c = calls.c + 1 end)
            d:emit("ServiceDestroyed")
            assert.same({ a = 1, b = 1, c = 0 }, calls)
            assert.is_false(sub_c.active)
            sub_a:cancel()
            sub_a:cancel()
            assert.is_false(sub_a.active)
            d:emit("ServiceDestroyed")
            assert.same({ a = 1, b = 2, c = 0 }, calls)
            -- Cancelling a '*' listener affects every type.
            local star = 0
            local sub_star = d:on("*", function() star = star + 1 end)
            d:emit("ServiceDestroyed")
            sub_star:cancel()
            d:emit("ServiceDestroyed")
            d:emit("ShutdownHookRegistered")
            assert.equals(1, star)
        end)

        it("does not call listeners added during a dispatch until the next one", function()
            d = events.dispatcher()
            local late = 0
            local added = false
            d:on("ServiceDestroyed", function()
                if not added then
                    added = true
                    d:on("ServiceDestroyed", function() late = late + 1 end, { priority = 100 })
                    d:on("*", function() late = late + 1 end)
                end
            end)
            d:emit("ServiceDestroyed")
            assert.equals(0, late)
            d:emit("ServiceDestroyed")
            assert.equals(2, late)
        end)

        it("runs a nested dispatch to completion before the outer one continues", function()
            d = events.dispatcher()
            local trace = {}
            d:on("ServiceDiscoveryInitializing", function()
                trace[#trace + 1] = "A1"
                assert.is_true(d:emit("ServiceDiscoveryInitialized"))
            end, { priority = 1 })
            d:on("ServiceDiscoveryInitializing", function() trace[#trace + 1] = "A2" end)
            d:on("ServiceDiscoveryInitialized", function() trace[#trace + 1] = "B" end)
            d:on("ServiceDiscoveryInitialized", function()
                trace[#trace + 1] = "B2"
                return false -- not a Pre type: ignored
            end, { priority = -1 })
            assert.is_true(d:emit("ServiceDiscoveryInitializing"))
            assert.same({ "A1", "B", "B2", "A2" }, trace)
            assert.equals(2, d.stats.dispatched)
        end)

        it("returns a nested veto to the listener that asked", function()
            d = events.dispatcher()
            local seen
            d:on("ServiceInstancePreRegistered", function() return false, "nested no" end, { name = "v" })
            d:on("ServiceConfigExported", function()
                seen = { d:emit("ServiceInstancePreRegistered", { instance = INSTANCE }) }
            end)
            assert.is_true(d:emit("ServiceConfigExported", { service = {} }))
            assert.same({ false, "nested no", "v" }, seen)
        end)

        it("stops runaway recursion at max_depth and carries on", function()
            local flog = fake_log()
            d = events.dispatcher({ log = flog, max_depth = 5 })
            local calls = 0
            local sub = d:on("ServiceDestroyed", function()
                calls = calls + 1
                d:emit("ServiceDestroyed")
            end, { name = "loop-maker" })
            assert.is_true(d:emit("ServiceDestroyed"))
            assert.equals(5, calls)
            assert.equals(1, sub.errors)
            assert.equals(1, #flog.lines)
            assert.matches("event dispatch nested deeper than 5", flog.lines[1].msg, 1, true)
            assert.matches("loop-maker", flog.lines[1].msg, 1, true)
            -- The depth was unwound: the same nesting works again.
            sub:cancel()
            local depth = 0
            local function nest()
                depth = depth + 1
                if depth < 5 then
                    d:emit("ShutdownHookRegistered")
                end
            end
            d:on("ShutdownHookRegistered", nest)
            assert.is_true(d:emit("ShutdownHookRegistered"))
            assert.equals(5, depth)
            assert.equals(1, d.stats.listener_errors)
        end)

        it("stops runaway recursion at the default depth of 32", function()
            local flog = fake_log()
            d = events.dispatcher({ log = flog })
            local calls = 0
            d:on("*", function(event)
                calls = calls + 1
                d:emit(event.type)
            end)
            assert.is_true(d:emit("ServiceDestroyed"))
            assert.equals(32, calls)
            assert.equals(1, d.stats.listener_errors)
            assert.matches("nested deeper than 32", flog.lines[1].msg, 1, true)
        end)

        it("defers events to the next loop turn, in FIFO order", function()
            d = events.dispatcher({ loop = loop })
            local trace = {}
            local c_seen_during_b
            d:on("*", function(event)
                trace[#trace + 1] = event.tag
                if event.tag == "A" then
                    assert.is_true(d:emit("ServiceDestroyed", { tag = "C" }, { defer = true }))
                elseif event.tag == "B" then
                    c_seen_during_b = false
                    for _, tag in ipairs(trace) do
                        if tag == "C" then
                            c_seen_during_b = true
                        end
                    end
                end
            end)
            assert.is_true(d:emit("ShutdownHookRegistered", { tag = "A" }, { defer = true }))
            assert.is_true(d:dispatch(events.new("ServiceDestroyed", { tag = "B" }), { defer = true }))
            assert.same({}, trace) -- nothing synchronously
            assert.equals(2, d.stats.deferred)
            assert.equals(0, d.stats.dispatched)
            -- The pending timer keeps the loop alive until the chain is done.
            loop:run()
            assert.same({ "A", "B", "C" }, trace)
            assert.is_false(c_seen_during_b) -- C waited for the turn after A and B
            assert.equals(3, d.stats.deferred)
            assert.equals(3, d.stats.dispatched)
            -- A plain dispatch is synchronous even with opts.
            d:emit("ServiceDestroyed", { tag = "D" }, { defer = false })
            assert.equals("D", trace[4])
        end)

        it("delivers deferred events through run_until as a host would", function()
            d = events.dispatcher({ loop = loop })
            local got = {}
            d:on("PluginLoaded", function(event) got[#got + 1] = event.name end)
            for i = 1, 5 do
                d:emit("PluginLoaded", { name = "p" .. i, version = "1" }, { defer = true })
            end
            assert.equals(0, #got)
            assert.is_true(helpers.run_until(loop, function() return #got == 5 end, 2000))
            assert.same({ "p1", "p2", "p3", "p4", "p5" }, got)
        end)

        it("refuses to defer a Pre event, or without a loop", function()
            d = events.dispatcher({ loop = loop })
            local called = false
            d:on("*", function() called = true end)
            assert.has_error(function()
                d:emit("ServiceInstancePreRegistered", { instance = INSTANCE }, { defer = true })
            end, "cannot defer ServiceInstancePreRegistered: a veto could not reach the caller")
            local no_loop = events.dispatcher()
            assert.has_error(function() no_loop:emit("ServiceDestroyed", {}, { defer = true }) end,
                             "cannot defer ServiceDestroyed: the dispatcher has no loop")
            assert.equals(0, d.stats.deferred)
            helpers.run_until(loop, function() return called end, 20)
            assert.is_false(called)
        end)

        it("delivers 10,000 events to 10 listeners exactly once each", function()
            d = events.dispatcher({ loop = loop })
            local counts = {}
            for i = 1, 10 do
                counts[i] = 0
                d:on(i % 2 == 0 and "*" or "ServiceInstancesChanged", function(event)
                    counts[i] = counts[i] + 1
                    assert(event.service_name == "app")
                end, { priority = i % 3 })
            end
            local fields = { service_name = "app", instances = {} }
            for _ = 1, 10000 do
                d:emit("ServiceInstancesChanged", fields)
            end
            for i = 1, 10 do
                assert.equals(10000, counts[i])
            end
            assert.equals(10000, d.stats.dispatched)
            assert.equals(0, d.stats.listener_errors)
        end)

        it("closes: drops deferred events, stops its timer, refuses further use", function()
            d = events.dispatcher({ loop = loop })
            local called = false
            d:on("*", function() called = true end)
            d:emit("ServiceDestroyed", {}, { defer = true })
            d:close()
            d:close() -- idempotent
            assert.has_error(function() d:emit("ServiceDestroyed") end, "event dispatcher is closed")
            assert.has_error(function() d:dispatch(events.new("ServiceDestroyed")) end,
                             "event dispatcher is closed")
            assert.has_error(function() d:on("*", function() end) end, "event dispatcher is closed")
            -- The timer is gone: the loop has nothing left and returns at once.
            loop:run()
            assert.is_false(loop:alive())
            assert.is_false(called)
        end)

        it("uses one 0 ms timer per turn and closes it on close", function()
            -- A stand-in loop makes the timer's life observable: a real one
            -- gives no way to ask whether a handle was closed.
            local timer = { starts = {}, closed = false, active = false }
            function timer:start(ms, rep, fn)
                self.starts[#self.starts + 1] = { ms, rep }
                self.active, self.fn = true, fn
                return true
            end
            function timer:is_active() return self.active end
            function timer:close() self.closed = true end
            local fake_loop = { names = {} }
            function fake_loop:timer(name)
                self.names[#self.names + 1] = name
                return timer
            end
            fake_loop.now = function() return 7 end
            d = events.dispatcher({ loop = fake_loop })
            local got = {}
            d:on("ServiceDestroyed", function(event) got[#got + 1] = event.tag end)
            for i = 1, 3 do
                d:emit("ServiceDestroyed", { tag = i }, { defer = true })
            end
            assert.same({ "events" }, fake_loop.names)
            assert.same({ { 0, 0 } }, timer.starts)
            timer.active = false
            timer.fn(timer)
            assert.same({ 1, 2, 3 }, got)
            d:emit("ServiceDestroyed", { tag = 4 }, { defer = true })
            assert.equals(2, #timer.starts)
            d:close()
            assert.is_true(timer.closed)
            assert.equals(1, #fake_loop.names)
        end)

        it("finishes the dispatch in progress when a listener closes the dispatcher", function()
            d = events.dispatcher({ loop = loop })
            local trace = {}
            d:on("ServiceDestroyed", function(event)
                trace[#trace + 1] = event.tag
                if event.tag == "1" then
                    d:close()
                end
            end)
            d:on("ServiceDestroyed", function(event) trace[#trace + 1] = event.tag .. "b" end, { priority = -1 })
            d:emit("ServiceDestroyed", { tag = "1" }, { defer = true })
            d:emit("ServiceDestroyed", { tag = "2" }, { defer = true })
            loop:run()
            assert.same({ "1", "1b" }, trace)
        end)
    end)
end)
