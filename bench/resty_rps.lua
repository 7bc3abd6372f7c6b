-- bench/resty_rps.lua: requests per second through Debian's nginx (2
-- workers) proxying to BACKENDS fast HTTP backends, with disco routing
-- (disco.resty.balancer in balancer_by_lua, fed by disco from a local
-- ZooKeeper) against a static `upstream` block listing the same
-- host:port pairs (round robin). Target: disco within 3 % of static.
--
--   build/disco run bench/resty_rps.lua [RUNS=5] [SECONDS=10] [BACKENDS=4] \
--       [CONNECTIONS=32]
--
-- The backends are one more nginx (1 worker) with BACKENDS `listen` server
-- blocks answering `return 200` (fast, and not what is measured); each is
-- registered in ZooKeeper by a `disco provide` process as an instance of
-- application `hello` exporting rest:com.acme.Hello. The proxy has three
-- locations, all with upstream keepalive (32 idle connections per worker,
-- HTTP/1.1), so that connection setup is not what is measured:
--
--   /static      proxy_pass to `upstream static` (the K servers listed)
--   /disco       as examples/openresty/nginx.conf: precheck in access_by_lua,
--                balance() in balancer_by_lua, log() (feedback) in log_by_lua
--   /disco-bare  balance() alone (no precheck, no feedback): the balancer
--                phase's own cost
--   /lua-floor   balancer_by_lua with a plain round robin over the same
--                ports in a constant Lua table: what any Lua balancer pays
--                (the phase, ngx.balancer.set_current_peer), disco excluded
--   /disco-rendered  disco's rendered-upstream mode (upstream_files): an
--                upstream block that includes the file disco's owner
--                writes (and reloads nginx for), no Lua per request; the
--                measurement starts once the owner wrote the K servers and
--                the reload it sent is done
--
-- Load: Debian's `wrk` (-t1 -cCONNECTIONS -dSECONDS --latency) on loopback,
-- the variants alternated RUNS times after a warm-up; median (min-max)
-- requests/s, p50/p99 latency, the proxy workers' CPU per request, and the
-- ratios to static of each run pair. On a shared machine req/s swings with
-- the other load: BENCH_RPS_CALLGRIND=SECONDS adds a table of the proxy
-- worker's instructions per request under callgrind, which does not.
local rt = ...
package.path = "./?.lua;bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local files = require "disco.testing.files"
local nginx = require "spec.support.nginx"
local ports = require "disco.testing.ports"
local process = require "disco.testing.process"
local results = require "results"

local RUNS = tonumber(arg[1]) or 5
local SECONDS = tonumber(arg[2]) or 10
local BACKENDS = tonumber(arg[3]) or 4
local CONNECTIONS = tonumber(arg[4]) or 32
local WARMUP_SECONDS = math.min(SECONDS, 3)
local SID = "rest:com.acme.Hello"
local BUILD = os.getenv("BUILD") or "build"
local WRK = "/usr/bin/wrk"

local VARIANTS = {
    { path = "/static", name = "static upstream (K servers listed)" },
    { path = "/disco", name = "disco (precheck + balance + feedback log, as examples/openresty)" },
    { path = "/disco-bare", name = "disco, balance() only" },
    { path = "/lua-floor", name = "floor: balancer_by_lua, round robin over a constant list" },
    { path = "/disco-rendered",
      name = "disco, rendered upstream (static upstream kept by disco, no Lua per request)" },
}

-- K server blocks answering 200 at once, and a status server on ${port}
-- (what nginx.lua waits for at start): stub_status counts the connections
-- the proxy opened, to check that keepalive held.
local function backend_http(backend_ports)
    local parts = { [[
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:${port};
        location = /status { stub_status; }
        location / { return 200 "ok\n"; }
    }
]] }
    for _, port in ipairs(backend_ports) do
        parts[#parts + 1] = string.format(
            "    server { listen 127.0.0.1:%d; location / { return 200 \"ok\\n\"; } }\n", port)
    end
    return table.concat(parts)
end

local function proxy_http(backend_ports)
    local static = {}
    for _, port in ipairs(backend_ports) do
        static[#static + 1] = string.format("        server 127.0.0.1:%d;", port)
    end
    local port_list = table.concat(backend_ports, ", ")
    return [[
    lua_shared_dict disco 4m;
    init_by_lua_block {
        require("disco.resty").init{
            registry = "${registry}", subscriptions = { "${sid}" },
            step_interval = 0.01, runtime = { log_level = "warn" },
            upstream_files = { ["${sid}"] = "${prefix}/hello.servers" },
        }
    }
    init_worker_by_lua_block { require("disco.resty").init_worker() }
    upstream static {
]] .. table.concat(static, "\n") .. [[

        keepalive 32;
        keepalive_requests 1000000;
    }
    upstream disco {
        server 0.0.0.1;
        balancer_by_lua_block {
            require("disco.resty.balancer").balance("${sid}", { pick = "round_robin" })
        }
        keepalive 32;
        keepalive_requests 1000000;
    }
    upstream disco_bare {
        server 0.0.0.1;
        balancer_by_lua_block {
            require("disco.resty.balancer").balance("${sid}", { pick = "round_robin" })
        }
        keepalive 32;
        keepalive_requests 1000000;
    }
    upstream disco_rendered {
        include ${prefix}/hello.servers;
        keepalive 32;
        keepalive_requests 1000000;
    }
    upstream lua_floor {
        server 0.0.0.1;
        balancer_by_lua_block {
            local rr = package.loaded.rps_floor
            if not rr then
                rr = { n = 0, ports = { ]] .. port_list .. [[ } }
                package.loaded.rps_floor = rr
            end
            rr.n = rr.n % #rr.ports + 1
            assert(require("ngx.balancer").set_current_peer("127.0.0.1", rr.ports[rr.n]))
        }
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${port};
        keepalive_requests 1000000;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location = /static { proxy_pass http://static; }
        location = /disco {
            access_by_lua_block { require("disco.resty.balancer").precheck("${sid}") }
            proxy_pass http://disco;
            log_by_lua_block { require("disco.resty.balancer").log() }
        }
        location = /disco-bare { proxy_pass http://disco_bare; }
        location = /lua-floor { proxy_pass http://lua_floor; }
        location = /disco-rendered { proxy_pass http://disco_rendered; }
        location = /disco/status { content_by_lua_block { require("disco.resty").status_handler() } }
    }
]]
end

local wait = common.poll

-- A proxy (not started) whose rendered-upstream file holds the placeholder
-- of an empty list, as nginx needs it at start.
local function new_proxy(registry, backend_ports, workers, start_ms)
    local srv = nginx.new({ http = proxy_http(backend_ports), workers = workers, start_ms = start_ms,
                            vars = { registry = registry, sid = SID } })
    local upstream_file = require "disco.resty.upstream_file"
    assert(upstream_file.write_if_changed(srv.prefix .. "/hello.servers",
                                          upstream_file.render({}, { sid = SID })))
    return srv
end

-- Until the owner has written the K servers, the reload it sent is done
-- (the new generation's owner runs: the first one was generation 1) and
-- the old workers are gone: then every variant runs on one generation.
local function wait_rendered(srv, workers, timeout_ms)
    local cjson = require "cjson"
    wait("the rendered upstream and its reload", timeout_ms, function()
        local text = files.read_file(srv.prefix .. "/hello.servers") or ""
        local _, servers = text:gsub("\nserver 127%.0%.0%.1:%d+;", "")
        local st = cjson.decode(srv:get("/disco/status", 20).body)
        if servers ~= BACKENDS or not st.upstream_files or st.upstream_files.reloads < 1
            or st.owner.generation < 2 or st.owner.state ~= "running" then
            return false
        end
        local children = srv:children()
        for _, pid in ipairs(children) do
            if pid == st.owner.pid then
                return #children == workers
            end
        end
        return false
    end)
end

-- The whole file, "" when it cannot be read.
local function read_file(path)
    return files.read_file(path) or ""
end

-- wrk is a bench-only package: install it on demand (.ci/deps.sh installs
-- as root, otherwise prints the apt-get command and fails).
local function ensure_wrk()
    if io.open(WRK) then
        return
    end
    io.stderr:write("resty_rps: this benchmark needs Debian's wrk (load generator)\n")
    if not os.execute("sh .ci/deps.sh wrk") or not io.open(WRK) then
        error("wrk is not installed: sudo apt-get install -y wrk", 0)
    end
end

-- Live processes of this run, ended by pid on every path.
local live = {}

local function stop_proc(p, grace_ms)
    if process.alive(p.pid, p.start_time) then
        process.signal(p.pid, "TERM")
        process.wait_dead(p.pid, grace_ms or 5000, p.start_time)
    end
    if process.group_is_ours(p) then
        process.kill_group(p.pgid, "KILL")
    end
end

local function nproc()
    local p = io.popen("nproc")
    local n = p:read("*l")
    p:close()
    return n or "?"
end

-- CPU time of a process so far, in ns (/proc/PID/schedstat: precise, unlike
-- the tick-counted utime+stime).
local function cpu_ns(pid)
    return tonumber(read_file("/proc/" .. pid .. "/schedstat"):match("^(%d+)")) or 0
end

local function workers_cpu_ns(srv)
    local sum = 0
    for _, pid in ipairs(srv:children()) do
        sum = sum + cpu_ns(pid)
    end
    return sum
end

-- "612.00us" / "3.21ms" / "1.05s" -> ms.
local function to_ms(text)
    local v, unit = text:match("^([%d%.]+)(%a+)$")
    v = tonumber(v)
    if not v then
        return nil
    end
    local scale = { us = 0.001, ms = 1, s = 1000, m = 60000 }
    return scale[unit] and v * scale[unit]
end

-- One wrk run against `path`: { rps =, p50 =, p99 =, errors = "..." }.
local function load(port, path, seconds, connections)
    local log = os.tmpname()
    local p = process.spawn({
        argv = { WRK, "-t1", "-c" .. (connections or CONNECTIONS), "-d" .. seconds .. "s", "--latency",
                 "--timeout", "5s", "http://127.0.0.1:" .. port .. path },
        log = log,
    })
    live[p] = true
    local done = process.wait_dead(p.pid, (seconds + 20) * 1000, p.start_time)
    stop_proc(p)
    live[p] = nil
    local out = read_file(log)
    os.remove(log)
    if not done then
        error("wrk did not finish within " .. (seconds + 20) .. " s:\n" .. out, 0)
    end
    local rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)"))
    if not rps then
        error("wrk: no Requests/sec in its output:\n" .. out, 0)
    end
    local non2xx = tonumber(out:match("Non%-2xx or 3xx responses:%s*(%d+)"))
    if non2xx and non2xx > 0 then
        error(string.format("wrk: %d non-2xx answers from %s:\n%s", non2xx, path, out), 0)
    end
    return {
        rps = rps,
        requests = tonumber(out:match("(%d+) requests in")),
        p50 = to_ms(out:match("\n%s*50%%%s+(%S+)") or ""),
        p99 = to_ms(out:match("\n%s*99%%%s+(%S+)") or ""),
        errors = out:match("Socket errors:[^\n]*"),
    }
end

-- Optional (BENCH_RPS_CALLGRIND=SECONDS): a second proxy, one worker, under
-- valgrind's callgrind; per variant the worker's counters are zeroed, wrk
-- -c1 runs SECONDS, and the dump's instruction count, less the owner's idle
-- rate times the run's duration, is divided by the requests wrk counted.
-- Instruction counts do not depend on the machine's other load.
local function callgrind_dump_total(dir, pid, label)
    os.execute(string.format("callgrind_control -d %s %d >/dev/null 2>&1", label, pid))
    -- Dumps are numbered cg.PID.1, .2, ...: the newest one is this label's.
    local p = io.popen(string.format("grep -l 'Trigger: dump %s$' %s/cg.%d.* 2>/dev/null", label, dir,
                                     pid))
    local file = p:read("*l")
    p:close()
    local total = file and tonumber(read_file(file):match("\nsummary: (%d+)"))
    if not total then
        error("callgrind: no dump for " .. label .. " in " .. dir, 0)
    end
    return total
end

local function instructions_per_request(registry, backend_ports, seconds)
    local srv = new_proxy(registry, backend_ports, 1, 120000)
    local dir = srv.prefix .. "/callgrind"
    os.execute("mkdir -p " .. process.quote(dir))
    local wrapper = srv.prefix .. "/valgrind-nginx"
    local f = assert(io.open(wrapper, "w"))
    f:write(string.format("#!/bin/sh\nexec valgrind --tool=callgrind --smc-check=all-non-file --trace-children=yes "
                          .. "--callgrind-out-file=%s/cg.%%p %s \"$@\"\n", dir, nginx.BINARY))
    f:close()
    os.execute("chmod +x " .. process.quote(wrapper))
    local binary = nginx.BINARY
    nginx.BINARY = wrapper
    local ok, out = pcall(function()
        srv:start()
        nginx.BINARY = binary
        local cjson = require "cjson"
        wait("the list in the dict (callgrind)", 60000, function()
            local st = cjson.decode(srv:get("/disco/status", 20).body)
            return st.services[SID] and st.services[SID].nodes == BACKENDS
        end)
        wait_rendered(srv, 1, 120000)
        local worker = srv:children()[1]
        for _, v in ipairs(VARIANTS) do
            load(srv.port, v.path, seconds, 1) -- warm-up: the JIT compiles under valgrind too
        end
        os.execute(string.format("callgrind_control -z %d >/dev/null 2>&1", worker))
        local t0 = core.hrtime()
        core.sleep(seconds * 1000)
        local idle_rate = callgrind_dump_total(dir, worker, "idle") / (core.hrtime() - t0)
        local per = {}
        for _, v in ipairs(VARIANTS) do
            os.execute(string.format("callgrind_control -z %d >/dev/null 2>&1", worker))
            t0 = core.hrtime()
            local r = load(srv.port, v.path, seconds, 1)
            local elapsed = core.hrtime() - t0
            local total = callgrind_dump_total(dir, worker, (v.path:gsub("%W", "")))
            per[v.path] = (total - idle_rate * elapsed) / math.max(r.requests or 1, 1)
        end
        return per
    end)
    nginx.BINARY = binary
    srv:destroy()
    if not ok then
        error(out, 0)
    end
    return out
end

common.run(rt, function(zk)
    ensure_wrk()
    local registry = "zookeeper://" .. zk.connect_string .. "?session_timeout=10000"
    local backend_ports = {}
    for i = 1, BACKENDS do
        backend_ports[i] = ports.pick_port()
    end
    local backend = nginx.new({ http = backend_http(backend_ports), workers = 1 })
    local proxy = new_proxy(registry, backend_ports, 2)
    local providers = {}
    local ok, err = pcall(function()
        backend:start()
        -- Registered as the examples do: `disco provide` per backend port
        -- (remote metadata, so the process only keeps its registration).
        for _, port in ipairs(backend_ports) do
            local log = os.tmpname()
            local p = process.spawn({
                argv = { BUILD .. "/disco", "provide", "--registry", registry, "--app", "hello",
                         "--host", "127.0.0.1", "--port", tostring(port), "--service", "com.acme.Hello",
                         "--protocol", "rest", "--storage", "remote" },
                log = log,
            })
            providers[#providers + 1] = p
            wait("a provider to register", 20000, function()
                return read_file(log):find("registered", 1, true)
            end)
            os.remove(log)
        end
        proxy:start()
        local cjson = require "cjson"
        wait("the list in the dict", 20000, function()
            local st = cjson.decode(proxy:get("/disco/status").body)
            return st.services[SID] and st.services[SID].nodes == BACKENDS
        end)
        wait_rendered(proxy, 2, 20000)
        for _, v in ipairs(VARIANTS) do
            local res = proxy:get(v.path)
            if res.status ~= 200 then
                error(v.path .. " answered " .. tostring(res.status) .. ":\n" .. (proxy:log() or ""), 0)
            end
        end
        local function accepts()
            return tonumber(backend:get("/status").body:match("\n%s*(%d+)%s+%d+%s+%d+")) or 0
        end
        print(string.format("nginx 1.22.1 (Debian) + lua-nginx-module, proxy 2 workers, backends 1 "
                            .. "worker, %d backends; wrk -t1 -c%d -d%ds, %d runs per variant",
                            BACKENDS, CONNECTIONS, SECONDS, RUNS))
        for _, v in ipairs(VARIANTS) do
            load(proxy.port, v.path, WARMUP_SECONDS)
        end
        local m = {}
        for _, v in ipairs(VARIANTS) do
            m[v.path] = { rps = {}, p50 = {}, p99 = {}, cpu = {}, conns = {}, errors = {} }
        end
        for run = 1, RUNS do
            -- Alternate the order too, so that no variant always follows
            -- the same one.
            local first, last, step = 1, #VARIANTS, 1
            if run % 2 == 0 then
                first, last, step = #VARIANTS, 1, -1
            end
            for i = first, last, step do
                local v = VARIANTS[i]
                local a0, c0 = accepts(), workers_cpu_ns(proxy)
                local r = load(proxy.port, v.path, SECONDS)
                local cpu = workers_cpu_ns(proxy) - c0
                local mv = m[v.path]
                mv.rps[run], mv.p50[run], mv.p99[run] = r.rps, r.p50, r.p99
                mv.cpu[run] = cpu / 1000 / math.max(r.requests or 1, 1)
                mv.conns[run] = accepts() - a0 - 1 -- minus the status request itself
                if r.errors then
                    mv.errors[#mv.errors + 1] = r.errors
                end
                print(string.format("run %d %-15s %9.1f req/s  p50 %.3f ms  p99 %.3f ms  proxy CPU %.2f us/req  "
                                    .. "%d new backend connections%s", run, v.path, r.rps, r.p50 or -1,
                                    r.p99 or -1, mv.cpu[run],
                                    mv.conns[run], r.errors and ("  " .. r.errors) or ""))
            end
        end
        local static = m["/static"]
        local rows = {}
        local verdict, ratio_of = {}, {}
        for _, v in ipairs(VARIANTS) do
            local mv = m[v.path]
            local ratios, cpu_ratios = {}, {}
            for run = 1, RUNS do
                ratios[run] = mv.rps[run] / static.rps[run]
                cpu_ratios[run] = mv.cpu[run] / static.cpu[run]
            end
            local is_static = v.path == "/static"
            if v.path == "/disco" or v.path == "/disco-rendered" then
                local r = results.median(ratios)
                ratio_of[v.path] = r
                verdict[#verdict + 1] = string.format(
                    "%s: disco/static req/s %.3f: %s (target: within 3 %%, >= 0.970); proxy CPU per "
                    .. "request disco/static %.3f", v.path == "/disco" and "balancer_by_lua path (/disco)"
                    or "rendered upstream (/disco-rendered)", r, r >= 0.97 and "met" or "NOT met",
                    results.median(cpu_ratios))
            end
            rows[#rows + 1] = { v.name, results.spread(mv.rps),
                                is_static and "1" or results.spread(ratios, "%.3f"),
                                results.spread(mv.p50, "%.3f"), results.spread(mv.p99, "%.3f"),
                                results.spread(mv.cpu, "%.1f"),
                                is_static and "1" or results.spread(cpu_ratios, "%.3f"),
                                results.spread(mv.conns, "%d") }
        end
        local best = ratio_of["/disco-rendered"] >= ratio_of["/disco"] and "/disco-rendered" or "/disco"
        verdict[#verdict + 1] = string.format("disco's best mode: %s, req/s %.3f of static: the 3 %% "
                                              .. "target is %s", best, ratio_of[best],
                                              ratio_of[best] >= 0.97 and "met" or "NOT met")
        local notes = {
            verdict[1], verdict[2], verdict[3],
            string.format("%d backends on 127.0.0.1 (one nginx, 1 worker, `return 200`), each registered "
                          .. "by `disco provide` as rest:com.acme.Hello; the proxy: Debian nginx 1.22.1, "
                          .. "2 workers, upstream keepalive 32 per worker, HTTP/1.1", BACKENDS),
            string.format("wrk -t1 -c%d -d%ds --latency on loopback; variants alternated (order reversed "
                          .. "every other run) %d times after a %d s warm-up each; ratio: per run pair, "
                          .. "median (min-max)", CONNECTIONS, SECONDS, RUNS, WARMUP_SECONDS),
            string.format("CPU contention: not pinned; on this machine's %s cores wrk, the proxy's 2 "
                          .. "workers, the backend nginx and ZooKeeper share the CPU, so req/s is the "
                          .. "throughput of the whole set, not of the proxy alone",
                          nproc()),
            "proxy CPU us/req: both workers' CPU time (/proc/PID/schedstat) over the requests wrk "
                .. "counted; less sensitive to the other load than req/s",
            "new backend connections: per run, from the backends' stub_status (keepalive held "
                .. "when it is at most 2 x 32)",
        }
        for _, v in ipairs(VARIANTS) do
            if #m[v.path].errors > 0 then
                notes[#notes + 1] = v.path .. ": " .. table.concat(m[v.path].errors, "; ")
            end
        end
        results.table("OpenResty: requests per second, disco routing vs a static upstream",
                      { "variant", "req/s", "req/s to static", "p50 ms", "p99 ms", "proxy CPU us/req",
                        "CPU to static", "new backend conns" },
                      rows, notes)
        local cg_seconds = tonumber(os.getenv("BENCH_RPS_CALLGRIND"))
        if cg_seconds then
            local per = instructions_per_request(registry, backend_ports, cg_seconds)
            local cg_rows = {}
            for _, v in ipairs(VARIANTS) do
                cg_rows[#cg_rows + 1] = { v.name, string.format("%.0f", per[v.path]),
                                          string.format("%+.0f", per[v.path] - per["/static"]),
                                          results.ratio(per[v.path], per["/static"]) }
            end
            results.table("OpenResty: proxy worker instructions per request (callgrind)",
                          { "variant", "instructions/request", "minus static", "to static" }, cg_rows,
                          { string.format("one worker under valgrind --tool=callgrind, wrk -c1 -d%ds per variant "
                                          .. "after a warm-up; the owner's idle instructions (the same "
                                          .. "worker, measured alone) subtracted; independent of the "
                                          .. "machine's load", cg_seconds) })
        end
    end)
    for p in pairs(live) do
        stop_proc(p)
    end
    proxy:destroy()
    backend:destroy()
    for _, p in ipairs(providers) do
        stop_proc(p)
    end
    if not ok then
        error(err, 0)
    end
end)
