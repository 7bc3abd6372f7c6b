-- Shared by the ZooKeeper benchmarks: a local server, populating an
-- application with instance nodes, statistics, and RSS.
local zookeeper = require "disco.testing.zookeeper"
local zk_instance = require "disco.registry.zk_instance"
local core = require "disco.core"
local instance_model = require "disco.instance"
local metadata_info = require "disco.metadata_info"

local _M = {}

-- The server runs on the JVM's defaults, as Debian's zookeeper service
-- does (JAVA_OPTS="" in /etc/zookeeper/conf/environment): the full JIT and
-- an ergonomic heap. The test fixture's JVM (256 MB, serial GC, C1 only)
-- starts fast and small for the tests, but it is not the server users
-- run, and it answers reads more slowly.
local JAVA_OPTS = { "-Djava.net.preferIPv4Stack=true", "-XX:-UsePerfData" }

function _M.server()
    local zk = zookeeper.server({ cfg = { "jute.maxbuffer=4194304" }, java_opts = JAVA_OPTS })
    zk:start()
    return zk
end

--- Runs `body(zk)` against a fresh local server, stops the server whatever
-- happens, and stops `rt` with 0, or 1 after reporting the error.
function _M.run(rt, body)
    local zk = _M.server()
    local ok, err = pcall(body, zk)
    zk:destroy()
    if not ok then
        io.stderr:write("bench failed: ", tostring(err), "\n")
        return rt:stop(1)
    end
    rt:stop(0)
end

--- Drives `loop` until pred() or timeout (ms); raises on timeout.
function _M.wait(loop, pred, ms, what)
    local deadline = core.hrtime() + (ms or 60000)
    while not pred() do
        if core.hrtime() > deadline then
            error("timed out waiting for " .. (what or "a condition"), 2)
        end
        loop:run_once()
    end
end

--- Polls fn() every 50 ms, without driving a loop (for conditions other
-- processes make true): disco.testing.process.poll(what, ms, fn).
_M.poll = require("disco.testing.process").poll

--- A connected raw session.
function _M.session(loop, hosts)
    local s = assert(loop:zk({ hosts = hosts }))
    _M.wait(loop, function() return s:state() == "connected" end, 20000, "connect")
    -- A ticking timer keeps run_once from blocking forever.
    return s
end

--- Instance number i: 127.x.y.z hosts, ports from 20000, ~300 bytes.
function _M.instance(app, i)
    local host = string.format("127.%d.%d.%d", math.floor(i / 65536) % 256,
                               math.floor(i / 256) % 256, i % 256)
    return {
        name = app, host = host, port = 20000 + (i % 1000),
        registration_time = 1700000000000 + i,
        metadata = {
            ["dubbo.metadata.revision"] = string.format("%032x", i % 3),
            ["dubbo.metadata.storage-type"] = "local",
            ["dubbo.endpoints"] = '[{"port":20880,"protocol":"dubbo"}]',
            ["timestamp"] = tostring(1700000000000 + i),
        },
    }
end

--- Three revisions of one service `iface` of `app`: MetadataInfos that
-- differ only by the weight; `methods` (a "get,put" list) is optional.
function _M.revisions(app, iface, methods)
    local list = {}
    for v = 1, 3 do
        local info = metadata_info.new(app)
        info:add(metadata_info.service({
            name = iface, version = "1.0.0", port = -1,
            params = { application = app, interface = iface, methods = methods,
                       side = "provider", version = "1.0.0", weight = tostring(100 * v) },
        }))
        metadata_info.revision_of(info)
        list[v] = info
    end
    return list
end

--- A `make` for `populate`: instance i on 127.0.0.1, port base_port + i,
-- in revision i % 3 of `infos`, remote metadata storage.
function _M.remote_instance_maker(infos, base_port)
    return function(app, i)
        local inst = instance_model.new({ name = app, host = "127.0.0.1", port = base_port + i,
                                          metadata = { timestamp = tostring(1700000000000 + i) } })
        instance_model.set_revision(inst, infos[i % 3 + 1].revision)
        instance_model.set_storage_type(inst, "remote")
        instance_model.set_endpoints(inst, { { port = base_port + i, protocol = "dubbo" } })
        inst.registration_time = 1700000000000 + i
        return inst
    end
end

--- Creates n persistent instance nodes under /services/app, pipelined;
-- instance i is `make(app, i)` (default `_M.instance`).
function _M.populate(loop, session, app, n, make)
    make = make or _M.instance
    local done, failed, inflight, next_i = 0, 0, 0, 0
    local function pump()
        while inflight < 2000 and next_i < n do
            local inst = make(app, next_i)
            next_i = next_i + 1
            inflight = inflight + 1
            session:create("/services/" .. app .. "/" .. inst.host .. ":" .. inst.port,
                           zk_instance.encode(inst), { parents = true }, function(err)
                inflight = inflight - 1
                done = done + 1
                if err and not err:match("^ENODEEXISTS") then
                    failed = failed + 1
                end
                pump()
            end)
        end
    end
    pump()
    _M.wait(loop, function() return done == n end, 300000, "populate")
    assert(failed == 0, failed .. " creates failed")
end

function _M.median(list)
    local s = {}
    for i, v in ipairs(list) do
        s[i] = v
    end
    table.sort(s)
    local n = #s
    if n % 2 == 1 then
        return s[(n + 1) / 2]
    end
    return (s[n / 2] + s[n / 2 + 1]) / 2
end

function _M.percentile(list, p)
    local s = {}
    for i, v in ipairs(list) do
        s[i] = v
    end
    table.sort(s)
    return s[math.max(1, math.ceil(#s * p))]
end

function _M.rss_kib()
    for line in io.lines("/proc/self/status") do
        local kib = line:match("^VmRSS:%s+(%d+) kB")
        if kib then
            return tonumber(kib)
        end
    end
end

return _M
