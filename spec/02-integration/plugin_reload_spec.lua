-- Hot reload for real: a plugin file edited on disk is reloaded by the
-- file watch without any call, and a plugin reloaded 100 times while 1,000
-- events a second flow through it loses none, duplicates none, and leaves
-- memory flat.
local helpers = require "spec.helpers"
local plugins = require "spec.support.plugins"
local core = require "disco.core"

-- The Lua heap after a full collection. LuaJIT's trace cache is flushed
-- first: each reload compiles new prototypes, and the traces the JIT keeps
-- for the old ones (bounded by its maxtrace setting) are GC objects that
-- would otherwise count as growth although they are the JIT's, not disco's.
local function heap_kib()
    if jit then
        jit.flush()
    end
    collectgarbage()
    collectgarbage()
    return collectgarbage("count")
end

describe("plugin hot reload", function()
    local root, rt

    before_each(function()
        root = plugins.root()
    end)

    after_each(function()
        if rt then
            rt:close()
            rt = nil
        end
    end)

    it("reloads a plugin within a second of its file changing, without a call", function()
        rt = plugins.runtime(root, { plugin_watch = true })
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        assert(rt:load_plugin("listener/counter"))
        local reloaded = plugins.record(rt, { "PluginReloaded" })
        rt:emit("ServiceInstancesChanged", { service_name = "a", instances = {}, seq = 1 })

        local written = core.hrtime()
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.1"))
        assert.is_true(helpers.run_until(rt, function() return #reloaded > 0 end, 1000))
        local took = core.hrtime() - written
        assert.is_true(took < 1000, "reload took " .. took .. " ms")
        local mod = rt.plugins:get("listener/counter")
        assert.equals("1.0.1", mod.version)
        assert.equals(1, mod.state().count) -- state came across
        assert.equals(1, #reloaded)        -- one reload for one edit (debounced)
    end)

    it("keeps the old version when the edited file is broken, and takes the fixed one", function()
        rt = plugins.runtime(root, { plugin_watch = true, plugin_debounce_ms = 50 })
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        assert(rt:load_plugin("listener/counter"))
        local seen = plugins.record(rt, { "PluginReloaded", "PluginReloadFailed" })

        plugins.write(root, "listener/counter", "return { this is not lua")
        assert.is_true(helpers.run_until(rt, function() return #seen > 0 end, 1000))
        assert.equals("PluginReloadFailed", seen[1].type)
        assert.equals("compile", seen[1].stage)
        assert.equals("1.0.0", rt.plugins:get("listener/counter").version)

        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.2"))
        assert.is_true(helpers.run_until(rt, function() return #seen > 1 end, 1000))
        assert.equals("PluginReloaded", seen[2].type)
        assert.equals("1.0.2", rt.plugins:get("listener/counter").version)
    end)

    it("reloads when a submodule changes", function()
        rt = plugins.runtime(root, { plugin_watch = true, plugin_debounce_ms = 50 })
        plugins.write(root, "listener/parts/util.lua", "return { n = 1 }")
        plugins.write(root, "listener/parts", [[
            local util = require "listener.parts.util"
            return { name = "parts", version = "1.0.0", kind = "listener",
                     init = function() end, n = function() return util.n end }
        ]])
        assert(rt:load_plugin("listener/parts"))
        assert.equals(1, rt.plugins:get("listener/parts").n())
        plugins.write(root, "listener/parts/util.lua", "return { n = 2 }")
        assert.is_true(helpers.run_until(rt, function()
            return rt.plugins:get("listener/parts").n() == 2
        end, 1000))
    end)

    it("loses and duplicates no event over 100 reloads at 1,000 events a second, memory flat", function()
        rt = plugins.runtime(root)
        plugins.write(root, "listener/counter", plugins.counter("counter", "1.0.0"))
        assert(rt:load_plugin("listener/counter"))

        -- One event per millisecond, numbered; half of them deferred to the
        -- next loop turn so that some are in flight across a swap.
        local fired = 0
        local source = assert(rt.loop:timer("source"))
        source:start(1, 1, function()
            fired = fired + 1
            rt:emit("ServiceInstancesChanged", { service_name = "a", instances = {}, seq = fired },
                     { defer = fired % 2 == 0 })
        end)

        local reloads, failures = 0, 0
        local baseline
        local reloader = assert(rt.loop:timer("reloader"))
        reloader:start(10, 10, function()
            if reloads == 5 and not baseline then
                -- Measured after a few reloads so that one-time allocations
                -- (compiled closures, interned strings) are out of the figure;
                -- the log lines the spec keeps are not the runtime's memory.
                rt.logged = {}
                baseline = heap_kib()
            end
            if reloads < 105 then
                if rt:reload("listener/counter") then
                    reloads = reloads + 1
                else
                    failures = failures + 1
                end
            end
        end)
        assert.is_true(helpers.run_until(rt, function() return reloads >= 105 end, 20000))
        source:stop()
        reloader:close()
        rt:step() -- deliver the last deferred event
        rt:step()

        local state = rt.plugins:get("listener/counter").state()
        assert.equals(0, failures)
        assert.equals(fired, state.count)
        for i = 1, fired do
            if state.seqs[i] ~= i then
                error(string.format("event %d arrived as %s (lost, duplicated or reordered)",
                                    i, tostring(state.seqs[i])))
            end
        end
        assert.is_true(fired >= 500, "only " .. fired .. " events fired")

        -- The counted sequence numbers and kept log lines are the spec's.
        state.seqs = {}
        rt.logged = {}
        local grown = heap_kib() - baseline
        assert.is_true(grown < 64, string.format("memory grew by %.1f KiB over 100 reloads", grown))
        source:close()
    end)
end)
