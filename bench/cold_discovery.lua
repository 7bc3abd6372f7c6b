-- bench/cold_discovery.lua: cold discovery of one application with N
-- instances in 3 revisions, in both metadata modes, from a fresh process to
-- the complete address list of one service: the floor (bench/zk_floor.c:
-- the raw C client, getChildren + N pipelined getData, no parsing), disco
-- (bench/peers/disco_consumer.lua), the Java consumer on the official
-- ZooKeeper client (bench/peers/run-java) and the Python one on kazoo
-- (bench/peers/run-kazoo), interleaved run by run on the same server.
--
--   build/disco run bench/cold_discovery.lua
--   BENCH_SIZES=1000,10000,50000 (default)   BENCH_RUNS=7 (default; 9 up to 1,000, 3 from 50,000)
--   BENCH_PEERS=disco,java,kazoo (default; e.g. disco alone beside the floor)
--   BENCH_MODES=remote,local (default)
--
-- remote mode: each revision's MetadataInfo at /dubbo/metadata/APP/REV.
-- local mode: each revision served by its own MetadataService (a
-- loop:dubbo_server in this process, driven while the peers run), which
-- the instances' url-params point to.
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local instance_model = require "disco.instance"
local metadata_service = require "disco.metadata.service"
local peers = require "peer_process"
local results = require "results"

local BUILD = os.getenv("BUILD") or "build"
local IFACE = "com.acme.Bench"
local PEER_MS = 600000

local function sizes()
    local list = {}
    for n in (os.getenv("BENCH_SIZES") or "1000,10000,50000"):gmatch("%d+") do
        list[#list + 1] = tonumber(n)
    end
    return list
end

local function runs_for(n)
    local runs = tonumber(os.getenv("BENCH_RUNS"))
    if runs then
        return runs
    end
    -- Small sizes are cheap and the noisiest relative to their figure.
    if n <= 1000 then
        return 9
    end
    return n >= 50000 and 3 or 7
end

-- Instance i: 127.0.0.1, port 10000 + i (unique names up to 55,535
-- instances; loopback, so that local mode reaches the MetadataService at
-- the instance's host), revision i % 3. `service_ports`: local mode's
-- MetadataService port per revision, nil for remote mode.
local function instance_maker(infos, service_ports)
    return function(app, i)
        local inst = instance_model.new({ name = app, host = "127.0.0.1", port = 10000 + i,
                                          metadata = { timestamp = tostring(1700000000000 + i) } })
        local r = i % 3 + 1
        instance_model.set_revision(inst, infos[r].revision)
        instance_model.set_endpoints(inst, { { port = 10000 + i, protocol = "dubbo" } })
        if service_ports then
            instance_model.set_storage_type(inst, "local")
            instance_model.set_url_params(inst, { port = tostring(service_ports[r]), protocol = "dubbo",
                                                  version = "1.0.0", dubbo = "2.0.2", release = "3.2.0",
                                                  side = "provider" })
        else
            instance_model.set_storage_type(inst, "remote")
        end
        inst.registration_time = 1700000000000 + i
        return inst
    end
end

local function populate(session, app, n, infos, service_ports)
    common.populate(rt.loop, session, app, n, instance_maker(infos, service_ports))
    if service_ports then
        return
    end
    local pending = #infos
    for _, info in ipairs(infos) do
        session:create("/dubbo/metadata/" .. app .. "/" .. info.revision, info:to_json(),
                       { parents = true }, function() pending = pending - 1 end)
    end
    common.wait(rt.loop, function() return pending == 0 end, 60000, "metadata")
end

-- One floor run in a fresh process, timed as the peers are, from just
-- before it opens its session: milliseconds.
local function floor_once(hosts, app, n)
    local pipe = assert(io.popen(string.format("%s/bench/zk_floor %s /services/%s 1", BUILD, hosts, app)))
    local out = pipe:read("*a")
    pipe:close()
    local ms, count = out:match("floor_ms ([%d.]+) (%d+)")
    local session_ms = out:match("session_ms ([%d.]+)")
    assert(tonumber(count) == n, "floor read " .. tostring(count) .. " children of " .. n)
    assert(session_ms, "floor printed no session time")
    return tonumber(session_ms) + tonumber(ms)
end

local function list_env(name, default, allowed)
    local list = {}
    for item in (os.getenv(name) or default):gmatch("[^,%s]+") do
        assert(allowed[item], name .. ": unknown value " .. item)
        list[#list + 1] = item
    end
    return list
end

local KINDS = list_env("BENCH_PEERS", "disco,java,kazoo", { disco = true, java = true, kazoo = true })
local MODES = list_env("BENCH_MODES", "remote,local", { remote = true, ["local"] = true })

local function measure(zk, app, n, mode, runs, servers_loop)
    local args = { "--zk", zk.connect_string, "--app", app, "--service", IFACE, "--mode", mode }
    local m = { floor = {}, unsupported = {}, counts = {}, not_run = {} }
    for _, kind in ipairs(peers.KINDS) do
        m[kind], m[kind .. "_wall"], m.not_run[kind] = {}, {}, true
    end
    for _, kind in ipairs(KINDS) do
        m.not_run[kind] = nil
    end
    for run = 1, runs do
        -- The order turns every run (floor, disco, Java, kazoo; then
        -- kazoo, Java, disco, floor), so that none always meets the
        -- server right after the same neighbour.
        local order = { "floor" }
        for _, kind in ipairs(KINDS) do
            order[#order + 1] = kind
        end
        if run % 2 == 0 then
            for i = 1, math.floor(#order / 2) do
                order[i], order[#order + 1 - i] = order[#order + 1 - i], order[i]
            end
        end
        for _, kind in ipairs(order) do
            if kind == "floor" then
                m.floor[run] = floor_once(zk.connect_string, app, n)
            elseif not m.unsupported[kind] then
                local r = peers.cold(kind, args, PEER_MS, servers_loop)
                if r.unsupported then
                    m.unsupported[kind] = true
                else
                    assert(r.instances == n, string.format("%s %s: %d instances of %d", kind, mode, r.instances, n))
                    assert(r.addresses == n, string.format("%s %s: %d addresses of %d", kind, mode, r.addresses, n))
                    m[kind][run] = r.ms
                    m[kind .. "_wall"][run] = r.wall_ms
                end
            end
        end
        io.stderr:write(string.format("  N=%d %s run %d/%d done\n", n, mode, run, runs))
    end
    return m
end

-- a/b of each run, a and b taken back to back in that run: "median
-- (min-max)", or "-" when no run has both. On a shared 2-core machine the
-- server's pace swings between runs by a factor of 2; a pair shares most
-- of it.
local function paired_ratio(a, b)
    local ratios = {}
    for run, x in pairs(a) do
        if b[run] and b[run] > 0 then
            ratios[#ratios + 1] = x / b[run]
        end
    end
    return results.spread(ratios, "%.2f")
end

common.run(rt, function(zk)
    local session
    local ok, err = pcall(function()
        for _, kind in ipairs(KINDS) do
            if kind == "java" then
                peers.prepare()
            end
        end
        session = common.session(rt.loop, zk.connect_string)
        local rows, wall_rows = {}, {}
        for _, n in ipairs(sizes()) do
            assert(n <= 55000, "instance ports run from 10000: at most 55,000 instances")
            local runs = runs_for(n)
            for _, mode in ipairs(MODES) do
                local app = string.format("cold-%s-%d", mode, n)
                local infos = common.revisions(app, IFACE, "get,put")
                local servers, ports = nil, nil
                if mode == "local" then
                    servers, ports = {}, {}
                    for r, info in ipairs(infos) do
                        servers[r] = assert(metadata_service.start(rt, { app = app, host = "127.0.0.1", port = 0 }))
                        servers[r]:publish(info)
                        ports[r] = servers[r]:port()
                    end
                end
                local t = core.hrtime()
                populate(session, app, n, infos, ports)
                io.stderr:write(string.format("populated %s with %d instances (%s metadata) in %.0f ms\n",
                                              app, n, mode, core.hrtime() - t))
                local m = measure(zk, app, n, mode, runs, rt.loop)
                for _, s in ipairs(servers or {}) do
                    s:close()
                end
                local function cell(kind)
                    local base = kind:match("^[a-z]+")
                    if m.not_run[base] then
                        return "not run"
                    end
                    return m.unsupported[base] and "unsupported" or results.spread(m[kind])
                end
                rows[#rows + 1] = {
                    n, mode, runs, results.spread(m.floor), cell("disco"), cell("java"), cell("kazoo"),
                    paired_ratio(m.disco, m.floor), paired_ratio(m.java, m.disco),
                    paired_ratio(m.kazoo, m.disco),
                }
                wall_rows[#wall_rows + 1] = {
                    n, mode, runs, cell("disco_wall"), cell("java_wall"), cell("kazoo_wall"),
                }
            end
        end
        results.table("Cold discovery: start of the work to the complete address list (ms, median (min-max))",
            { "instances", "metadata", "runs", "floor (raw C)", "disco", "Java (ZooKeeper client)",
              "Python (kazoo)", "disco/floor", "Java/disco", "kazoo/disco" },
            rows, {
                "One application, 3 revisions, one service; every process is fresh, and each is timed "
                    .. "from just before it opens its session (the floor too) to the complete list, with "
                    .. "its libraries imported first (kazoo; disco's consumer and instance modules, not "
                    .. "its plugins; Java loads classes lazily, in the span); the floor parses nothing.",
                "Ratios: a/b of each run, a and b measured back to back in that run, median (min-max) "
                    .. "over the runs; the order of the processes turns every run.",
                "remote: MetadataInfo read from /dubbo/metadata/APP/REVISION; local: from each revision's "
                    .. "MetadataService over dubbo/Hessian2 (disco's loop:dubbo_server); Python has no "
                    .. "Hessian2 library in Debian.",
                "Targets: disco/floor <= 1.3; Java/disco and kazoo/disco > 1.",
            })
        results.table("Cold discovery: process spawn to the complete address list (ms, median (min-max))",
            { "instances", "metadata", "runs", "disco", "Java (ZooKeeper client)", "Python (kazoo)" },
            wall_rows, { "The same runs as above, timed from the spawn: includes runtime start-up "
                         .. "(LuaJIT, JVM, CPython) and module loading; 1 ms polling resolution." })
    end)
    peers.stop_all()
    if session then
        session:close()
    end
    if not ok then
        error(err, 0)
    end
    peers.remove_files()
end)
