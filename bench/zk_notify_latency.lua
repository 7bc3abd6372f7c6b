-- bench/zk_notify_latency.lua: one instance node created -> the consumer's
-- on_change called, beside the raw watch latency (a child watch set with
-- the core's request API, fired by the same create), p50/p99 over COUNT
-- changes, measured in the same run on the same server.
--
--   build/disco run bench/zk_notify_latency.lua [COUNT=1000]
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local disco = require "disco"
local zk_instance = require "disco.registry.zk_instance"

local COUNT = tonumber(arg[1]) or 1000

common.run(rt, function(zk)
    local loop = rt.loop
    local writer = common.session(loop, zk.connect_string)
    local watcher = common.session(loop, zk.connect_string)
    local app = "/services/notify-app"
    local box = {}
    writer:create(app, nil, { parents = true }, function(e) box.done = true; box.err = e end)
    common.wait(loop, function() return box.done end, 10000, "create app")

    -- Raw, with the core's request API and nothing else: (1) the bare child
    -- watch firing; (2) the least a client must do to learn the new
    -- instance with one-shot watches: the watch, a re-list (which re-arms
    -- it) and one getData of the new child.
    local raw, raw_full = {}, {}
    for i = 1, COUNT do
        local fired, learned, armed
        local inst = common.instance("notify-app", i)
        local name = inst.host .. ":" .. inst.port
        watcher:children(app, { watch = function()
            fired = core.hrtime()
            watcher:children(app, nil, function()
                watcher:get(app .. "/" .. name, nil, function() learned = core.hrtime() end)
            end)
        end }, function() armed = true end)
        common.wait(loop, function() return armed end, 10000, "arm")
        local t0 = core.hrtime()
        writer:create(app .. "/" .. name, zk_instance.encode(inst), nil, function() end)
        common.wait(loop, function() return learned end, 10000, "raw watch")
        raw[#raw + 1] = fired - t0
        raw_full[#raw_full + 1] = learned - t0
    end

    -- disco: the consumer's on_change for each new instance.
    local consumer = disco.runtime({ plugin_watch = false, log_level = "error" })
    local registry = assert(consumer:registry("zookeeper://" .. zk.connect_string))
    local size, at = -1, nil
    registry.watch_instances("notify-app", function(_, list)
        size, at = #list, core.hrtime()
    end)
    local function drive(pred, what)
        local deadline = core.hrtime() + 10000
        while not pred() do
            assert(core.hrtime() < deadline, "timed out: " .. what)
            loop:step()
            consumer:step()
        end
    end
    drive(function() return size == COUNT end, "initial list")
    local lat = {}
    for i = COUNT + 1, 2 * COUNT do
        local t0 = core.hrtime()
        local inst = common.instance("notify-app", i)
        writer:create(app .. "/" .. inst.host .. ":" .. inst.port, zk_instance.encode(inst), nil,
                      function() end)
        drive(function() return size == i end, "on_change")
        lat[#lat + 1] = at - t0
    end
    consumer:close()

    local function row(label, list)
        print(string.format("  %-36s p50 %7.3f  p99 %7.3f", label, common.percentile(list, 0.5),
                            common.percentile(list, 0.99)))
    end
    print(string.format("notification latency, %d to %d instances, %d changes (ms):",
                        COUNT, 2 * COUNT, COUNT))
    row("raw: child watch fired", raw)
    row("raw: watch + re-list + getData", raw_full)
    row("disco: on_change", lat)
    print(string.format("  p50 difference vs bare watch %.3f ms, vs watch+list+get %.3f ms "
                        .. "(target within 1 ms)",
                        common.percentile(lat, 0.5) - common.percentile(raw, 0.5),
                        common.percentile(lat, 0.5) - common.percentile(raw_full, 0.5)))
    writer:close()
    watcher:close()
end)
