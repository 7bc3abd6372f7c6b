-- The rendered-upstream mode in Debian's nginx, real everything:
-- ZooKeeper, nginx (2 workers) running examples/openresty/nginx-rendered.conf,
-- whose `upstream` block includes the file
-- disco's owner writes (no balancer_by_lua: requests run no Lua), and HTTP
-- providers registered as a `rest` service. The tests run in order on one
-- nginx: the placeholder, both providers listed and reached after one
-- reload, no second reload, a provider leaving, the last one leaving.
local helpers = require "spec.helpers"
local nginx = require "spec.support.nginx"
local process = require "disco.testing.process"
local ports = require "disco.testing.ports"
local upstream_file = require "disco.resty.upstream_file"

local cjson = require "cjson"

local SID = "rest:com.acme.Hello"

local wait_for = process.poll

-- The ports of a rendered file's server lines, sorted; "down" for the
-- placeholder of an empty list.
local function file_ports(text)
    local list = {}
    for port, rest in ("\n" .. (text or "")):gmatch("\nserver 127%.0%.0%.1:(%d+)([^\n]*);") do
        list[#list + 1] = rest:find("down", 1, true) and "down" or tonumber(port)
    end
    table.sort(list, function(a, b) return tostring(a) < tostring(b) end)
    return list
end

local function same_set(a, b)
    if #a ~= #b then
        return false
    end
    local set = {}
    for _, v in ipairs(a) do
        set[v] = true
    end
    for _, v in ipairs(b) do
        if not set[v] then
            return false
        end
    end
    return true
end

describe("disco in Debian's nginx, rendered upstream #openresty", function()
    if not nginx.available() then
        pending("nginx with the Lua module is not installed")
        return
    end

    local registry, srv, path
    local providers = {}

    local function spawn_provider()
        local port = ports.pick_port()
        local log = helpers.tmpdir() .. "/provider.log"
        local proc = process.spawn({
            argv = { helpers.disco_bin, "run", "spec/support/http_provider.lua", registry, "hello",
                     tostring(port) },
            log = log,
        })
        local p = { port = port, proc = proc }
        wait_for("provider on port " .. port .. " to register", 20000, function()
            return (helpers.read_file(log) or ""):find("registered", 1, true)
        end)
        providers[#providers + 1] = p
        return p
    end

    -- Ends a provider the way an operator does (TERM: its session closes,
    -- its registration goes).
    local function stop_provider(p)
        assert.is_true(process.signal(p.proc.pid, "TERM"))
        assert.is_true(process.wait_dead(p.proc.pid, 10000, p.proc.start_time))
        for i, q in ipairs(providers) do
            if q == p then
                table.remove(providers, i)
            end
        end
    end

    local function status()
        local res = srv:get("/disco/status")
        assert.equal(200, res.status, res.body)
        return cjson.decode(res.body)
    end

    local function provider_ports()
        local list = {}
        for _, p in ipairs(providers) do
            list[#list + 1] = p.port
        end
        return list
    end

    local function sorted(list)
        table.sort(list)
        return list
    end

    -- Requests until the answers come from exactly `want` (ports), every
    -- one 200 (bounded: the old workers drain after a reload).
    local function wait_routing(want, timeout_ms)
        local last
        wait_for("requests to reach exactly " .. table.concat(want, ","), timeout_ms, function()
            local seen, list = {}, {}
            for _, res in ipairs(srv:get_many("/", 4 * #want)) do
                local port = res.status == 200 and tonumber(res.body:match("hello from (%d+)"))
                if not port then
                    last = tostring(res.status) .. " " .. tostring(res.body)
                    return false
                end
                if not seen[port] then
                    seen[port] = true
                    list[#list + 1] = port
                end
            end
            last = table.concat(sorted(list), ",")
            return same_set(list, want)
        end)
        return last
    end

    -- The ports nginx tried (its $upstream_addr, in a header) over `count`
    -- requests: port -> attempts; "none" counts answers without a peer.
    local function attempts(count)
        local url = "http://127.0.0.1:" .. srv.port .. "/"
        local cmd = { "env -u LD_PRELOAD curl -s -H 'Connection: close' --max-time 5",
                      "-w 'attempts=%header{x-attempts}\\n'" }
        for _ = 1, count do
            cmd[#cmd + 1] = "-o /dev/null " .. url
        end
        local pipe = io.popen(table.concat(cmd, " ") .. " 2>/dev/null")
        local out = pipe:read("*a")
        pipe:close()
        local tried, answers = {}, 0
        for addrs in out:gmatch("attempts=([^\n]*)\n") do
            answers = answers + 1
            local any = false
            for port in addrs:gmatch("127%.0%.0%.1:(%d+)") do
                tried[tonumber(port)] = (tried[tonumber(port)] or 0) + 1
                any = true
            end
            if not any then
                tried.none = (tried.none or 0) + 1
            end
        end
        assert.equal(count, answers, out)
        return tried
    end

    -- The master's children once the old generation has exited.
    local function settled_children()
        return sorted(wait_for("2 workers", 20000, function()
            local c = srv:children()
            return #c == 2 and c
        end))
    end

    -- The workers once a reload replaced every one of `old` (a count of 2
    -- alone can be the old generation, before the new one is forked).
    local function replaced_children(old)
        return wait_for("the workers to be replaced", 20000, function()
            local c = settled_children()
            for _, pid in ipairs(c) do
                for _, gone in ipairs(old) do
                    if gone == pid then
                        return false
                    end
                end
            end
            return c
        end)
    end

    setup(function()
        local zk = helpers.zookeeper()
        local root = string.format("/render%d_%d", helpers.core.getpid(), os.time())
        registry = "zookeeper://" .. zk.connect_string .. "?session_timeout=4000&root=" .. root
        spawn_provider()
        spawn_provider()
        -- The example configuration, as it is but for its paths, port,
        -- registry and reload interval (and the build directory).
        srv = nginx.from_file("examples/openresty/nginx-rendered.conf", {
            { "/tmp/disco-nginx", "${prefix}" },
            { "zookeeper://127.0.0.1:2181", registry },
            { "listen 127.0.0.1:8080", "listen 127.0.0.1:${port}" },
            { "$prefix/build/lib", "$prefix/${build}/lib" },
            { "reload_interval = 1,", "reload_interval = 0.3," },
            -- Each answer names the attempts nginx made.
            { "proxy_next_upstream error timeout;",
              "proxy_next_upstream error timeout;\n            add_header X-Attempts $upstream_addr always;" },
        })
        path = srv.prefix .. "/hello.servers"
        -- The placeholder nginx needs before it can start, as
        -- docs/openresty.md and the example create it.
        assert.is_true(upstream_file.write_if_changed(path, upstream_file.EMPTY_LINE .. "\n"))
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

    local master, reloads, children

    it("starts on the placeholder, then lists both providers and reaches them after one reload", function()
        assert.same({ "down" }, file_ports(helpers.read_file(path)))
        srv:start()
        master = srv:master_pid()
        wait_for("both providers in the file", 20000, function()
            return same_set(file_ports(helpers.read_file(path)), provider_ports())
        end)
        wait_routing(provider_ports(), 20000)
        local st = wait_for("the reload to be counted", 5000, function()
            local s = status()
            return s.upstream_files and s.upstream_files.reloads >= 1 and s
        end)
        assert.equal(1, st.upstream_files.reloads)
        assert.equal(path, st.upstream_files.files[SID])
        assert.is_nil(st.upstream_files.last_error)
        assert.equal(master, srv:master_pid())
        reloads = st.upstream_files.reloads
        children = settled_children()
        -- The text is what render() makes of the list: nothing else.
        assert.matches("^# Written by disco", helpers.read_file(path))
    end)

    it("does not reload again once the new generation renders the same text", function()
        local writes = status().upstream_files.writes
        -- The new generation's owner runs (the first one was generation 1)
        -- and has rendered its first list: a render that wrote nothing
        -- (the first owner rendered each text it wrote once).
        wait_for("the new owner to render", 10000, function()
            local s = status()
            return s.owner.state == "running" and s.owner.generation == 2
                and s.upstream_files.renders > s.upstream_files.writes
        end)
        -- A few reload intervals later: nothing more.
        process.sleep(1500)
        local st = status()
        assert.equal(reloads, st.upstream_files.reloads)
        assert.equal(writes, st.upstream_files.writes)
        assert.equal(2, st.owner.generation)
        assert.equal(master, srv:master_pid())
        assert.same(children, settled_children())
        assert.is_true(process.alive(master))
    end)

    it("follows a provider leaving: the file, one reload, and the routing change", function()
        local leaving = providers[1]
        stop_provider(leaving)
        wait_for("the file without the provider", 20000, function()
            return same_set(file_ports(helpers.read_file(path)), provider_ports())
        end)
        local st = wait_for("the reload", 5000, function()
            local s = status()
            return s.upstream_files.reloads > reloads and s
        end)
        assert.equal(reloads + 1, st.upstream_files.reloads)
        local now_children = replaced_children(children)
        -- The new workers never try the address that left (the old ones
        -- did, until it failed: nginx retried on the other).
        wait_routing(provider_ports(), 20000)
        local tried = attempts(20)
        assert.is_nil(tried[leaving.port])
        assert.equal(20, tried[providers[1].port])
        -- And no other reload after it.
        process.sleep(1500)
        assert.equal(reloads + 1, status().upstream_files.reloads)
        assert.same(now_children, settled_children())
        assert.equal(master, srv:master_pid())
        reloads, children = reloads + 1, now_children
    end)

    it("renders the last provider leaving as the down line: nginx answers 502", function()
        stop_provider(providers[1])
        wait_for("the empty list in the file", 30000, function()
            return same_set(file_ports(helpers.read_file(path)), { "down" })
        end)
        assert.matches(upstream_file.EMPTY_LINE, helpers.read_file(path), 1, true)
        wait_for("the reload", 5000, function()
            return status().upstream_files.reloads == reloads + 1
        end)
        replaced_children(children)
        -- No peer to try: nginx answers 502 at once, naming no address.
        wait_for("nginx to answer 502", 20000, function()
            return srv:get("/").status == 502
        end)
        assert.same({ none = 5 }, attempts(5))
        assert.equal(master, srv:master_pid())
    end)
end)
