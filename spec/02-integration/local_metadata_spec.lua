-- Local storage mode for real: providers serve their MetadataInfo over the
-- dubbo protocol and consumers call it once per revision, on a real
-- ZooKeeper: 300 instances in 3 revisions cost exactly 3 MetadataService
-- calls, and `disco provide --storage local` in one process is resolved by
-- `disco resolve` in another.
local flows = require "spec.support.flows"
local helpers = require "spec.helpers"
local ports = require "disco.testing.ports"
local process = require "disco.testing.process"
local regspec = require "spec.support.registry"
local run_all = regspec.run_all

local IFACE = "com.acme.Local"
local SID = "dubbo:" .. IFACE .. ":1.0.0"

describe("local storage mode over the dubbo protocol #zookeeper", function()
    local fx = flows.fixture("local")
    local runtime = fx.runtime
    local url

    before_each(function()
        fx.setup()
        url = fx.url
    end)

    after_each(fx.teardown)

    it("resolves 300 instances in 3 revisions with exactly 3 MetadataService calls", function()
        local prt, crt = runtime(), runtime()
        local providers, pending, failed = {}, 300, {}
        for i = 1, 300 do
            local p = prt:provider({ registry = url, app = "shop", host = "127.0.0.1",
                                     port = ports.pick_port(), storage = "local", mapping = false,
                                     revision_port = false })
            p:export({ interface = IFACE, version = "1.0.0", methods = { "get" },
                       params = { weight = tostring(100 + i % 3) } })
            providers[i] = p
            p:start(function(err)
                pending = pending - 1
                if err then
                    failed[#failed + 1] = err
                end
            end)
        end
        assert.is_true(run_all({ prt }, function() return pending == 0 end, 60000))
        assert.same({}, failed)
        local p1 = providers[1].instance.metadata
        assert.equal("local", p1["dubbo.metadata.storage-type"])
        assert.equal("1.0.0", p1["meta-v"])
        local params = require("cjson").decode(p1["dubbo.metadata-service.url-params"])
        assert.equal(tostring(providers[1].instance.port), params.port)
        assert.equal("hessian2", params.serialization)

        local consumer = crt:consumer({ registry = url })
        local last
        consumer:subscribe(SID, function(_, list) last = list end, { provided_by = { "shop" } })
        assert.is_true(run_all({ prt, crt }, function() return last and #last == 300 end, 30000))
        local served = 0
        for _, p in ipairs(providers) do
            served = served + p.metadata_server.calls
        end
        assert.equal(3, served)
        assert.equal(3, consumer:counters().fetch_calls)
        for _, entry in ipairs(last) do
            local i
            for k, p in ipairs(providers) do
                if p.instance.port == entry.port then
                    i = k
                end
            end
            assert.is_not_nil(i)
            assert.equal(tostring(100 + i % 3), entry.service.params.weight)
        end
    end)

    it("serves disco resolve in another process from disco provide --storage local", function()
        local port = ports.pick_port()
        local proc, line = flows.spawn_provider({ "--registry", url, "--app", "billing",
            "--host", "127.0.0.1", "--port", tostring(port), "--service", IFACE .. ":1.0.0",
            "--method", "charge", "--storage", "local" })
        assert.matches("registered billing at 127%.0%.0%.1:" .. port, line)
        local ok, out = process.shell(helpers.shell_quote(helpers.disco_bin) .. " resolve --registry "
                                      .. helpers.shell_quote(url) .. " " .. SID)
        assert.is_true(ok, out)
        assert.matches("^dubbo://127%.0%.0%.1:" .. port .. "/" .. IFACE:gsub("%.", "%%.") .. "%?", out)
        assert.matches("methods=charge", out, 1, true)
        process.signal(proc.pid, "TERM")
        assert.is_true(process.wait_dead(proc.pid, 10000, proc.start_time))
    end)
end)
