-- bench/zk_cold_discovery.lua: cold discovery of one application with N
-- instances on a local ZooKeeper, disco's zookeeper registry against the
-- floor (the raw C mt client: one getChildren + N pipelined getData, no
-- parsing), measured in the same run on the same server.
--
--   build/disco run bench/zk_cold_discovery.lua [N=10000] [RUNS=5]
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local disco = require "disco"

local N = tonumber(arg[1]) or 10000
local RUNS = tonumber(arg[2]) or 5
local BUILD = os.getenv("BUILD") or "build"

common.run(rt, function(zk)
    local loop = rt.loop
    local session = common.session(loop, zk.connect_string)
    local t = core.hrtime()
    common.populate(loop, session, "bench-app", N)
    print(string.format("populated %d instances in %.0f ms", N, core.hrtime() - t))

    -- (a) the floor
    local pipe = assert(io.popen(string.format("%s/bench/zk_floor %s /services/bench-app %d",
                                               BUILD, zk.connect_string, RUNS)))
    local floor = {}
    -- Runs on the one session, so its session_ms line is not part of them.
    for line in pipe:lines() do
        local ms, count = line:match("^floor_ms ([%d.]+) (%d+)")
        if ms then
            assert(tonumber(count) == N, "floor read " .. tostring(count) .. " children")
            floor[#floor + 1] = tonumber(ms)
        end
    end
    assert(#floor == RUNS, "floor printed " .. #floor .. " runs of " .. RUNS)
    pipe:close()

    -- (b) disco: a fresh runtime per run, connected first, then timed from
    -- watch_instances to the first complete, parsed instance list.
    local disco_ms, rss_per = {}, nil
    for run = 1, RUNS do
        collectgarbage()
        collectgarbage()
        local rss0 = common.rss_kib()
        local consumer = disco.runtime({ plugin_watch = false, log_level = "error" })
        local registry = assert(consumer:registry("zookeeper://" .. zk.connect_string))
        common.wait(consumer.loop, function() return registry.session():state() == "connected" end,
                    20000, "consumer connect")
        local got
        local start = core.hrtime()
        registry.watch_instances("bench-app", function(_, list)
            if #list == N and not got then
                got = core.hrtime() - start
            end
        end)
        common.wait(consumer.loop, function() return got ~= nil end, 120000, "discovery")
        disco_ms[#disco_ms + 1] = got
        if run == 1 then
            collectgarbage()
            collectgarbage()
            rss_per = (common.rss_kib() - rss0) * 1024 / N
        end
        consumer:close()
    end

    local a, b = common.median(floor), common.median(disco_ms)
    print(string.format("cold discovery, %d instances, %d runs (median, min-max):", N, RUNS))
    print(string.format("  (a) floor, raw C client        %8.1f ms  (%.1f-%.1f)", a,
                        math.min(unpack(floor)), math.max(unpack(floor))))
    print(string.format("  (b) disco zookeeper registry   %8.1f ms  (%.1f-%.1f)", b,
                        math.min(unpack(disco_ms)), math.max(unpack(disco_ms))))
    print(string.format("  ratio b/a %.2f (target <= 1.3)", b / a))
    print(string.format("  RSS growth per instance held: %.0f bytes (aim < 2048)", rss_per))
    session:close()
end)
