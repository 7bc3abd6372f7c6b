-- The consumer's safety nets (DESIGN.md §3) on the memory registry:
-- last-good retention, empty-push protection, debounce and the disk
-- snapshot.
local disco = require "disco"
local cjson = require "cjson"
local helpers = require "spec.helpers"
local memory_store = require "disco.registry.memory_store"
local snapshot = require "disco.snapshot"
local ports = require "disco.testing.ports"
local regspec = require "spec.support.registry"
local run_all = regspec.run_all

local IFACE = "com.acme.Cart"
local SID = "dubbo:" .. IFACE .. ":1.0.0"

local store_seq = 0

describe("consumer safety nets", function()
    local rt, prt, url, store_name, rts

    before_each(function()
        store_seq = store_seq + 1
        store_name = "safety" .. store_seq
        url = "memory://" .. store_name
        rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        prt = disco.runtime({ plugin_watch = false, log_level = "error" })
        rts = { rt, prt }
    end)

    after_each(function()
        for i = #rts, 1, -1 do
            rts[i]:close()
        end
    end)

    local function wait(pred, ms)
        return run_all(rts, pred, ms or 5000)
    end

    local function idle(ms)
        run_all(rts, function() return false end, ms)
    end

    local function start(port, extra)
        local conf = { registry = url, app = "shop", host = "127.0.0.1", port = port, mapping = false }
        for k, v in pairs(extra or {}) do
            conf[k] = v
        end
        local p = prt:provider(conf)
        p:export({ interface = IFACE, version = "1.0.0", methods = { "add" } })
        local done, err = false, nil
        p:start(function(e) done, err = true, e end)
        assert.is_true(wait(function() return done end))
        assert.is_nil(err)
        return p
    end

    local function stop(p)
        local done = false
        p:stop(function() done = true end)
        assert.is_true(wait(function() return done end))
    end

    -- Deletes every registration of "shop" behind the providers' backs (as
    -- a registry losing them would), leaving the providers up.
    local function delete_all()
        local store = memory_store.get(store_name)
        for id, entry in pairs(store:entries("shop")) do
            assert.is_true(store:delete("shop", id, entry.owner))
        end
    end

    local function ports_of(list)
        local out = {}
        for i, e in ipairs(list) do
            out[i] = e.port
        end
        table.sort(out)
        return out
    end

    describe("last-good retention", function()
        it("keeps an instance's addresses while its new revision cannot be read", function()
            local port = ports.pick_port()
            local p = start(port)
            local fail, calls = false, 0
            local fetch = require("disco.metadata.fetch")
            local c
            local real
            c = rt:consumer({ registry = url, validation = false, fetchers = {
                ["local"] = function(inst, app, revision, cb)
                    calls = calls + 1
                    if fail then
                        return rt:after(0, function() cb("ETIMEDOUT: injected") end)
                    end
                    real = real or fetch.local_service(c.clients, function(fn) rt:after(0, fn) end)
                    return real(inst, app, revision, cb)
                end } })
            local last, removed = nil, 0
            c:subscribe(SID, function(diff, list)
                last, removed = list, removed + #diff.removed
            end, { provided_by = { "shop" } })
            assert.is_true(wait(function() return last and #last == 1 end))
            local before = last[1].url
            fail = true
            p:export({ interface = "com.acme.Order", methods = { "place" } })
            local done = false
            p:update(function() done = true end)
            assert.is_true(wait(function() return done end))
            assert.is_true(wait(function() return calls >= 2 end))
            idle(300)
            assert.equal(1, #last)
            assert.equal(before, last[1].url)
            assert.equal(0, removed)
        end)

        it("keeps an instance a re-list lost while it still answers", function()
            local port = ports.pick_port()
            start(port)
            local c = rt:consumer({ registry = url, validation = { period_ms = 300 } })
            local last, removed = nil, 0
            c:subscribe(SID, function(diff, list)
                last, removed = list, removed + #diff.removed
            end, { provided_by = { "shop" } })
            assert.is_true(wait(function() return last and #last == 1 end))
            delete_all()
            idle(1000)
            assert.equal(1, #last)
            assert.equal(0, removed)
            assert.is_truthy(last[1].instance.suspect)
        end)
    end)

    describe("empty-push protection", function()
        it("keeps the list while the providers answer, with the reason, and empties it once they stop",
           function()
            local port = ports.pick_port()
            local p = start(port)
            local c = rt:consumer({ registry = url, validation = { period_ms = 300 } })
            local events = {}
            rt:on("ServiceInstancesChanged", function(event)
                if event.protected then
                    events[#events + 1] = event
                end
            end)
            local last, calls = nil, 0
            local sub = c:subscribe(SID, function(_, list) last, calls = list, calls + 1 end,
                                    { provided_by = { "shop" } })
            assert.is_true(wait(function() return last and #last == 1 end))
            assert.is_false(sub:status().protected)
            delete_all()
            -- Protected at once (the chain is asked), then with its answer.
            assert.is_true(wait(function() return sub:status().protected end))
            assert.matches("awaiting validation", sub:status().reason, 1, true)
            assert.is_true(wait(function()
                return (sub:status().reason or ""):find("health/dubbo_probe", 1, true) ~= nil
            end))
            local st = sub:status()
            assert.matches("127.0.0.1:" .. port, st.reason, 1, true)
            assert.is_true(#events >= 2)
            assert.equal(SID, events[#events].service_id)
            assert.equal(st.reason, events[#events].reason)
            idle(800) -- more than one period: asked again, kept again
            assert.equal(1, #last)
            assert.equal(1, calls)
            assert.is_true(sub:status().protected)
            -- The providers stop answering: the chain confirms the removal.
            stop(p)
            assert.is_true(wait(function() return #last == 0 end))
            assert.is_false(sub:status().protected)
        end)

        it("protects a subscription asking for it when validation is off", function()
            local port = ports.pick_port()
            start(port)
            local c = rt:consumer({ registry = url, validation = false })
            local protected_list, plain_list
            local sub = c:subscribe(SID, function(_, list) protected_list = list end,
                                    { provided_by = { "shop" }, empty_protection = true })
            c:subscribe(SID, function(_, list) plain_list = list end, { provided_by = { "shop" } })
            assert.is_true(wait(function()
                return protected_list and #protected_list == 1 and plain_list and #plain_list == 1
            end))
            delete_all()
            assert.is_true(wait(function()
                return (sub:status().reason or ""):find("dubbo_probe", 1, true) ~= nil
            end))
            idle(200)
            assert.equal(1, #protected_list)
            assert.is_true(sub:status().protected)
        end)

        it("lets a removal through when other addresses remain", function()
            local p1 = start(ports.pick_port())
            start(ports.pick_port(), { metadata_port = ports.pick_port() })
            local c = rt:consumer({ registry = url, validation = false })
            local last
            local sub = c:subscribe(SID, function(_, list) last = list end,
                                    { provided_by = { "shop" }, empty_protection = true })
            assert.is_true(wait(function() return last and #last == 2 end))
            stop(p1)
            assert.is_true(wait(function() return #last == 1 end))
            assert.is_false(sub:status().protected)
        end)
    end)

    describe("debounce", function()
        it("delivers at most one update per window, with the net diff", function()
            local a = ports.pick_port()
            start(a)
            local c = rt:consumer({ registry = url, validation = false })
            local calls = {}
            local sub = c:subscribe(SID, function(diff, list)
                calls[#calls + 1] = { at = rt:now(), diff = diff, list = list }
            end, { provided_by = { "shop" }, debounce_ms = 400 })
            assert.is_true(wait(function() return #calls == 1 end))
            -- Within one window: B comes and goes twice, then C comes.
            local b, cport = ports.pick_port(), ports.pick_port()
            for _ = 1, 2 do
                stop(start(b, { metadata_port = ports.pick_port() }))
            end
            start(cport, { metadata_port = ports.pick_port() })
            assert.is_true(wait(function() return #calls >= 2 end, 3000))
            idle(600)
            assert.equal(2, #calls)
            local second = calls[2]
            assert.is_true(second.at - calls[1].at >= 400 - 20)
            assert.same({ cport }, ports_of(second.diff.added))
            assert.same({}, second.diff.removed)
            assert.same(ports_of({ { port = a }, { port = cport } }), ports_of(second.list))
            assert.same(ports_of(second.list), ports_of(sub:list()))
            assert.is_false(sub:status().debouncing)
        end)

        it("delivers nothing when a flap cancels out", function()
            local a = ports.pick_port()
            start(a)
            local c = rt:consumer({ registry = url, validation = false })
            local calls = 0
            c:subscribe(SID, function() calls = calls + 1 end,
                        { provided_by = { "shop" }, debounce_ms = 300 })
            assert.is_true(wait(function() return calls == 1 end))
            stop(start(ports.pick_port(), { metadata_port = ports.pick_port() }))
            idle(700)
            assert.equal(1, calls)
        end)
    end)

    describe("disk snapshot", function()
        local dir

        before_each(function()
            dir = helpers.tmpdir()
        end)

        -- A registry that answers nothing until `connect()`, then behaves
        -- like `real`.
        local function silent(real)
            local pending, connected = {}, false
            local fake = setmetatable({}, { __index = real })
            fake.watch_instances = function(app, cb)
                if connected then
                    return real.watch_instances(app, cb)
                end
                local w = { app = app, cb = cb }
                pending[#pending + 1] = w
                return { cancel = function()
                    w.cancelled = true
                    if w.handle then w.handle.cancel() end
                end }
            end
            function fake.connect()
                connected = true
                for _, w in ipairs(pending) do
                    if not w.cancelled then
                        w.handle = real.watch_instances(w.app, w.cb)
                    end
                end
            end
            return fake
        end

        local function static_mapping()
            return { subscribe = function(_, _, params, cb)
                cb(params.provided_by)
                return { cancel = function() end }
            end }
        end

        local function consumer_with(registry, snap)
            return rt:consumer({ registry = registry, validation = false, mapping = static_mapping(),
                                 snapshot = snap })
        end

        it("writes the list atomically under a safe name, and serves it stale when the registry is silent",
           function()
            local port = ports.pick_port()
            start(port)
            local c1 = rt:consumer({ registry = url, validation = false,
                                     snapshot = { dir = dir, wait_ms = 100 } })
            local live
            c1:subscribe(SID, function(_, list) live = list end, { provided_by = { "shop" } })
            assert.is_true(wait(function() return live and #live == 1 end))
            local path = snapshot.path_of(dir, SID)
            assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/dubbo_com%.acme%.Cart_1%.0%.0%-%x+%.json$", path)
            local doc = cjson.decode((assert(helpers.read_file(path))))
            assert.equal(SID, doc.service_id)
            assert.equal(live[1].url, doc.entries[1].url)
            local ls = assert(io.popen("ls -a " .. dir))
            local names = ls:read("*a")
            ls:close()
            assert.is_nil(names:find("tmp", 1, true)) -- renamed into place
            c1:close()

            -- A restart while the registry does not answer.
            local fake = silent((assert(rt:registry_of(url))))
            local c2 = consumer_with(fake, { dir = dir, wait_ms = 200 })
            local calls = {}
            local sub = c2:subscribe(SID, function(diff, list)
                calls[#calls + 1] = { diff = diff, list = list }
            end, { provided_by = { "shop" } })
            idle(100)
            assert.equal(0, #calls)
            assert.is_true(wait(function() return #calls == 1 end))
            local stale = calls[1].list
            assert.equal(1, #stale)
            assert.equal(live[1].url, stale[1].url)
            assert.is_true(stale[1].stale)
            assert.equal(port, stale[1].port)
            assert.equal(IFACE, stale[1].service.name)
            local st = sub:status()
            assert.is_true(st.stale)
            assert.is_false(st.live)
            assert.is_true(st.age_ms >= 0 and st.age_ms < 5000)

            -- The registry answers: the live list replaces the stale one.
            fake.connect()
            assert.is_true(wait(function() return #calls == 2 end))
            assert.equal(1, #calls[2].list)
            assert.is_nil(calls[2].list[1].stale)
            assert.same({}, calls[2].diff.added)
            assert.same({}, calls[2].diff.removed)
            assert.is_false(sub:status().stale)
            assert.is_true(sub:status().live)
        end)

        it("does not serve a snapshot when the registry answers in time", function()
            start(ports.pick_port())
            assert.truthy(snapshot.write(dir, SID, {}))
            local c = rt:consumer({ registry = url, validation = false,
                                   snapshot = { dir = dir, wait_ms = 300 } })
            local calls = {}
            c:subscribe(SID, function(_, list) calls[#calls + 1] = list end, { provided_by = { "shop" } })
            assert.is_true(wait(function() return #calls == 1 end))
            idle(500)
            assert.equal(1, #calls)
            assert.equal(1, #calls[1])
            assert.is_nil(calls[1][1].stale)
        end)

        it("refuses a snapshot older than max_age_ms", function()
            local entry = { url = "dubbo://127.0.0.1:1/x", host = "127.0.0.1", port = 1,
                            protocol = "dubbo", path = "x", app = "shop",
                            service = { name = IFACE }, instance = { host = "127.0.0.1", port = 1 } }
            assert.truthy(snapshot.write(dir, SID, { entry }, snapshot.wall_ms() - 10000))
            local c = consumer_with(silent((assert(rt:registry_of(url)))),
                                    { dir = dir, wait_ms = 50, max_age_ms = 5000 })
            local calls = 0
            local sub = c:subscribe(SID, function() calls = calls + 1 end, { provided_by = { "shop" } })
            assert.is_true(wait(function() return sub:status().snapshot_error ~= nil end))
            assert.matches("old", sub:status().snapshot_error)
            idle(100)
            assert.equal(0, calls)
            assert.is_false(sub:status().stale)
        end)

        it("ignores a corrupt or oversized snapshot", function()
            local path = snapshot.path_of(dir, SID)
            for _, text in ipairs({ "{not json", '{"version":1,"service_id":"' .. SID
                                   .. '","saved_at":1,"entries":[{"url":5}]}',
                                   '{"version":1,"service_id":"dubbo:other","saved_at":1,"entries":[]}' }) do
                helpers.write_file(path, text)
                local snap, err, code = snapshot.read(dir, SID)
                assert.is_nil(snap)
                assert.equal("EINVAL", code)
                assert.matches("corrupt", err)
            end
            helpers.write_file(path, "{not json")
            local c = consumer_with(silent((assert(rt:registry_of(url)))), { dir = dir, wait_ms = 50 })
            local calls = 0
            local sub = c:subscribe(SID, function() calls = calls + 1 end, { provided_by = { "shop" } })
            assert.is_true(wait(function() return sub:status().snapshot_error ~= nil end))
            assert.matches("^EINVAL", sub:status().snapshot_error)
            assert.equal(0, calls)

            local max = snapshot.MAX_BYTES
            snapshot.MAX_BYTES = 10
            finally(function() snapshot.MAX_BYTES = max end)
            assert.truthy(snapshot.write(dir, SID, {}))
            local snap, err = snapshot.read(dir, SID)
            assert.is_nil(snap)
            assert.matches("larger than", err)
        end)

        it("names files safely and distinctly", function()
            local a = snapshot.path_of("/d", "dubbo:../../etc/passwd:1")
            local b = snapshot.path_of("/d", "dubbo:__/__/etc/passwd:1")
            assert.matches("^/d/[%w%._%-]+%.json$", a)
            assert.is_nil(a:sub(4):find("/", 1, true))
            assert.are_not.equal(a, b)
            local long = snapshot.path_of("/d", "dubbo:" .. string.rep("x", 500))
            assert.is_true(#long < 120)
        end)
    end)
end)
