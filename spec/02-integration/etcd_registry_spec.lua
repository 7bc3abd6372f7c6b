-- registry/etcd against a real etcd (disco.testing.etcd): the registry
-- contract across runtimes (each its own lease), owner-only unregister,
-- config CAS and watches, a SIGKILLed provider process removed when its
-- lease expires, watches resumed from the right revision after an etcd
-- restart, and a compaction forcing a re-list that delivers only the
-- real differences.
local disco = require "disco"
local etcd = require "spec.support.etcd"
local helpers = require "spec.helpers"
local process = require "disco.testing.process"
local regspec = require "spec.support.registry"
local run_all, call = regspec.run_all, regspec.call

local TTL_S = 2

local function instance(port, meta)
    local metadata = { ["dubbo.metadata.revision"] = "r1", ["dubbo.metadata.storage-type"] = "local" }
    for k, v in pairs(meta or {}) do
        metadata[k] = v
    end
    return { name = "shop", host = "127.0.0.1", port = port, metadata = metadata }
end

describe("registry/etcd #etcd", function()
    local url, prefix, rts, procs

    teardown(etcd.teardown)

    local function runtime()
        local rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        rts[#rts + 1] = rt
        return rt, assert(rt:registry(url))
    end

    -- Every diff a watch delivers, and its last list.
    local function recorder(registry, app)
        local rec = { diffs = {}, added = 0, updated = 0, removed = 0 }
        rec.handle = registry.watch_instances(app, function(diff, list)
            rec.diffs[#rec.diffs + 1] = diff
            rec.added = rec.added + #diff.added
            rec.updated = rec.updated + #diff.updated
            rec.removed = rec.removed + #diff.removed
            rec.list = list
        end)
        function rec.ids()
            local ids = {}
            for i, inst in ipairs(rec.list or {}) do
                ids[i] = inst.id
            end
            return ids
        end
        return rec
    end

    -- etcdctl against the server, keys under this test's prefix.
    local function ctl(args)
        return assert(etcd.server():ctl(args))
    end

    before_each(function()
        url, prefix = etcd.url("reg", "ttl=" .. TTL_S)
        rts, procs = {}, {}
    end)

    after_each(function()
        etcd.clean_up(rts, procs)
    end)

    it("registers, updates and unregisters across runtimes, with identities", function()
        local prt, preg = runtime()
        local crt, creg = runtime()
        local rec = recorder(creg, "shop")
        assert.is_true(run_all({ crt }, function() return rec.list ~= nil end, 5000))
        assert.same({}, rec.list)

        assert.is_nil(call({ prt, crt }, preg.register, instance(20001)))
        assert.is_nil(call({ prt, crt }, preg.register, instance(20002)))
        assert.is_true(run_all({ prt, crt }, function() return #rec.list == 2 end, 5000))
        assert.same({ "127.0.0.1:20001", "127.0.0.1:20002" }, rec.ids())
        local first = rec.list[1]
        assert.equal(preg.stats().lease, first.identity.owner)
        assert.equal("connected", creg.stats().state)
        assert.equal(1, preg.stats().generation)
        assert.equal("r1", first.metadata["dubbo.metadata.revision"])
        -- The key holds the ZooKeeper adapter's JSON.
        local raw = ctl({ "get", "--print-value-only", prefix .. "/services/shop/127.0.0.1:20001" })
        assert.matches('^{"name":"shop","id":"127.0.0.1:20001","address":"127.0.0.1","port":20001', raw)

        assert.is_nil(call({ prt, crt }, preg.update, instance(20001, { weight = "7" })))
        assert.is_true(run_all({ prt, crt }, function() return rec.updated == 1 end, 5000))
        assert.equal("7", rec.list[1].metadata.weight)
        assert.equal(first.identity.created, rec.list[1].identity.created)
        assert.is_true(rec.list[1].identity.modified > first.identity.modified)

        local err, apps = call({ prt, crt }, creg.list_apps)
        assert.is_nil(err)
        assert.same({ "shop" }, apps)

        assert.is_nil(call({ prt, crt }, preg.unregister, instance(20002)))
        assert.is_true(run_all({ prt, crt }, function() return rec.removed == 1 end, 5000))
        assert.same({ "127.0.0.1:20001" }, rec.ids())
        assert.matches("^ENONODE: ", call({ prt }, preg.unregister, instance(20002)))
        assert.matches("^ENONODE: ", call({ prt }, preg.update, instance(20003)))
        assert.matches("^EINVAL: ", call({ prt }, preg.register, { name = "a/b", host = "h", port = 1 }))
        -- Nothing but real changes was delivered: first list, 2 adds, 1
        -- update, 1 removal.
        assert.equal(2, rec.added)
        assert.equal(1, rec.updated)
        assert.equal(1, rec.removed)
    end)

    it("leaves an address re-registered by another session to it (ENOTOWNER)", function()
        local art, areg = runtime()
        local brt, breg = runtime()
        local crt, creg = runtime()
        local rec = recorder(creg, "shop")
        assert.is_nil(call({ art, crt }, areg.register, instance(20010)))
        assert.is_true(run_all({ art, crt }, function() return rec.list and #rec.list == 1 end, 5000))
        local a_identity = rec.list[1].identity
        assert.is_nil(call({ brt, crt }, breg.register, instance(20010, { who = "b" })))
        -- One revision: an update, never a removal.
        assert.is_true(run_all({ brt, crt }, function() return rec.updated == 1 end, 5000))
        assert.equal(0, rec.removed)
        assert.equal(breg.stats().lease, rec.list[1].identity.owner)
        assert.is_not.equal(a_identity.owner, rec.list[1].identity.owner)

        assert.matches("^ENOTOWNER: ", call({ art, brt, crt }, areg.unregister, instance(20010)))
        run_all({ art, brt, crt }, function() return false end, 300)
        assert.same({ "127.0.0.1:20010" }, rec.ids())
        assert.equal("b", rec.list[1].metadata.who)
        assert.is_nil(call({ brt, crt }, breg.unregister, instance(20010)))
        assert.is_true(run_all({ brt, crt }, function() return #rec.list == 0 end, 5000))
    end)

    it("goes on to the next endpoint when one refuses connections", function()
        local dead = require("disco.testing.ports").pick_port()
        url = url:gsub("^etcd://", "etcd://127.0.0.1:" .. dead .. ",")
        local prt, preg = runtime()
        local crt, creg = runtime()
        local rec = recorder(creg, "shop")
        assert.is_nil(call({ prt, crt }, preg.register, instance(20061)))
        assert.is_true(run_all({ prt, crt }, function() return rec.list and #rec.list == 1 end, 5000))
        local err, apps = call({ prt }, preg.list_apps)
        assert.is_nil(err)
        assert.same({ "shop" }, apps)
        assert.equal("connected", preg.stats().state)
    end)

    it("keeps config values with compare-and-set, and watches them", function()
        local art, areg = runtime()
        local brt, breg = runtime()
        local path = "/dubbo/mapping/com.acme.Cart"
        local seen = {}
        breg.watch_config(path, function(value, version) seen[#seen + 1] = { value, version } end)
        local children
        breg.watch_config_children("/dubbo/mapping", function(names) children = names end)
        local err, value, version = call({ art }, areg.get_config, path)
        assert.is_nil(err)
        assert.is_nil(value)
        assert.is_nil(version)
        run_all({ brt }, function() return false end, 300) -- both watches armed

        -- Two writers append at once: both names end up there.
        local done, errs = 0, {}
        local function append(reg, app)
            reg.cas_config(path, function(old)
                return old and (old .. "," .. app) or app
            end, function(e)
                done = done + 1
                errs[#errs + 1] = e
            end)
        end
        append(areg, "shop")
        append(breg, "cart")
        assert.is_true(run_all({ art, brt }, function() return done == 2 end, 10000))
        assert.same({}, errs)
        err, value, version = call({ art }, areg.get_config, path)
        assert.is_nil(err)
        local names = {}
        for name in value:gmatch("[^,]+") do
            names[#names + 1] = name
        end
        table.sort(names)
        assert.same({ "cart", "shop" }, names)
        assert.equal("number", type(version))
        assert.is_true(run_all({ art, brt }, function()
            return #seen > 0 and seen[#seen][1] == value
        end, 5000))
        assert.is_true(run_all({ brt }, function() return children and #children == 1 end, 5000))
        assert.same({ "com.acme.Cart" }, children)
        local lerr, list = call({ art }, areg.list_config, "/dubbo/mapping")
        assert.is_nil(lerr)
        assert.same({ "com.acme.Cart" }, list)
        assert.is_nil(select(2, call({ art }, areg.list_config, "/dubbo/nothing")))
        -- A function that leaves the value returns it unchanged.
        local cerr, kept = call({ art }, areg.cas_config, path, function() return nil end)
        assert.is_nil(cerr)
        assert.equal(value, kept)
        -- Under the URL's prefix, nowhere else.
        assert.equal(value .. "\n", ctl({ "get", "--print-value-only", prefix .. path }))
    end)

    it("hands its lease, registrations and watches to the new version on a reload", function()
        local prt, preg = runtime()
        local crt, creg = runtime()
        local rec = recorder(creg, "shop")
        assert.is_nil(call({ prt, crt }, preg.register, instance(20051)))
        assert.is_true(run_all({ prt, crt }, function() return rec.list and #rec.list == 1 end, 5000))
        local lease = preg.stats().lease

        assert(prt:reload("registry/etcd"))
        assert(crt:reload("registry/etcd"))
        local preg2, creg2 = prt:registry_of(url), crt:registry_of(url)
        assert.is_not.equal(preg, preg2)
        assert.is_not.equal(creg, creg2)
        -- The new version keeps the lease alive past its TTL.
        run_all({ prt, crt }, function() return false end, TTL_S * 1000 * 2)
        assert.equal(lease, preg2.stats().lease)
        assert.same({ "127.0.0.1:20051" }, rec.ids())
        -- The watch goes on from where it was: no re-list, no repeat.
        assert.is_nil(call({ prt, crt }, preg2.register, instance(20052)))
        assert.is_true(run_all({ prt, crt }, function() return #rec.list == 2 end, 5000))
        assert.equal(1, creg2.stats().relists)
        assert.equal(2, rec.added)
        assert.equal(0, rec.updated)
        -- And the registration made before the reload is the new version's.
        assert.is_nil(call({ prt, crt }, preg2.unregister, instance(20051)))
        assert.is_true(run_all({ prt, crt }, function() return #rec.list == 1 end, 5000))
    end)

    it("removes a SIGKILLed provider process once its lease expires", function()
        local crt, creg = runtime()
        local rec = recorder(creg, "shop")
        local log = helpers.tmpdir() .. "/provide.log"
        local proc = process.spawn({ argv = etcd.disco_argv({ "provide", "--registry", url, "--app", "shop",
            "--host", "127.0.0.1", "--port", "20020", "--service", "com.acme.Cart:1.0.0",
            "--method", "get", "--storage", "local" }), log = log })
        procs[#procs + 1] = proc
        assert.is_true(run_all({ crt }, function() return rec.list and #rec.list == 1 end, 20000),
                       "never registered: " .. (helpers.read_file(log) or ""))
        -- Kept alive by its heartbeat well past its TTL.
        run_all({ crt }, function() return false end, TTL_S * 1000 * 2)
        assert.equal(1, #rec.list)
        assert.equal(0, rec.removed)

        assert.is_true(process.signal(proc.pid, "KILL"))
        local killed = helpers.core.hrtime()
        assert.is_true(run_all({ crt }, function() return #rec.list == 0 end, TTL_S * 1000 + 5000),
                       "still listed")
        local took = helpers.core.hrtime() - killed
        -- Not before the TTL less one heartbeat (the last keepalive came
        -- at most a third of the TTL before the kill).
        assert.is_true(took >= TTL_S * 1000 * 2 / 3 - 200, "removed after " .. took .. " ms")
        assert.equal(1, rec.removed)
    end)

    it("resumes watches from the right revision after an etcd restart", function()
        local prt, preg = runtime()
        local crt, creg = runtime()
        local rec = recorder(creg, "shop")
        assert.is_nil(call({ prt, crt }, preg.register, instance(20031)))
        assert.is_true(run_all({ prt, crt }, function() return rec.list and #rec.list == 1 end, 5000))
        local before = creg.stats()
        assert.equal(1, before.relists)

        -- etcd restarts while the consumer's loop is held: the changes
        -- made meanwhile are history by the time its watch comes back.
        local server = etcd.server()
        server:restart()
        local base = prefix .. "/services/shop/"
        local other = require("disco.registry.zk_instance").encode(
            { name = "shop", host = "127.0.0.1", port = 20032, metadata = {}, registration_time = 1 })
        ctl({ "put", base .. "127.0.0.1:20032", other })
        ctl({ "put", base .. "127.0.0.1:20033", other:gsub("20032", "20033") })
        ctl({ "del", base .. "127.0.0.1:20033" })

        assert.is_true(run_all({ prt, crt }, function() return #rec.list == 2 end, 15000),
                       "ids: " .. table.concat(rec.ids(), " "))
        run_all({ prt, crt }, function() return false end, 500)
        local after = creg.stats()
        -- Resumed, not re-listed; exactly the three events, each once.
        assert.equal(1, after.relists)
        assert.is_true(after.reconnects >= 1)
        assert.equal(before.events + 3, after.events)
        assert.same({ "127.0.0.1:20031", "127.0.0.1:20032" }, rec.ids())
        -- 20033 came and went: seen as an add and a removal, or not at all.
        assert.equal(rec.added - 2, rec.removed)
        -- The provider's lease survived the restart: its heartbeat goes on
        -- and its key stays past the TTL.
        run_all({ prt, crt }, function() return false end, TTL_S * 1000 + 1000)
        assert.same({ "127.0.0.1:20031", "127.0.0.1:20032" }, rec.ids())
        assert.equal(0, preg.stats().losses)
    end)

    it("comes back from a black-holed connection with every change once", function()
        -- The consumer reaches etcd through the chaos suite's fault proxy.
        local px = require("spec.support.chaos.proxy").start({ etcd.server().port },
                                                              helpers.tmpdir() .. "/proxy.log")
        finally(function() px:stop() end)
        local direct = url
        url = url:gsub("^etcd://[^/]+", "etcd://127.0.0.1:" .. px.routes[1])
        local crt, creg = runtime()
        url = direct
        local prt, preg = runtime()
        local rec = recorder(creg, "shop")
        assert.is_nil(call({ prt, crt }, preg.register, instance(20071)))
        assert.is_true(run_all({ prt, crt }, function() return rec.list and #rec.list == 1 end, 5000))
        local before = creg.stats()

        -- Nothing passes; the consumer's status calls time out (10 s
        -- without a byte) and it counts itself disconnected.
        px:must("blackhole")
        assert.is_nil(call({ prt }, preg.register, instance(20072)))
        assert.is_nil(call({ prt }, preg.unregister, instance(20071)))
        assert.is_true(run_all({ prt, crt }, function() return creg.stats().state == "connecting" end, 20000))
        assert.is_nil(call({ prt }, preg.register, instance(20073)))

        px:must("pass")
        assert.is_true(run_all({ prt, crt }, function()
            return creg.stats().state == "connected" and #rec.list == 2
        end, 15000), "ids: " .. table.concat(rec.ids(), " "))
        run_all({ prt, crt }, function() return false end, 1000)
        local after = creg.stats()
        assert.same({ "127.0.0.1:20072", "127.0.0.1:20073" }, rec.ids())
        -- The watch was re-opened from its revision once etcd answered
        -- again, and still saw each of the three changes exactly once,
        -- without a re-list.
        assert.is_true(after.reconnects > before.reconnects)
        assert.equal(before.events + 3, after.events)
        assert.equal(1, after.relists)
        assert.is_true(after.disconnects >= 1)
        assert.equal(3, rec.added)
        assert.equal(1, rec.removed)
    end)

    it("re-lists after a compaction and delivers only the real differences", function()
        local prt, preg = runtime()
        local crt, creg = runtime()
        local rec = recorder(creg, "shop")
        for port = 20041, 20043 do
            assert.is_nil(call({ prt, crt }, preg.register, instance(port)))
        end
        assert.is_true(run_all({ prt, crt }, function() return rec.list and #rec.list == 3 end, 5000))
        local n_diffs = #rec.diffs

        -- While the consumer is held and etcd restarts (so its watch must
        -- come back from a revision): one removed, one updated, one added,
        -- one added and removed again; then the history is compacted.
        local server = etcd.server()
        server:restart()
        assert.is_nil(call({ prt }, preg.unregister, instance(20041)))
        assert.is_nil(call({ prt }, preg.update, instance(20042, { weight = "9" })))
        assert.is_nil(call({ prt }, preg.register, instance(20044)))
        assert.is_nil(call({ prt }, preg.register, instance(20045)))
        assert.is_nil(call({ prt }, preg.unregister, instance(20045)))
        assert.is_true(server:compact())

        assert.is_true(run_all({ prt, crt }, function() return creg.stats().compactions == 1 end, 15000))
        assert.is_true(run_all({ prt, crt }, function()
            return #rec.diffs > n_diffs
        end, 5000))
        run_all({ prt, crt }, function() return false end, 500)
        assert.equal(n_diffs + 1, #rec.diffs)
        local diff = rec.diffs[#rec.diffs]
        local function ids(list)
            local out = {}
            for i, inst in ipairs(list) do
                out[i] = inst.id
            end
            table.sort(out)
            return out
        end
        assert.same({ "127.0.0.1:20044" }, ids(diff.added))
        assert.same({ "127.0.0.1:20042" }, ids(diff.updated))
        assert.same({ "127.0.0.1:20041" }, ids(diff.removed))
        assert.same({ "127.0.0.1:20042", "127.0.0.1:20043", "127.0.0.1:20044" }, rec.ids())
        assert.equal("9", rec.list[1].metadata.weight)
        assert.equal(2, creg.stats().relists)
    end)
end)
