-- bench/resty_nodes.lua: disco inside Debian's nginx (2 workers, a local
-- ZooKeeper, NODES providers registered with `disco provide`).
--
--  1. `require("disco.resty").nodes(sid)` per call inside a worker, the
--     version unchanged, beside a plain `dict:get` of the version key and
--     an empty loop, in the same request (CALLS calls each).
--  2. The owner's CPU at idle: utime+stime of worker 0 (the owner, stepping
--     its loop every step_interval) against the other worker, over SECONDS.
--
--   build/disco run bench/resty_nodes.lua [CALLS=1000000] [SECONDS=10] [NODES=3] \
--       [INTERVAL=0.01]
local rt = ...
package.path = "./?.lua;bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local nginx = require "spec.support.nginx"
local ports = require "disco.testing.ports"
local process = require "disco.testing.process"

local CALLS = tonumber(arg[1]) or 1000000
local SECONDS = tonumber(arg[2]) or 10
local NODES = tonumber(arg[3]) or 3
local INTERVAL = tonumber(arg[4]) or 0.01
local SID = "rest:com.acme.Hello"
local BUILD = os.getenv("BUILD") or "build"

local HTTP = [[
    lua_shared_dict disco 4m;
    init_by_lua_block {
        require("disco.resty").init{
            registry = "${registry}", subscriptions = { "${sid}" },
            step_interval = ${interval}, runtime = { log_level = "warn" },
        }
    }
    init_worker_by_lua_block { require("disco.resty").init_worker() }
    server {
        listen 127.0.0.1:${port};
        location = /disco/status { content_by_lua_block { require("disco.resty").status_handler() } }
        location = /bench {
            content_by_lua_block {
                local resty = require "disco.resty"
                local dict = ngx.shared.disco
                local sid, n = "${sid}", tonumber(ngx.var.arg_n)
                local vkey = "v/" .. sid
                local sum = #resty.nodes(sid)
                local function clock() ngx.update_time(); return ngx.now() end
                local t0 = clock()
                for _ = 1, n do sum = sum + #resty.nodes(sid) end
                local t1 = clock()
                for _ = 1, n do sum = sum + dict:get(vkey) end
                local t2 = clock()
                for i = 1, n do sum = sum + i end
                local t3 = clock()
                ngx.say(string.format("%.1f %.1f %.1f %d %d", (t1 - t0) * 1e9 / n,
                    (t2 - t1) * 1e9 / n, (t3 - t2) * 1e9 / n, sum % 7, ngx.worker.id()))
            }
        }
    }
]]

-- utime + stime of a process, in seconds.
local function cpu_seconds(pid)
    local f = assert(io.open("/proc/" .. pid .. "/stat"))
    local stat = f:read("*a")
    f:close()
    local rest = stat:match("^%d+ %(.*%) (.*)$")
    local fields = {}
    for word in rest:gmatch("%S+") do
        fields[#fields + 1] = word
    end
    -- rest starts at field 3: utime is field 14, stime 15.
    local ticks = tonumber(fields[12]) + tonumber(fields[13])
    local p = io.popen("getconf CLK_TCK")
    local hz = tonumber(p:read("*l")) or 100
    p:close()
    return ticks / hz
end

local wait = common.poll

common.run(rt, function(zk)
    local registry = "zookeeper://" .. zk.connect_string .. "?session_timeout=10000"
    local providers = {}
    for _ = 1, NODES do
        local log = os.tmpname()
        providers[#providers + 1] = process.spawn({
            argv = { BUILD .. "/disco", "provide", "--registry", registry, "--app", "hello",
                     "--host", "127.0.0.1", "--port", tostring(ports.pick_port()),
                     "--service", "com.acme.Hello", "--protocol", "rest", "--storage", "remote" },
            log = log,
        })
        wait("a provider to register", 20000, function()
            local f = io.open(log)
            local s = f and f:read("*a") or ""
            if f then
                f:close()
            end
            return s:find("registered", 1, true)
        end)
        os.remove(log)
    end
    local srv = nginx.new({ http = HTTP, workers = 2,
                            vars = { registry = registry, sid = SID, interval = INTERVAL } })
    local ok, err = pcall(function()
        srv:start()
        local cjson = require "cjson"
        local status = wait("the list in the dict", 20000, function()
            local st = cjson.decode(srv:get("/disco/status").body)
            return st.services[SID].nodes == NODES and st
        end)
        print(string.format("nginx %s, %d workers, %d nodes of %s, step_interval %g s",
                            "1.22.1 (Debian) + lua-nginx-module", 2, NODES, SID, INTERVAL))

        -- 1. nodes() per call, per worker (connections land on either).
        local seen = {}
        for _ = 1, 8 do
            local res = srv:get("/bench?n=" .. CALLS, 120)
            local nodes_ns, get_ns, loop_ns, _, worker = res.body:match(
                "^(%S+) (%S+) (%S+) (%d+) (%d+)")
            if nodes_ns and not seen[worker] then
                seen[worker] = true
                print(string.format("worker %s: nodes() %s ns/call, dict:get %s ns/call, "
                                    .. "empty loop %s ns/iteration (%d calls each)",
                                    worker, nodes_ns, get_ns, loop_ns, CALLS))
            end
        end

        -- 2. The owner's CPU at idle against the other worker.
        local owner = status.owner.pid
        local other
        for _, pid in ipairs(srv:children()) do
            if pid ~= owner then
                other = pid
            end
        end
        local function owner_figures()
            local st = cjson.decode(srv:get("/disco/status").body).owner
            return st.steps or 0, st.busy_ms or 0
        end
        local s0, b0 = owner_figures()
        local o0, w0 = cpu_seconds(owner), cpu_seconds(other)
        local t0 = core.hrtime()
        core.sleep(SECONDS * 1000)
        local elapsed = (core.hrtime() - t0) / 1000
        local o1, w1 = cpu_seconds(owner), cpu_seconds(other)
        local s1, b1 = owner_figures()
        local steps = s1 - s0
        print(string.format("idle %.1f s: owner (worker 0) %.3f s CPU = %.2f %% of a core, other worker "
                            .. "%.3f s = %.2f %%", elapsed, o1 - o0, (o1 - o0) / elapsed * 100,
                            w1 - w0, (w1 - w0) / elapsed * 100))
        print(string.format("owner: %d steps, %.1f us CPU per step (owner minus other worker), "
                            .. "%.1f us inside the step (rt:step + feedback + dict writes)", steps,
                            ((o1 - o0) - (w1 - w0)) / math.max(steps, 1) * 1e6,
                            (b1 - b0) / math.max(steps, 1) * 1000))
    end)
    srv:destroy()
    for _, p in ipairs(providers) do
        if process.group_is_ours(p) then
            process.kill_group(p.pgid, "TERM")
        end
    end
    if not ok then
        error(err, 0)
    end
end)
