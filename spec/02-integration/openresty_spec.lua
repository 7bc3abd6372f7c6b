-- disco inside Debian's nginx (libnginx-mod-http-lua + lua-resty-core),
-- real everything: ZooKeeper, nginx with 2 workers running
-- examples/openresty/nginx.conf, and HTTP providers (spec/support/http_provider.lua) that
-- register themselves as a `rest` service. The tests run in order on one
-- nginx: traffic to both providers, a provider added, one killed, a HUP
-- reload under traffic, worker 0 killed.
local helpers = require "spec.helpers"
local nginx = require "spec.support.nginx"
local process = require "disco.testing.process"
local ports = require "disco.testing.ports"

local cjson = require "cjson"

local SID = "rest:com.acme.Hello"

-- The example configuration, run as it is but for its paths, port and
-- registry (and the build directory: build-asan under `make asan`).
local function example_nginx(registry)
    return nginx.from_file("examples/openresty/nginx.conf", {
        { "/tmp/disco-nginx", "${prefix}" },
        { "zookeeper://127.0.0.1:2181", registry },
        { "listen 127.0.0.1:8080", "listen 127.0.0.1:${port}" },
        { "$prefix/build/lib", "$prefix/${build}/lib" },
        -- Each answer names the attempts nginx made (the feedback spec).
        { "proxy_next_upstream error timeout;",
          "proxy_next_upstream error timeout;\n            add_header X-Disco-Attempts $upstream_addr always;" },
    })
end

-- "port=count ..." of a traffic() result, for failure messages.
local function describe_seen(seen)
    local parts = {}
    for port, n in pairs(seen) do
        parts[#parts + 1] = port .. "=" .. n
    end
    table.sort(parts)
    return table.concat(parts, " ")
end

local function now_ms()
    return helpers.core.hrtime()
end

local wait_for = process.poll

describe("disco in Debian's nginx #openresty", function()
    if not nginx.available() then
        pending("nginx with the Lua module is not installed")
        return
    end

    local registry, srv
    local providers = {}

    local function spawn_provider(app)
        local port = ports.pick_port()
        local log = helpers.tmpdir() .. "/provider.log"
        local proc = process.spawn({
            argv = { helpers.disco_bin, "run", "spec/support/http_provider.lua", registry, app,
                     tostring(port) },
            log = log,
        })
        local p = { port = port, proc = proc, log = log }
        wait_for("provider on port " .. port .. " to register", 20000, function()
            return (helpers.read_file(log) or ""):find("registered", 1, true)
        end)
        p.registered_at = now_ms()
        providers[#providers + 1] = p
        return p
    end

    local function status()
        local res = srv:get("/disco/status")
        assert.equal(200, res.status, res.body)
        return cjson.decode(res.body)
    end

    local function node_ports()
        local res = srv:get("/disco/status?nodes=" .. SID)
        local list = {}
        for _, node in ipairs(cjson.decode(res.body).nodes or {}) do
            list[#list + 1] = node.port
        end
        table.sort(list)
        return list
    end

    -- Counts responses per provider port; fails on any non-200.
    local function traffic(count)
        local seen = {}
        for i, res in ipairs(srv:get_many("/", count)) do
            assert.equal(200, res.status, "request " .. i .. " failed: " .. tostring(res.body)
                         .. "\n" .. (srv:log() or ""):sub(-3000))
            local port = tonumber(res.body:match("hello from (%d+)"))
            assert.is_number(port, res.body)
            seen[port] = (seen[port] or 0) + 1
        end
        return seen
    end

    setup(function()
        local zk = helpers.zookeeper()
        local root = string.format("/resty%d_%d", helpers.core.getpid(), os.time())
        registry = "zookeeper://" .. zk.connect_string .. "?session_timeout=4000&root=" .. root
        spawn_provider("hello")
        spawn_provider("hello")
        srv = example_nginx(registry)
        srv:start()
        wait_for("both providers in the dict", 15000, function()
            return #node_ports() == 2
        end)
    end)

    teardown(function()
        if srv then
            srv:destroy()
        end
        for _, p in ipairs(providers) do
            if process.group_is_ours(p.proc) then
                process.kill_group(p.proc.pgid, "KILL")
            end
        end
    end)

    it("runs the owner in worker 0 only, and nothing of it in the master", function()
        local st = status()
        assert.equal("running", st.owner.state)
        assert.equal("worker0", st.owner.mode)
        local master = nginx.inspect(srv:master_pid())
        -- No ZooKeeper thread, no libuv loop (epoll, eventfd) in the master.
        assert.equal(1, master.threads)
        for _, target in ipairs(master.fds) do
            assert.is_nil(target:find("anon_inode", 1, true), target)
        end
        local children = srv:children()
        assert.equal(2, #children)
        local with_threads = {}
        for _, pid in ipairs(children) do
            if nginx.inspect(pid).threads > 1 then
                with_threads[#with_threads + 1] = pid
            end
        end
        assert.same({ st.owner.pid }, with_threads)
    end)

    it("is ready (the APISIX-shaped adapter's check)", function()
        local res = srv:get("/disco/ready")
        assert.equal(200, res.status, res.body)
        assert.equal("ready\n", res.body)
    end)

    it("reaches both providers through the balancer", function()
        -- Round robin per worker: each provider gets a fair share.
        local seen = traffic(20)
        assert.is_true((seen[providers[1].port] or 0) >= 5, describe_seen(seen))
        assert.is_true((seen[providers[2].port] or 0) >= 5, describe_seen(seen))
    end)

    it("reports every attempt: the flushed counts add up to the attempts nginx made", function()
        -- What was handled before, once every worker flushed (0.2 s).
        process.sleep(500)
        local before = status().counters.feedback_handled
        -- 20 requests; each answer names its attempts ($upstream_addr, in
        -- a header the spec adds): a retry on a keep-alive connection the
        -- provider closed is an attempt too.
        local url = "http://127.0.0.1:" .. srv.port .. "/"
        local cmd = { "env -u LD_PRELOAD curl -s -H 'Connection: close' --max-time 5",
                      "-w 'attempts=%header{x-disco-attempts}\\n'" }
        for _ = 1, 20 do
            cmd[#cmd + 1] = "-o /dev/null " .. url
        end
        local pipe = io.popen(table.concat(cmd, " ") .. " 2>/dev/null")
        local out = pipe:read("*a")
        pipe:close()
        local requests, attempts = 0, 0
        for addrs in out:gmatch("attempts=([^\n]*)\n") do
            requests = requests + 1
            for _ in addrs:gmatch("[^,:%s]+:%d+") do
                attempts = attempts + 1
            end
        end
        assert.equal(20, requests, out)
        assert.is_true(attempts >= 20, out)
        wait_for("the attempts to be handled", 5000, function()
            return status().counters.feedback_handled - before >= attempts
        end)
        -- A flush interval later, not one more.
        process.sleep(500)
        local counters = status().counters
        assert.equal(attempts, counters.feedback_handled - before)
        assert.equal(0, counters.feedback_queued)
    end)

    it("sends traffic to a new provider within one second of its registration", function()
        local p = spawn_provider("hello")
        local reached
        while now_ms() - p.registered_at < 1000 do
            local res = srv:get("/")
            assert.equal(200, res.status, res.body)
            if res.body:find("hello from " .. p.port, 1, true) then
                reached = now_ms() - p.registered_at
                break
            end
        end
        assert.is_number(reached, "no request reached the new provider within 1 s")
        assert.equal(3, #node_ports())
    end)

    it("keeps answering when a provider dies, then drops it from the list", function()
        local victim = table.remove(providers, 1)
        assert.is_true(process.signal(victim.proc.pid, "KILL"))
        assert.is_true(process.wait_dead(victim.proc.pid, 5000))
        -- The dead node is still listed: retries on the others hide it.
        local seen = traffic(30)
        assert.is_nil(seen[victim.port])
        -- Its session expires (4 s), the validation chain confirms.
        wait_for("the dead provider to leave the list", 20000, function()
            local list = node_ports()
            return #list == 2 and list[1] ~= victim.port and list[2] ~= victim.port
        end)
        seen = traffic(40)
        assert.is_true((seen[providers[1].port] or 0) >= 10, describe_seen(seen))
        assert.is_true((seen[providers[2].port] or 0) >= 10, describe_seen(seen))
        -- Every attempt was reported to the owner (the dead node's failures
        -- too): each worker counts its attempts per address and flushes the
        -- counts every feedback_flush (0.2 s), the owner hands them to the
        -- consumer's report_calls, and feedback_handled adds up the counts.
        local counters = wait_for("the reports to be handled", 5000, function()
            local c = status().counters
            return c.feedback_queued == 0 and c.feedback_handled >= 20 + 30 + 40 and c
        end)
        assert.is_true(counters.publish_ok >= 3)
        assert.equal(0, counters.feedback_dropped)
        assert.equal(0, counters.feedback_failed)
        assert.equal(0, counters.feedback_malformed)
    end)

    it("loses no request across a HUP reload", function()
        local before = status()
        local out = helpers.tmpdir() .. "/traffic.out"
        local count = 150
        local argv = { "curl", "-s", "-H", "Connection: close", "--max-time", "5",
                       "-w", "\\n@@%{http_code}\\n" }
        for _ = 1, count do
            argv[#argv + 1] = "http://127.0.0.1:" .. srv.port .. "/"
        end
        local curl = process.spawn({ argv = argv, log = out })
        process.sleep(300)
        assert.is_true(srv:reload())
        assert.is_true(process.wait_dead(curl.pid, 60000))
        local statuses = {}
        for code in (helpers.read_file(out) or ""):gmatch("@@(%d+)") do
            statuses[#statuses + 1] = tonumber(code)
        end
        assert.equal(count, #statuses)
        for i, code in ipairs(statuses) do
            assert.equal(200, code, "request " .. i .. " of the reload traffic")
        end
        -- The new generation's worker 0 owns the dict, the old one is gone.
        local after = wait_for("the new owner", 10000, function()
            local st = status()
            return st.owner.generation > before.owner.generation and st.owner.state == "running"
                and st
        end)
        assert.are_not.equal(before.owner.pid, after.owner.pid)
        wait_for("the old workers to exit", 15000, function()
            return #srv:children() == 2
        end)
        assert.matches("owner (generation " .. before.owner.generation .. ") closed",
                       srv:log(), 1, true)
        traffic(10)
    end)

    it("keeps answering when worker 0 is killed, and the new worker 0 takes over", function()
        local before = status()
        local old = before.owner.pid
        assert.is_true(process.signal(old, "KILL"))
        local seen = traffic(30)
        assert.is_true((seen[providers[1].port] or 0) + (seen[providers[2].port] or 0) == 30)
        local after = wait_for("a new owner", 10000, function()
            local st = status()
            return st.owner.pid ~= old and st.owner.state == "running" and st
        end)
        assert.is_true(after.owner.generation > before.owner.generation)
        assert.is_true(process.alive(after.owner.pid))
        assert.equal(2, #node_ports())
        traffic(10)
    end)
end)

describe("disco in Debian's nginx, a reload while ZooKeeper is down #openresty", function()
    if not nginx.available() then
        pending("nginx with the Lua module is not installed")
        return
    end

    local zk, srv, provider
    teardown(function()
        if srv then
            srv:destroy()
        end
        if provider and process.group_is_ours(provider) then
            process.kill_group(provider.pgid, "KILL")
        end
        if zk then
            zk:destroy()
        end
    end)

    it("keeps serving the previous list until the new owner has one", function()
        zk = helpers.zookeeper_server()
        zk:start()
        local registry = "zookeeper://" .. zk.connect_string .. "?session_timeout=20000"
        local log = helpers.tmpdir() .. "/provider.log"
        provider = process.spawn({
            argv = { helpers.disco_bin, "run", "spec/support/http_provider.lua", registry, "hello",
                     tostring(ports.pick_port()) },
            log = log,
        })
        wait_for("the provider to register", 20000, function()
            return (helpers.read_file(log) or ""):find("registered", 1, true)
        end)
        srv = example_nginx(registry)
        srv:start()
        local function st()
            return cjson.decode(srv:get("/disco/status").body)
        end
        local before = wait_for("the list", 15000, function()
            local s = st()
            return s.services[SID].nodes == 1 and s.owner.state == "running" and s
        end)
        -- ZooKeeper is down: the new generation's owner cannot resolve
        -- anything (its mapping fails, so its first list is empty), and
        -- that list must not reach the dict.
        zk:stop()
        assert.is_true(srv:reload())
        local during = wait_for("the new owner's claim", 10000, function()
            local s = st()
            return s.owner.generation > before.owner.generation and s
        end)
        assert.are_not.equal("running", during.owner.state)
        local deadline = now_ms() + 1500
        while now_ms() < deadline do
            local res = srv:get("/")
            assert.equal(200, res.status, res.body)
            local s = st()
            assert.equal(before.services[SID].version, s.services[SID].version)
            assert.equal(1, s.services[SID].nodes)
        end
        assert.matches("is held (the registry is not connected)", srv:log(), 1, true)
        zk:start()
        local after = wait_for("the new owner to resolve", 20000, function()
            local s = st()
            return s.owner.state == "running" and s
        end)
        assert.equal(1, after.services[SID].nodes)
        assert.equal(200, srv:get("/").status)
    end)
end)

describe("disco in Debian's nginx, before any list #openresty", function()
    if not nginx.available() then
        pending("nginx with the Lua module is not installed")
        return
    end

    local srv
    teardown(function()
        if srv then
            srv:destroy()
        end
    end)

    it("is not ready and answers 503 while the registry never answers", function()
        -- Nothing listens on port 1: the owner starts, never gets a list.
        srv = example_nginx("zookeeper://127.0.0.1:1")
        srv:start()
        local res = srv:get("/disco/ready")
        assert.equal(503, res.status)
        assert.equal("no list published yet for " .. SID .. "\n", res.body)
        res = srv:get("/")
        assert.equal(503, res.status)
        local st = cjson.decode(srv:get("/disco/status").body)
        assert.equal("starting", st.owner.state)
        assert.is_nil(st.services[SID].version)
        assert.equal(0, st.services[SID].nodes)
    end)
end)

describe("the shared-dict protocol on a real ngx.shared dict #openresty", function()
    if not nginx.available() then
        pending("nginx with the Lua module is not installed")
        return
    end

    local srv
    teardown(function()
        if srv then
            srv:destroy()
        end
    end)

    it("keeps the previous list when a new one does not fit, and evicts nothing", function()
        srv = nginx.new({ workers = 1, http = [[
            lua_shared_dict small 64k;
            server {
                listen 127.0.0.1:${port};
                location = /t {
                    content_by_lua_block {
                        local shared = require "disco.resty.shared"
                        local cjson = require "cjson"
                        local dict = ngx.shared.small
                        local sid = "rest:com.acme.Hello"
                        local small = shared.encode({ { host = "10.0.0.1", port = 80, weight = 100 } })
                        local out = { v1 = shared.publish(dict, sid, small) }
                        local fillers = 0
                        while dict:safe_set("filler" .. fillers + 1, string.rep("f", 200)) do
                            fillers = fillers + 1
                        end
                        local big = {}
                        for i = 1, 2000 do
                            big[i] = { host = "10.0." .. math.floor(i / 256) .. "." .. i % 256,
                                       port = 80, weight = 100 }
                        end
                        out.v2, out.err = shared.publish(dict, sid, shared.encode(big))
                        out.current = shared.current_text(dict, sid) == small
                        out.failed = shared.counter(dict, "publish_failed")
                        out.pushed = shared.push_feedback(dict, "10.0.0.1:80", 1, 0, 1, 0, nil, 100)
                        local kept = 0
                        for i = 1, fillers do
                            if dict:get("filler" .. i) then
                                kept = kept + 1
                            end
                        end
                        out.fillers, out.kept = fillers, kept
                        out.nodes = #shared.reader(dict).nodes(sid)
                        ngx.say(cjson.encode(out))
                    }
                }
            }
        ]] })
        srv:start()
        local res = srv:get("/t")
        assert.equal(200, res.status, res.body)
        local out = cjson.decode(res.body)
        assert.equal(1, out.v1)
        assert.is_nil(out.v2)
        assert.matches("no memory (the previous list stays)", out.err, 1, true)
        assert.is_true(out.current)
        assert.equal(1, out.nodes)
        assert.is_true(out.fillers > 100)
        assert.equal(out.fillers, out.kept)
    end)
end)
