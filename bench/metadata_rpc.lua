-- bench/metadata_rpc.lua: the MetadataService on loopback.
--
--   1. round trip of getMetadataInfo(revision) from disco's dubbo client to
--      a disco provider's MetadataService (local storage), p50/p99 over N
--      sequential calls on one connection, beside a dubbo heartbeat on the
--      same connection (the transport's floor);
--   2. decode throughput of a typical MetadataInfo (5 services, ~15
--      parameters each) in Hessian 2, beside cjson decoding the JSON form of
--      the same document (the remote storage mode's cost), in MB/s.
--
--   build/disco run bench/metadata_rpc.lua [N=2000]
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local cjson = require "cjson"
local metadata_hessian = require "disco.metadata.hessian"
local ports = require "disco.testing.ports"

local N = tonumber(arg[1]) or 2000

local function typical_provider()
    local p = rt:provider({ registry = "memory://bench", app = "bench-shop", host = "127.0.0.1",
                            port = ports.pick_port(), storage = "local", mapping = false })
    for s = 1, 5 do
        local params = {}
        for k = 1, 10 do
            params["param" .. k] = "value-" .. k .. "-" .. s
        end
        p:export({ interface = "com.acme.bench.Service" .. s, version = "1.0.0",
                   methods = { "get", "put", "list", "remove", "count" }, params = params })
    end
    return p
end

local ok, err = pcall(function()
    local p = typical_provider()
    local started
    p:start(function(e) started = e or true end)
    common.wait(rt.loop, function() return started ~= nil end, 10000, "provider start")
    assert(started == true, tostring(started))

    local client = assert(rt.loop:dubbo_client({ host = "127.0.0.1", port = p.metadata_server:port() }))
    local call = {
        path = "org.apache.dubbo.metadata.MetadataService", version = "1.0.0", group = "bench-shop",
        method = "getMetadataInfo", types = "Ljava/lang/String;", args = { p.revision }, attachments = {},
    }
    local function measure(fn)
        local times = {}
        for i = 1, N do
            local t0, done = core.hrtime(), false
            fn(function(e)
                assert(not e, e)
                done = true
            end)
            common.wait(rt.loop, function() return done end, 10000, "call " .. i)
            times[i] = core.hrtime() - t0
        end
        return times
    end
    local calls = measure(function(cb) client:call(call, function(e) cb(e) end) end)
    local beats = measure(function(cb) client:heartbeat(function(e) cb(e) end) end)
    print(string.format("MetadataService round trip on loopback, %d sequential calls:", N))
    print(string.format("  getMetadataInfo   p50 %6.3f ms   p99 %6.3f ms", common.percentile(calls, 0.5),
                        common.percentile(calls, 0.99)))
    print(string.format("  heartbeat (floor) p50 %6.3f ms   p99 %6.3f ms", common.percentile(beats, 0.5),
                        common.percentile(beats, 0.99)))
    client:close()

    local info = p:metadata()
    local h2 = assert(core.hessian2_encode(metadata_hessian.to_object(info)))
    local json = info:to_json()
    local function throughput(bytes, decode)
        local rounds = math.max(1, math.floor(20e6 / #bytes))
        local t0 = core.hrtime()
        for _ = 1, rounds do
            decode(bytes)
        end
        local ms = core.hrtime() - t0
        return rounds * #bytes / 1e6 / (ms / 1000), rounds
    end
    local h2_mbs = throughput(h2, function(b) assert(core.hessian2_decode(b)) end)
    local json_mbs = throughput(json, cjson.decode)
    print(string.format("decoding a typical MetadataInfo (5 services): Hessian 2 %d bytes, JSON %d bytes",
                        #h2, #json))
    print(string.format("  disco hessian2_decode  %7.1f MB/s", h2_mbs))
    print(string.format("  cjson.decode (JSON)    %7.1f MB/s   (ratio hessian2/json %.2f)", json_mbs,
                        h2_mbs / json_mbs))
    p:stop(function() end)
end)
if not ok then
    io.stderr:write("bench failed: ", tostring(err), "\n")
    return rt:stop(1)
end
rt:after(100, function() rt:stop(0) end)
