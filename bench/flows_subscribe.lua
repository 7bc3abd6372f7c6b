-- bench/flows_subscribe.lua: the consumer flow end to end on a local
-- ZooKeeper. One application with N instances (127.0.0.1, one port each)
-- in 3 revisions, remote metadata; a fresh consumer subscribes to one
-- service ID, and the time from subscribe to the complete address list is
-- split into registry reads (subscribe -> first instance list), metadata
-- fetches (first fetch started -> last answered) and URL building (time
-- spent in disco.address_list.collect).
--
--   build/disco run bench/flows_subscribe.lua [N=10000] [RUNS=5]
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local disco = require "disco"
local address_list = require "disco.address_list"

local N = tonumber(arg[1]) or 10000
local RUNS = tonumber(arg[2]) or 5
local APP = "bench-flows"
local IFACE = "com.acme.Bench"

-- The instances, and each revision's MetadataInfo in the metadata report.
local function populate(loop, session, infos)
    common.populate(loop, session, APP, N, common.remote_instance_maker(infos, 20000))
    local pending = #infos
    for _, info in ipairs(infos) do
        session:create("/dubbo/metadata/" .. APP .. "/" .. info.revision, info:to_json(),
                       { parents = true }, function() pending = pending - 1 end)
    end
    common.wait(loop, function() return pending == 0 end, 60000, "metadata")
end

common.run(rt, function(zk)
    local session = common.session(rt.loop, zk.connect_string)
    local t = core.hrtime()
    populate(rt.loop, session, common.revisions(APP, IFACE, "get,put"))
    print(string.format("populated %d instances in 3 revisions in %.0f ms", N, core.hrtime() - t))

    local real_collect = address_list.collect
    local totals, registry_ms, fetch_ms, build_ms, fetches = {}, {}, {}, {}, {}
    for run = 1, RUNS do
        local crt = disco.runtime({ plugin_watch = false, log_level = "error" })
        local registry = assert(crt:registry("zookeeper://" .. zk.connect_string))
        common.wait(crt.loop, function() return registry.session():state() == "connected" end,
                    20000, "consumer connect")
        local first_list, fetch_start, fetch_end, built = nil, nil, nil, 0
        local real_watch = registry.watch_instances
        registry.watch_instances = function(app, cb)
            return real_watch(app, function(diff, list)
                first_list = first_list or core.hrtime()
                return cb(diff, list)
            end)
        end
        local real_fetch = require("disco.metadata.fetch").remote(registry, "dubbo")
        address_list.collect = function(...)
            local t0 = core.hrtime()
            local collided = real_collect(...)
            built = built + (core.hrtime() - t0)
            return collided
        end
        local consumer = crt:consumer({
            registry = registry,
            fetchers = { remote = function(inst, app, rev, cb)
                fetch_start = fetch_start or core.hrtime()
                real_fetch(inst, app, rev, function(...)
                    fetch_end = core.hrtime()
                    cb(...)
                end)
            end },
        })
        local done
        local start = core.hrtime()
        consumer:subscribe("dubbo:" .. IFACE .. ":1.0.0", function(_, list)
            if #list == N and not done then
                done = core.hrtime()
            end
        end, { provided_by = { APP } })
        common.wait(crt.loop, function() return done ~= nil end, 120000, "subscribe")
        address_list.collect = real_collect
        totals[run] = done - start
        registry_ms[run] = first_list - start
        fetch_ms[run] = fetch_end - fetch_start
        build_ms[run] = built
        fetches[run] = consumer:counters().fetch_calls
        consumer:close()
        crt:close()
    end

    local function row(label, list)
        print(string.format("  %-38s %8.1f ms  (%.1f-%.1f)", label, common.median(list),
                            math.min(unpack(list)), math.max(unpack(list))))
    end
    print(string.format("subscribe to full list, %d instances, 3 revisions, %d runs (median, min-max):",
                        N, RUNS))
    row("total: subscribe -> complete list", totals)
    row("registry reads: -> first instance list", registry_ms)
    row("metadata fetches: first -> last answer", fetch_ms)
    row("URL building (address_list.collect)", build_ms)
    print(string.format("  metadata fetches per run: %s (one per revision)", table.concat(fetches, ", ")))
    session:close()
end)
