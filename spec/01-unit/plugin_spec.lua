-- The plugin host: the contract, loading, hot reload that keeps the old
-- version on any failure, state hand-over, release of what an instance held,
-- events held during a swap, and the restricted require.
local helpers = require "spec.helpers"
local plugins = require "spec.support.plugins"

local function fire(rt, n, first)
    for i = 1, n do
        rt:emit("ServiceInstancesChanged", { service_name = "app", instances = {}, seq = first + i - 1 })
    end
end

describe("the plugin host", function()
    local root, rt

    before_each(function()
        root = plugins.root()
        rt = plugins.runtime(root)
    end)

    after_each(function()
        rt:close()
    end)

    it("loads a plugin by kind/name and publishes it", function()
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        local seen = plugins.record(rt, { "PluginLoaded" })
        local mod = assert(rt:load_plugin("listener/counter"))
        assert.equals("1.0.0", mod.version)
        assert.equals(mod, rt.plugins:get("listener/counter"))
        assert.equals(mod, package.loaded["disco.plugins.listener.counter"])
        assert.equals("listener/counter", seen[1].name)
        assert.equals("1.0.0", seen[1].version)
        fire(rt, 3, 1)
        assert.equals(3, mod.state().count)
        local list = rt.plugins:list()
        assert.equals(1, #list)
        assert.equals("listener", list[1].kind)
        assert.equals(1, list[1].resources) -- its one subscription
        assert.equals(1, rt.plugins.stats.loaded)
    end)

    it("explains what it could not load", function()
        local ok, err = rt:load_plugin("listener/absent")
        assert.is_nil(ok)
        assert.matches("plugin 'listener/absent' not found %(looked for listener/absent.lua in "
                       .. root:gsub("%p", "%%%0"), err)
        ok, err = rt:load_plugin("nonsense")
        assert.is_nil(ok)
        assert.matches('named as "kind/name"', err)
        ok, err = rt:load_plugin("weird/thing")
        assert.is_nil(ok)
        assert.matches("unknown plugin kind 'weird'", err)
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        assert(rt:load_plugin("listener/counter"))
        ok, err = rt:load_plugin("listener/counter")
        assert.is_nil(ok)
        assert.matches("loaded already", err)
    end)

    describe("checks the contract", function()
        local cases = {
            { "no version", 'return { name = "p", kind = "listener", init = function() end }',
              "field 'version' must be a string \"x.y.z\"" },
            { "a bad version", 'return { name = "p", version = "1.0", kind = "listener", init = function() end }',
              "field 'version'" },
            { "another name", 'return { name = "q", version = "1.0.0", kind = "listener", init = function() end }',
              "field 'name' is 'q' but the file is listener/p.lua" },
            { "another kind", 'return { name = "p", version = "1.0.0", kind = "health", init = function() end }',
              "field 'kind' is 'health'" },
            { "no init", 'return { name = "p", version = "1.0.0", kind = "listener" }',
              "function 'init' is missing" },
            { "a non-function hook",
              'return { name = "p", version = "1.0.0", kind = "listener", init = function() end, save = 1 }',
              "'save' must be a function" },
            { "no table", "return 42", "must return a table, got number" },
            { "a syntax error", "return {", "compile failed" },
            { "an error at load", "error('load time boom')", "load time boom" },
        }
        for _, case in ipairs(cases) do
            it("refuses " .. case[1], function()
                plugins.write(root, "listener/p", case[2])
                local ok, err = rt:load_plugin("listener/p")
                assert.is_nil(ok)
                assert.matches(case[3], err, 1, true)
                assert.is_nil(rt.plugins:get("listener/p"))
            end)
        end

        it("requires the hooks of the plugin's kind", function()
            plugins.write(root, "mapping/static",
                          'return { name = "static", version = "1.0.0", kind = "mapping", init = function() end }')
            local ok, err = rt:load_plugin("mapping/static")
            assert.is_nil(ok)
            assert.matches("a mapping plugin must define the function 'resolve'", err)
        end)
    end)

    it("carries state across a reload with save and restore", function()
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        assert(rt:load_plugin("listener/counter"))
        fire(rt, 5, 1)
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.1.0"))
        local seen = plugins.record(rt, { "PluginReloaded" })
        assert.is_true(rt:reload("listener/counter"))
        local mod = rt.plugins:get("listener/counter")
        assert.equals("1.1.0", mod.version)
        fire(rt, 2, 6)
        assert.equals(7, mod.state().count)
        assert.same({ 1, 2, 3, 4, 5, 6, 7 }, mod.state().seqs)
        assert.equals("1.0.0", seen[1].old_version)
        assert.equals("1.1.0", seen[1].version)
        assert.equals(mod, package.loaded["disco.plugins.listener.counter"])
    end)

    describe("keeps the old version running when the new one", function()
        local failures = {
            { "has a syntax error", "return {", "compile" },
            { "misses a field", 'return { name = "counter", kind = "listener", init = function() end }',
              "contract" },
            { "fails check_config",
              plugins.counter("counter", "2.0.0",
                              "function M.check_config(conf) return false, 'limit must be set' end"),
              "config" },
            { "throws in check_config",
              plugins.counter("counter", "2.0.0", "function M.check_config(conf) error('cfg boom') end"),
              "config" },
            { "throws in init",
              'return { name = "counter", version = "2.0.0", kind = "listener", '
              .. 'init = function(ctx) ctx:every(1, function() end) error("init boom") end }',
              "init" },
            { "throws in restore",
              plugins.counter("counter", "2.0.0", "M.restore = function() error('restore boom') end"),
              "restore" },
        }
        for _, case in ipairs(failures) do
            it(case[1], function()
                plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
                local old = assert(rt:load_plugin("listener/counter"))
                fire(rt, 2, 1)
                plugins.write(root, "listener/counter", case[2])
                local failed = plugins.record(rt, { "PluginReloadFailed" })
                local ok, err = rt:reload("listener/counter")
                assert.is_nil(ok)
                assert.matches("not reloaded: " .. case[3] .. " failed; version 1.0.0 keeps running", err)
                assert.equals(case[3], failed[1].stage)
                -- The old instance is current and still counting, exactly once.
                assert.equals(old, rt.plugins:get("listener/counter"))
                fire(rt, 3, 3)
                assert.equals(5, old.state().count)
                assert.same({ 1, 2, 3, 4, 5 }, old.state().seqs)
                assert.equals(1, rt.plugins:list()[1].resources)
                assert.equals(1, rt.plugins.stats.failed)
                -- The log line names the plugin and keeps the traceback.
                local line = rt.logged[#rt.logged]
                assert.equals("error", line.level)
                assert.equals("plugins", line.component)
                assert.matches("plugin 'listener/counter' not reloaded", line.message)
                if case[3] == "init" or case[3] == "restore" then
                    assert.matches("stack traceback", line.message)
                end
            end)
        end

        it("throws in save", function()
            plugins.write(root, "listener/counter",
                          plugins.counter("counter", "1.0.0", "M.save = function() error('save boom') end"))
            local old = assert(rt:load_plugin("listener/counter"))
            plugins.write(root, "listener/counter", plugins.counter("counter", "2.0.0"))
            local ok, err = rt:reload("listener/counter")
            assert.is_nil(ok)
            assert.matches("save failed", err)
            assert.matches("save boom", err)
            assert.equals(old, rt.plugins:get("listener/counter"))
        end)
    end)

    it("releases the timers and subscriptions an instance leaked", function()
        -- v1 starts a timer it never stops; each tick is an event tagged v1.
        plugins.write(root, "listener/leaky", [[
            return { name = "leaky", version = "1.0.0", kind = "listener",
                init = function(ctx)
                    ctx:every(2, function()
                        ctx:emit("ServiceDiscoveryException", { error = "tick", from = "v1" })
                    end)
                    ctx:on("*", function() end)
                end }
        ]])
        local ticks = 0
        rt:on("ServiceDiscoveryException", function(event)
            if event.from == "v1" then ticks = ticks + 1 end
        end)
        assert(rt:load_plugin("listener/leaky"))
        assert.equals(2, rt.plugins:list()[1].resources)
        assert.is_true(helpers.run_until(rt, function() return ticks >= 3 end, 2000))
        plugins.write(root, "listener/leaky",
                      'return { name = "leaky", version = "2.0.0", kind = "listener", init = function() end }')
        assert.is_true(rt:reload("listener/leaky"))
        assert.equals(0, rt.plugins:list()[1].resources)
        local after = ticks
        local until_ms = rt:now() + 40
        helpers.run_until(rt, function() return rt:now() >= until_ms end, 500)
        assert.equals(after, ticks)
    end)

    it("releases the timers of a new instance whose init failed", function()
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        assert(rt:load_plugin("listener/counter"))
        local ticks = 0
        rt:on("ServiceDiscoveryException", function() ticks = ticks + 1 end)
        plugins.write(root, "listener/counter", [[
            return { name = "counter", version = "2.0.0", kind = "listener",
                init = function(ctx)
                    ctx:every(1, function() ctx:emit("ServiceDiscoveryException", { error = "x" }) end)
                    error("init boom")
                end }
        ]])
        assert.is_nil(rt:reload("listener/counter"))
        local until_ms = rt:now() + 30
        helpers.run_until(rt, function() return rt:now() >= until_ms end, 500)
        assert.equals(0, ticks)
    end)

    it("delivers events that reach a plugin during a swap once, to the new instance", function()
        -- v2's init and restore each emit an event that v1 and v2 listen to.
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        local old = assert(rt:load_plugin("listener/counter"))
        plugins.write(root, "listener/counter", plugins.counter("counter", "2.0.0", [[
            local base_init, base_restore = M.init, M.restore
            function M.init(ctx, conf)
                base_init(ctx, conf)
                ctx:emit("ServiceInstancesChanged", { service_name = "x", instances = {}, seq = 100 })
                M.ctx = ctx
            end
            function M.restore(s)
                base_restore(s)
                M.ctx:emit("ServiceInstancesChanged", { service_name = "x", instances = {}, seq = 101 })
            end
        ]]))
        fire(rt, 1, 1)
        assert.is_true(rt:reload("listener/counter"))
        local new = rt.plugins:get("listener/counter")
        assert.same({ 1, 100, 101 }, new.state().seqs)
        assert.equals(3, new.state().count)
        assert.is_not.equal(old, new)
    end)

    it("lets a plugin require its own submodules and disco modules, nothing else", function()
        plugins.write(root, "listener/parts/util.lua", 'return { answer = function() return 41 end }')
        plugins.write(root, "listener/parts", [[
            local util = require "listener.parts.util"
            local log = require "disco.log"
            return { name = "parts", version = "1.0.0", kind = "listener",
                init = function() end,
                answer = function() return util.answer() end, has_log = log ~= nil }
        ]])
        local mod = assert(rt:load_plugin("listener/parts"))
        assert.equals(41, mod.answer())
        assert.is_true(mod.has_log)
        local util = package.loaded["disco.plugins.listener.parts.util"]
        assert.is_table(util)
        -- A reload compiles the submodule afresh.
        plugins.write(root, "listener/parts/util.lua", 'return { answer = function() return 42 end }')
        assert.is_true(rt:reload("listener/parts"))
        assert.equals(42, rt.plugins:get("listener/parts").answer())
        assert.is_not.equal(util, package.loaded["disco.plugins.listener.parts.util"])

        plugins.write(root, "listener/greedy", [[
            local core = require "disco.core"
            return { name = "greedy", version = "1.0.0", kind = "listener", init = function() end }
        ]])
        local ok, err = rt:load_plugin("listener/greedy")
        assert.is_nil(ok)
        assert.matches("may not require 'disco.core'", err)
    end)

    it("stops a sandboxed plugin from running commands or setting globals", function()
        plugins.write(root, "listener/evil", [[
            return { name = "evil", version = "1.0.0", kind = "listener",
                init = function() os.execute("touch /tmp/disco-evil") end }
        ]])
        local ok, err = rt:load_plugin("listener/evil")
        assert.is_nil(ok)
        assert.matches("init failed", err)
        assert.matches("execute", err)
        plugins.write(root, "listener/global", [[
            return { name = "global", version = "1.0.0", kind = "listener",
                init = function() leaked = true end }
        ]])
        ok, err = rt:load_plugin("listener/global")
        assert.is_nil(ok)
        assert.matches("may not set the global 'leaked'", err)
        assert.is_nil(rawget(_G, "leaked"))
    end)

    it("calls hooks in protected mode", function()
        plugins.write(root, "mapping/static", [[
            return { name = "static", version = "1.0.0", kind = "mapping", init = function() end,
                resolve = function(id)
                    if id == "bad" then error("no mapping for bad") end
                    return { "app-" .. id }
                end }
        ]])
        assert(rt:load_plugin("mapping/static"))
        local ok, apps = rt.plugins:call("mapping/static", "resolve", "x")
        assert.is_true(ok)
        assert.same({ "app-x" }, apps)
        local failed, err = rt.plugins:call("mapping/static", "resolve", "bad")
        assert.is_nil(failed)
        assert.matches("no mapping for bad", err)
        assert.is_nil((rt.plugins:call("mapping/static", "nope")))
    end)

    it("finds the plugins shipped in ./plugins by default", function()
        local disco = require "disco"
        local own = disco.runtime({ plugin_watch = false })
        local lines = {}
        own.loop:set_log_sink(function(level, component, message)
            lines[#lines + 1] = { level, component, message }
        end)
        local ok, err = own:load_plugin("listener/log_changes", { level = "loud" })
        assert.is_nil(ok)
        assert.matches("level must be one of", err)
        assert(own:load_plugin("listener/log_changes", { level = "warn" }))
        own:emit("ServiceInstancesChanged", { service_name = "shop", instances = { {}, {} } })
        local last = lines[#lines]
        assert.same({ "warn", "plugin listener/log_changes", "shop: 2 instance(s)" }, last)
        own:close()
    end)

    it("unloads a plugin, releasing what it held", function()
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        local mod = assert(rt:load_plugin("listener/counter"))
        local seen = plugins.record(rt, { "PluginUnloaded" })
        assert.is_true(rt.plugins:unload("listener/counter"))
        fire(rt, 2, 1)
        assert.equals(0, mod.state().count)
        assert.equals("listener/counter", seen[1].name)
        assert.is_nil(package.loaded["disco.plugins.listener.counter"])
        assert.is_nil(rt.plugins:get("listener/counter"))
    end)
end)
