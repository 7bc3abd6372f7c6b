-- The provider and consumer flows on etcd, as flows_zookeeper_spec runs
-- them on ZooKeeper: many instances in 3 revisions read with exactly 3
-- metadata fetches, an application mapped later joining a live
-- subscription through the mapping key, and remote-mode metadata written
-- by another process (`disco provide`, `disco resolve`, SIGTERM
-- unregistering).
local disco = require "disco"
local etcd = require "spec.support.etcd"
local helpers = require "spec.helpers"
local process = require "disco.testing.process"
local regspec = require "spec.support.registry"
local run_all = regspec.run_all

local IFACE = "com.acme.Cart"
local SID = "dubbo:" .. IFACE .. ":1.0.0"

describe("provider and consumer flows #etcd", function()
    local url, rts, procs

    teardown(etcd.teardown)

    local function runtime()
        local rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        rts[#rts + 1] = rt
        return rt
    end

    local function start(p, list)
        local done, err = false, nil
        p:start(function(e) done, err = true, e end)
        assert.is_true(run_all(list, function() return done end, 20000), "start did not answer")
        return err
    end

    local function export_for(p, variant, port)
        p:export({ interface = IFACE, version = "1.0.0", port = port, methods = { "add", "remove" },
                   params = { weight = tostring(100 + variant) } })
        if variant == 2 then
            p:export({ interface = "com.acme.Order", port = port, methods = { "place" } })
        end
    end

    before_each(function()
        url = etcd.url("flows", "ttl=5")
        rts, procs = {}, {}
    end)

    after_each(function()
        etcd.clean_up(rts, procs)
    end)

    it("reads 1,000 instances in 3 revisions with exactly 3 metadata fetches", function()
        local prt, crt = runtime(), runtime()
        local consumer = crt:consumer({ registry = url })
        local last
        consumer:subscribe(SID, function(_, list) last = list end, { provided_by = { "shop" } })
        assert.is_true(run_all({ crt }, function() return last ~= nil end, 10000))
        assert.equal(0, #last)

        local pending, failed = 1000, {}
        for i = 1, 1000 do
            local p = prt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = 20000 + i,
                                     storage = "remote", mapping = false, revision_port = false })
            export_for(p, i % 3, 20000 + i)
            p:start(function(err)
                pending = pending - 1
                failed[#failed + 1] = err
            end)
        end
        assert.is_true(run_all({ prt, crt }, function()
            return pending == 0 and #last == 1000
        end, 60000), "list has " .. #last .. " entries, " .. pending .. " pending")
        assert.same({}, failed)
        local counters = consumer:counters()
        assert.equal(3, counters.fetches)
        assert.equal(3, counters.fetch_calls)
        for _, entry in ipairs(last) do
            local variant = (entry.port - 20000) % 3
            assert.equal(tostring(100 + variant), entry.service.params.weight)
        end
    end)

    it("picks up an application mapped later through the mapping key", function()
        local prt, crt = runtime(), runtime()
        local consumer = crt:consumer({ registry = url })
        local last
        consumer:subscribe(SID, function(_, list) last = list end)
        assert.is_true(run_all({ crt }, function() return last ~= nil end, 10000))
        assert.equal(0, #last)

        local function provider(app, port)
            local p = prt:provider({ registry = url, app = app, host = "127.0.0.1", port = port,
                                     storage = "remote" })
            export_for(p, 0, port)
            assert.is_nil(start(p, { prt, crt }))
        end
        provider("shop", 22001)
        assert.is_true(run_all({ prt, crt }, function() return #last == 1 end, 10000))
        provider("warehouse", 22002)
        assert.is_true(run_all({ prt, crt }, function() return #last == 2 end, 10000))
        assert.same({ "shop", "warehouse" }, { last[1].app, last[2].app })
        -- The mapping key holds both names, under the URL's prefix.
        local prefix = url:match("^etcd://[^/]+(/[^?]*)")
        local value = assert(etcd.server():ctl({ "get", "--print-value-only", prefix .. "/dubbo/mapping/" .. IFACE }))
        assert.equal("shop,warehouse\n", value)
    end)

    it("reads remote metadata written by another process, with disco provide and resolve", function()
        local log = helpers.tmpdir() .. "/provide.log"
        local proc = process.spawn({ argv = etcd.disco_argv({ "provide", "--registry", url, "--app", "billing",
            "--host", "127.0.0.1", "--port", "23001", "--service", IFACE .. ":1.0.0",
            "--method", "charge", "--storage", "remote" }), log = log })
        procs[#procs + 1] = proc
        local crt = runtime()
        local consumer = crt:consumer({ registry = url })
        local last
        consumer:subscribe(SID, function(_, list) last = list end)
        assert.is_true(run_all({ crt }, function() return last and #last == 1 end, 20000),
                       "never listed: " .. (helpers.read_file(log) or ""))
        assert.matches("registered billing at 127%.0%.0%.1:23001", helpers.read_file(log))
        assert.equal("billing", last[1].app)
        assert.matches("methods=charge", last[1].url, 1, true)

        local ok, out = process.shell(helpers.shell_quote(helpers.disco_bin) .. " resolve --registry "
                                      .. helpers.shell_quote(url) .. " " .. SID)
        assert.is_true(ok, out)
        assert.equal(last[1].url .. "\n", out)

        -- SIGTERM unregisters at once (no wait for the lease).
        process.signal(proc.pid, "TERM")
        assert.is_true(process.wait_dead(proc.pid, 10000, proc.start_time))
        assert.is_true(run_all({ crt }, function() return #last == 0 end, 3000))
    end)
end)
