-- The consumer's safety nets (DESIGN.md §3) against a real ZooKeeper:
-- a 20 s server outage (nothing lost, no empty push, convergence after it,
-- including a provider that started during it), a consumer restarted while
-- the server is down (the disk snapshot, stale, then the live list), and a
-- registry push that empties a service whose providers still answer
-- (empty-push protection, with its reason).
local disco = require "disco"
local flows = require "spec.support.flows"
local helpers = require "spec.helpers"
local ports = require "disco.testing.ports"
local regspec = require "spec.support.registry"
local run_all, call = regspec.run_all, regspec.call

local IFACE = "com.acme.Cart"
local SID = "dubbo:" .. IFACE .. ":1.0.0"

describe("consumer safety nets #zookeeper", function()
    local fx = flows.fixture("safety")
    local runtime = fx.runtime

    before_each(fx.setup)
    after_each(fx.teardown)

    -- A provider of "shop" on a free port (its MetadataService answers the
    -- dubbo heartbeats the validation chain sends there).
    local function provider(rt, url)
        local port = ports.pick_port()
        local p = rt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = port,
                                mapping = false })
        p:export({ interface = IFACE, version = "1.0.0", methods = { "add" } })
        return p, port
    end

    local function start(p, rts)
        assert.is_nil(fx.start(p, rts))
    end

    local function ports_of(list)
        local out = {}
        for i, e in ipairs(list) do
            out[i] = e.port
        end
        table.sort(out)
        return out
    end

    -- A listener recording the last list, how many addresses were ever
    -- removed and whether a list ever came out empty after the first.
    local function recorder()
        local r = { calls = 0, removed = 0, emptied = false }
        function r.cb(diff, list)
            r.calls = r.calls + 1
            r.removed = r.removed + #diff.removed
            if r.last and #r.last > 0 and #list == 0 then
                r.emptied = true
            end
            r.last = list
        end
        return r
    end

    local function own_server()
        local own = helpers.zookeeper_server()
        finally(function() own:destroy() end)
        own:start()
        -- Sessions outlive the outage with room to spare (40 s is the
        -- largest timeout a tickTime of 2000 allows).
        return own, "zookeeper://" .. own.connect_string .. "?session_timeout=40000&root=" .. fx.root
    end

    it("loses nothing through a 20 s outage and converges after it", function()
        local own, url = own_server()
        local prt, crt = runtime(), runtime()
        local a, pa = provider(prt, url)
        local b, pb = provider(prt, url)
        start(a, { prt })
        start(b, { prt })
        local c = crt:consumer({ registry = url })
        local r = recorder()
        local sub = c:subscribe(SID, r.cb, { provided_by = { "shop" } })
        assert.is_true(run_all({ prt, crt }, function() return r.last and #r.last == 2 end, 20000))

        own:stop()
        -- A provider starts while the server is down: it registers once
        -- the server is back.
        local nrt = runtime()
        local n, pn = provider(nrt, url)
        local n_done, n_err = false, nil
        n:start(function(e) n_done, n_err = true, e end)
        run_all({ prt, crt, nrt }, function() return false end, 20000)
        assert.same(ports_of({ { port = pa }, { port = pb } }), ports_of(r.last))
        assert.equal(0, r.removed)
        assert.is_false(r.emptied)

        own:start()
        assert.is_true(run_all({ prt, crt, nrt }, function() return n_done end, 40000),
                       "the provider started during the outage never registered")
        assert.is_nil(n_err)
        assert.is_true(run_all({ prt, crt, nrt }, function() return #r.last == 3 end, 30000))
        assert.same(ports_of({ { port = pa }, { port = pb }, { port = pn } }), ports_of(r.last))
        assert.equal(0, r.removed)
        assert.is_false(r.emptied)
        assert.is_true(sub:status().live)
        -- Removals after the outage still go through: B stops, its port
        -- closes, the chain confirms.
        local stopped = false
        b:stop(function() stopped = true end)
        assert.is_true(run_all({ prt, crt, nrt }, function() return stopped end, 10000))
        assert.is_true(run_all({ prt, crt, nrt }, function() return #r.last == 2 end, 20000))
        assert.same(ports_of({ { port = pa }, { port = pn } }), ports_of(r.last))
    end)

    it("serves the disk snapshot to a consumer restarted while ZooKeeper is down, then the live list",
       function()
        local own, url = own_server()
        local dir = helpers.tmpdir()
        local prt = runtime()
        local a, pa = provider(prt, url)
        start(a, { prt })
        local crt1 = disco.runtime({ plugin_watch = false, log_level = "error" })
        local c1 = crt1:consumer({ registry = url, snapshot = { dir = dir } })
        local r1 = recorder()
        c1:subscribe(SID, r1.cb, { provided_by = { "shop" } })
        assert.is_true(run_all({ prt, crt1 }, function() return r1.last and #r1.last == 1 end, 20000))
        local live_url = r1.last[1].url
        crt1:close()

        own:stop()
        local crt2 = runtime()
        local c2 = crt2:consumer({ registry = url, snapshot = { dir = dir, wait_ms = 1000 } })
        local r2 = recorder()
        local sub = c2:subscribe(SID, r2.cb, { provided_by = { "shop" } })
        assert.is_true(run_all({ prt, crt2 }, function() return r2.calls == 1 end, 5000),
                       "the snapshot was not served")
        assert.equal(1, #r2.last)
        assert.equal(live_url, r2.last[1].url)
        assert.is_true(r2.last[1].stale)
        local st = sub:status()
        assert.is_true(st.stale)
        assert.is_false(st.live)
        assert.is_true(st.age_ms >= 0 and st.age_ms < 120000)
        run_all({ prt, crt2 }, function() return false end, 3000)
        assert.equal(1, r2.calls) -- still stale, nothing else

        own:start()
        assert.is_true(run_all({ prt, crt2 }, function() return r2.calls >= 2 end, 40000),
                       "the live list never replaced the snapshot")
        assert.same({ pa }, ports_of(r2.last))
        assert.is_nil(r2.last[1].stale)
        assert.is_false(sub:status().stale)
        assert.is_true(sub:status().live)
        assert.equal(0, r2.removed)
    end)

    it("keeps a list the registry empties while its providers answer, with the reason", function()
        local url = fx.url
        local prt, crt = runtime(), runtime()
        local a, pa = provider(prt, url)
        start(a, { prt })
        local c = crt:consumer({ registry = url, validation = { period_ms = 1000 } })
        local protected_events = {}
        crt:on("ServiceInstancesChanged", function(event)
            if event.protected then
                protected_events[#protected_events + 1] = event
            end
        end)
        local r = recorder()
        local sub = c:subscribe(SID, r.cb, { provided_by = { "shop" } })
        assert.is_true(run_all({ prt, crt }, function() return r.last and #r.last == 1 end, 20000))

        -- A raw session deletes the instance node behind the provider's back.
        local raw = assert(crt.loop:zk({ hosts = helpers.zookeeper().connect_string }))
        finally(function() raw:close() end)
        assert.is_true(run_all({ crt }, function() return raw:state() == "connected" end, 10000))
        local path = fx.root .. "/shop/127.0.0.1:" .. pa
        local err = call({ prt, crt }, raw.delete, raw, path, -1)
        assert.is_nil(err)

        assert.is_true(run_all({ prt, crt }, function() return #protected_events > 0 end, 10000),
                       "no protection announced")
        assert.equal(SID, protected_events[1].service_id)
        assert.matches("127.0.0.1:" .. pa, protected_events[1].reason, 1, true)
        -- The provider still answers: the probe keeps it, over several
        -- periods, and the listener never sees it go.
        run_all({ prt, crt }, function() return false end, 3000)
        assert.equal(1, #r.last)
        assert.equal(0, r.removed)
        assert.is_false(r.emptied)
        local reasons = {}
        for _, e in ipairs(protected_events) do
            reasons[#reasons + 1] = e.reason
        end
        assert.matches("health/dubbo_probe", table.concat(reasons, "\n"), 1, true)
        local st = sub:status()
        if st.protected then
            assert.matches("127.0.0.1:" .. pa, st.reason, 1, true)
        end
    end)
end)
