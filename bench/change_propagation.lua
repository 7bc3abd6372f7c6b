-- bench/change_propagation.lua: one instance added or removed among N
-- (10,000) -> each subscriber's list changed, p50/p99 over BENCH_CHANGES
-- (1,000) changes alternating add and remove, for disco, the Java consumer
-- (ZooKeeper client) and the Python one (kazoo), each a `watch` process of
-- the comparator contract (bench/README.md) subscribed at the same time;
-- beside the raw watch latency measured the way zk_notify_latency.lua
-- does (the core's child watch in this process, alone).
--
--   build/disco run bench/change_propagation.lua
--   BENCH_CHANGE_INSTANCES=10000   BENCH_CHANGES=1000
--   BENCH_PEERS=disco,java,kazoo (default; e.g. BENCH_PEERS=disco to
--   measure disco alone while working on it)
--
-- Every latency runs from just before the write (this process's
-- CLOCK_MONOTONIC) to the subscriber's `change` line (its CLOCK_MONOTONIC
-- timestamp), so polling the subscribers' output costs nothing measured.
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local zk_instance = require "disco.registry.zk_instance"
local peers = require "peer_process"
local results = require "results"

local N = tonumber(os.getenv("BENCH_CHANGE_INSTANCES")) or 10000
local CHANGES = tonumber(os.getenv("BENCH_CHANGES")) or 1000
local APP = "change-app"
local IFACE = "com.acme.Change"
local KINDS = {}
for kind in (os.getenv("BENCH_PEERS") or "disco,java,kazoo"):gmatch("[^,%s]+") do
    assert(kind == "disco" or kind == "java" or kind == "kazoo", "BENCH_PEERS: unknown peer " .. kind)
    KINDS[#KINDS + 1] = kind
end
local WAIT_MS = 10000

-- Waits for `box.done`, driving the loop without sleeping (the raw
-- latencies are timed in this process's callbacks).
local function spin(box, what)
    local deadline = core.hrtime() + WAIT_MS
    while not box.done do
        assert(core.hrtime() < deadline, "timed out: " .. what)
        rt.loop:step()
    end
end

-- The changing instance: created at odd changes, deleted at even ones.
local function change(session, k, node, data, box)
    if k % 2 == 1 then
        session:create(node, data, nil, function(err) box.err = err end)
    else
        session:delete(node, nil, function(err) box.err = err end)
    end
end

-- Raw: the core's child watch alone, then the watch + re-list a client
-- needs to learn the new list (a one-shot watch is re-armed by the list).
local function raw_latencies(writer, watcher, path, node, data)
    local fired, relisted = {}, {}
    for k = 1, CHANGES do
        local box, armed = {}, { done = false }
        watcher:children(path, { watch = function()
            box.fired = core.hrtime()
            watcher:children(path, nil, function()
                box.relisted = core.hrtime()
                box.done = true
            end)
        end }, function() armed.done = true end)
        spin(armed, "arm")
        local t0 = core.hrtime()
        change(writer, k, node, data, box)
        spin(box, "raw watch")
        fired[k], relisted[k] = box.fired - t0, box.relisted - t0
    end
    return fired, relisted
end

local function percentile_cells(list)
    if #list == 0 then
        return "-", "-"
    end
    return string.format("%.2f", common.percentile(list, 0.5)), string.format("%.2f", common.percentile(list, 0.99))
end

common.run(rt, function(zk)
    local subs, writer, watcher = {}, nil, nil
    local ok, err = pcall(function()
        for _, kind in ipairs(KINDS) do
            if kind == "java" then
                peers.prepare()
            end
        end
        writer = common.session(rt.loop, zk.connect_string)
        watcher = common.session(rt.loop, zk.connect_string)
        local infos = common.revisions(APP, IFACE)
        local make = common.remote_instance_maker(infos, 10000)
        local t = core.hrtime()
        common.populate(rt.loop, writer, APP, N, make)
        local pending = #infos
        for _, info in ipairs(infos) do
            writer:create("/dubbo/metadata/" .. APP .. "/" .. info.revision, info:to_json(), { parents = true },
                          function() pending = pending - 1 end)
        end
        common.wait(rt.loop, function() return pending == 0 end, 60000, "metadata")
        io.stderr:write(string.format("populated %d instances in %.0f ms\n", N, core.hrtime() - t))

        local path = "/services/" .. APP
        local extra = make(APP, N)
        local node = path .. "/" .. extra.host .. ":" .. extra.port
        local data = zk_instance.encode(extra)

        local fired, relisted = raw_latencies(writer, watcher, path, node, data)
        io.stderr:write("raw watch latencies measured\n")

        -- The subscribers, all at once, each with its full list first.
        for _, kind in ipairs(KINDS) do
            subs[kind] = peers.start(kind, "watch", { "--zk", zk.connect_string, "--app", APP, "--service", IFACE })
        end
        for _, kind in ipairs(KINDS) do
            local line = subs[kind]:wait_line("^ready ", 300000, rt.loop)
            assert(tonumber(line.text:match("^ready (%d+)")) == N, kind .. " ready with " .. line.text)
        end
        local lat, missed = {}, {}
        for _, kind in ipairs(KINDS) do
            lat[kind], missed[kind] = { all = {}, add = {}, remove = {} }, 0
        end
        for k = 1, CHANGES do
            local expect = k % 2 == 1 and N + 1 or N
            local box = {}
            local t0 = core.hrtime()
            change(writer, k, node, data, box)
            for _, kind in ipairs(KINDS) do
                local got, line = pcall(subs[kind].wait_line, subs[kind], function(text)
                    return tonumber(text:match("^change %d+ (%d+)$")) == expect
                end, WAIT_MS, rt.loop, "change to " .. expect)
                if got then
                    local ms = tonumber(line.text:match("^change (%d+)")) / 1e6 - t0
                    table.insert(lat[kind].all, ms)
                    table.insert(lat[kind][k % 2 == 1 and "add" or "remove"], ms)
                elseif not subs[kind]:alive() then
                    error(line, 0)
                else
                    missed[kind] = missed[kind] + 1
                    io.stderr:write(kind, ": change ", k, " not seen: ", tostring(line), "\n")
                end
            end
            assert(not box.err, "write failed: " .. tostring(box.err))
        end

        local rows = {}
        local function row(label, all, add, remove, miss)
            local p50, p99 = percentile_cells(all)
            local a50 = percentile_cells(add or {})
            local r50 = percentile_cells(remove or {})
            rows[#rows + 1] = { label, p50, p99, a50, r50, miss or 0 }
        end
        local raw_add, raw_remove, rl_add, rl_remove = {}, {}, {}, {}
        for k = 1, #fired do
            table.insert(k % 2 == 1 and raw_add or raw_remove, fired[k])
            table.insert(k % 2 == 1 and rl_add or rl_remove, relisted[k])
        end
        row("raw: child watch fired (C client, alone)", fired, raw_add, raw_remove)
        row("raw: watch + re-list (C client, alone)", relisted, rl_add, rl_remove)
        local labels = { disco = "disco consumer", java = "Java (ZooKeeper client)", kazoo = "Python (kazoo)" }
        for _, kind in ipairs(KINDS) do
            row(labels[kind], lat[kind].all, lat[kind].add, lat[kind].remove, missed[kind])
        end
        local p50 = {}
        for _, kind in ipairs(KINDS) do
            p50[kind] = #lat[kind].all > 0 and common.percentile(lat[kind].all, 0.5) or nil
        end
        results.table(string.format("Change propagation: one instance added/removed among %d (ms)", N),
            { "subscriber", "p50", "p99", "p50 add", "p50 remove", "changes missed" }, rows, {
                string.format("%d changes alternating create and delete of one instance node; latency from "
                              .. "just before the write to the subscriber's list change (its own "
                              .. "CLOCK_MONOTONIC stamp).", CHANGES),
                "disco, Java and kazoo run at the same time, each in its own process, and are notified by "
                    .. "the same writes; the raw rows are measured before, alone, in the bench process.",
                string.format("p50 ratios: Java/disco %s, kazoo/disco %s.", results.ratio(p50.java, p50.disco),
                              results.ratio(p50.kazoo, p50.disco)),
                "disco's removals pass its offline validation chain (the default one), which the peers do "
                    .. "not have.",
            })
    end)
    peers.stop_all()
    for _, session in ipairs({ writer, watcher }) do
        session:close()
    end
    if not ok then
        error(err, 0)
    end
    peers.remove_files()
end)
