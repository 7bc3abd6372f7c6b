-- The provider and consumer flows against a real ZooKeeper: 1,000
-- instances in 3 revisions read with exactly 3 metadata fetches, a fetch
-- that fails twice and then succeeds without any consumer-visible removal,
-- an application mapped later joining a live subscription, remote-mode
-- metadata written by another process (`disco provide`, `disco resolve`),
-- and a persisted revision cache that spares a restarted consumer every
-- fetch.
local flows = require "spec.support.flows"
local helpers = require "spec.helpers"
local process = require "disco.testing.process"
local regspec = require "spec.support.registry"
local run_all = regspec.run_all

local IFACE = "com.acme.Cart"
local SID = "dubbo:" .. IFACE .. ":1.0.0"

describe("provider and consumer flows #zookeeper", function()
    local fx = flows.fixture("flows")
    local runtime, start = fx.runtime, fx.start
    local url, root, seq = nil, nil, 0

    before_each(function()
        fx.setup()
        -- Each test gets its own instance root, and its own mapping and
        -- metadata group (derived from the root) where it needs one.
        url, root, seq = fx.url, fx.root, seq + 1
    end)

    after_each(fx.teardown)

    -- Three revisions: the same Cart service with a different weight, and
    -- revision 3 also exports an Order service.
    local function export_for(p, variant, port)
        p:export({ interface = IFACE, version = "1.0.0", port = port, methods = { "add", "remove" },
                   params = { weight = tostring(100 + variant) } })
        if variant == 2 then
            p:export({ interface = "com.acme.Order", port = port, methods = { "place" } })
        end
    end

    it("reads 1,000 instances in 3 revisions with exactly 3 metadata fetches", function()
        local prt, crt = runtime(), runtime()
        local group = root:sub(2) .. "_md"
        local consumer = crt:consumer({ registry = url, metadata_group = group })
        local last, calls = nil, 0
        consumer:subscribe(SID, function(_, list)
            calls = calls + 1
            last = list
        end, { provided_by = { "shop" } })
        assert.is_true(run_all({ crt }, function() return last ~= nil end, 10000))
        assert.equal(0, #last)

        local providers = {}
        for i = 1, 1000 do
            local p = prt:provider({ registry = url, app = "shop", host = "127.0.0.1",
                                     port = 20000 + i, storage = "remote",
                                     metadata_group = group, mapping = false,
                                     revision_port = false })
            export_for(p, i % 3, 20000 + i)
            providers[i] = p
        end
        local pending, failed = 1000, {}
        for _, p in ipairs(providers) do
            p:start(function(err)
                pending = pending - 1
                if err then
                    failed[#failed + 1] = err
                end
            end)
        end
        assert.is_true(run_all({ prt, crt }, function()
            return pending == 0 and last and #last == 1000
        end, 60000), "list has " .. (last and #last or 0) .. " entries, " .. pending .. " pending")
        assert.same({}, failed)

        local counters = consumer:counters()
        assert.equal(3, counters.fetches)
        assert.equal(3, counters.fetch_calls)
        -- Every instance's URL: its own port, its revision's weight.
        local revisions = {}
        for _, entry in ipairs(last) do
            local port = entry.port
            local variant = (port - 20000) % 3
            assert.equal("127.0.0.1", entry.host)
            assert.equal(entry.instance.port, port)
            assert.equal(tostring(100 + variant), entry.service.params.weight)
            assert.matches("^dubbo://127%.0%.0%.1:" .. port .. "/" .. IFACE:gsub("%.", "%%.") .. "%?",
                           entry.url)
            assert.matches("weight=" .. (100 + variant), entry.url, 1, true)
            revisions[entry.instance.metadata["dubbo.metadata.revision"]] = true
        end
        local n = 0
        for _ in pairs(revisions) do
            n = n + 1
        end
        assert.equal(3, n)
    end)

    it("survives a metadata fetch that fails twice, with no consumer-visible removal", function()
        local prt, crt = runtime(), runtime()
        local group = root:sub(2) .. "_md"
        local a = prt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = 21001,
                                 storage = "remote", metadata_group = group, mapping = false })
        export_for(a, 0, 21001)
        assert.is_nil(start(a, { prt }))

        local registry = crt:registry_of(url)
        local real = require("disco.metadata.fetch").remote(registry, group)
        local failures_left = {}
        local consumer = crt:consumer({
            registry = registry, metadata_group = group,
            cache = { fast_retry_ms = 50, jitter = 0 },
            fetchers = {
                remote = function(inst, app, revision, cb)
                    -- The second revision fails on its first two attempts.
                    if failures_left[revision] and failures_left[revision] > 0 then
                        failures_left[revision] = failures_left[revision] - 1
                        return crt:after(0, function() cb("ETIMEDOUT: injected failure") end)
                    end
                    real(inst, app, revision, cb)
                end,
            },
        })
        local last, removed = nil, 0
        consumer:subscribe(SID, function(diff, list)
            removed = removed + #diff.removed
            last = list
        end, { provided_by = { "shop" } })
        assert.is_true(run_all({ prt, crt }, function() return last and #last == 1 end, 10000))

        -- A second instance in a new revision, whose metadata fails twice.
        local b = prt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = 21002,
                                 storage = "remote", metadata_group = group, mapping = false })
        export_for(b, 1, 21002)
        failures_left[b:metadata().revision] = 2
        assert.is_nil(start(b, { prt, crt }))
        assert.is_true(run_all({ prt, crt }, function() return #last == 2 end, 10000))
        assert.equal(0, failures_left[b.revision])
        assert.equal(0, removed)
        local counters = consumer:counters()
        assert.equal(2, counters.failures)
        assert.equal(2, counters.fetches - counters.failures)
    end)

    it("picks up an application mapped later through the mapping node", function()
        local prt, crt = runtime(), runtime()
        local group = root:sub(2) .. "_md"
        local mapping = require("disco.mapping")
        local creg = crt:registry_of(url)
        local consumer = crt:consumer({
            registry = creg, metadata_group = group,
            mapping = mapping.new(crt, { registry = creg,
                                         conf = { ["mapping/zookeeper"] = { group = group } } }),
        })
        local last
        consumer:subscribe(SID, function(_, list) last = list end)
        assert.is_true(run_all({ crt }, function() return last ~= nil end, 10000))
        assert.equal(0, #last)

        local preg = prt:registry_of(url)
        local pmapping = mapping.new(prt, { registry = preg,
                                            conf = { ["mapping/zookeeper"] = { group = group } } })
        local function provider(app, port)
            local p = prt:provider({ registry = preg, app = app, host = "127.0.0.1", port = port,
                                     storage = "remote", metadata_group = group, mapping = pmapping })
            export_for(p, 0, port)
            assert.is_nil(start(p, { prt, crt }))
        end
        provider("shop", 22001)
        assert.is_true(run_all({ prt, crt }, function() return #last == 1 end, 10000))
        provider("warehouse", 22002)
        assert.is_true(run_all({ prt, crt }, function() return #last == 2 end, 10000))
        assert.equal("warehouse", last[2].app)
        local sub_apps = {}
        for _, entry in ipairs(last) do
            sub_apps[#sub_apps + 1] = entry.app
        end
        assert.same({ "shop", "warehouse" }, sub_apps)
    end)

    it("reads remote metadata written by another process, with disco provide and resolve", function()
        local proc, line = flows.spawn_provider({ "--registry", url, "--app", "billing",
            "--host", "127.0.0.1", "--port", "23001", "--service", IFACE .. ":1.0.0",
            "--method", "charge", "--storage", "remote" })
        assert.matches("registered billing at 127%.0%.0%.1:23001 revision %x+", line)

        -- In this process: the consumer flow through the mapping node the
        -- provider wrote.
        local crt = runtime()
        local consumer = crt:consumer({ registry = url })
        local last
        consumer:subscribe(SID, function(_, list) last = list end)
        assert.is_true(run_all({ crt }, function() return last and #last == 1 end, 10000))
        assert.equal("billing", last[1].app)
        assert.matches("methods=charge", last[1].url, 1, true)

        -- And as a third process.
        local ok, out = process.shell(helpers.shell_quote(helpers.disco_bin) .. " resolve --registry "
                                      .. helpers.shell_quote(url) .. " " .. SID)
        assert.is_true(ok, out)
        assert.equal(last[1].url .. "\n", out)
        local none_ok, none_out = process.shell(helpers.shell_quote(helpers.disco_bin)
            .. " resolve --registry " .. helpers.shell_quote(url) .. " dubbo:com.acme.Nothing")
        assert.is_false(none_ok)
        assert.equal("", none_out)

        -- SIGTERM unregisters cleanly: the list empties.
        process.signal(proc.pid, "TERM")
        assert.is_true(process.wait_dead(proc.pid, 10000, proc.start_time))
        assert.is_true(run_all({ crt }, function() return #last == 0 end, 10000))
    end)

    it("prints address changes with disco watch until SIGTERM", function()
        local dir = helpers.tmpdir()
        local log = dir .. "/watch.log"
        local iface = "com.acme.Watched" .. helpers.core.getpid() .. "_" .. seq
        local proc = process.spawn({
            argv = { helpers.disco_bin, "watch", "--registry", url, "dubbo:" .. iface },
            log = log,
        })
        local prt = runtime()
        local p = prt:provider({ registry = url, app = "watched", host = "127.0.0.1", port = 25001,
                                 storage = "remote" })
        p:export({ interface = iface, methods = { "ping" } })
        -- The watcher may start after the mapping is written or before:
        -- either way its live subscription finds the application.
        assert.is_nil(start(p, { prt }))
        local function logged(text)
            return run_all({ prt }, function()
                return (helpers.read_file(log) or ""):find(text, 1, true) ~= nil
            end, 15000)
        end
        assert.is_true(logged("+ dubbo://127.0.0.1:25001/" .. iface .. "?"),
                       helpers.read_file(log) or "(no output)")
        local stopped = false
        p:stop(function(err) assert.is_nil(err); stopped = true end)
        assert.is_true(run_all({ prt }, function() return stopped end, 10000))
        assert.is_true(logged("- dubbo://127.0.0.1:25001/" .. iface .. "?"),
                       helpers.read_file(log) or "(no output)")
        process.signal(proc.pid, "TERM")
        assert.is_true(process.wait_dead(proc.pid, 10000, proc.start_time))
    end)

    it("spares a restarted consumer every fetch with a persisted revision cache", function()
        local prt = runtime()
        local group = root:sub(2) .. "_md"
        local p = prt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = 24001,
                                 storage = "remote", metadata_group = group, mapping = false })
        export_for(p, 2, 24001)
        assert.is_nil(start(p, { prt }))
        local file = helpers.tmpdir() .. "/revisions.cache"

        local function resolve_once()
            local crt = runtime()
            local consumer = crt:consumer({ registry = url, metadata_group = group,
                                            cache = { persist_path = file } })
            local last
            consumer:subscribe(SID, function(_, list) last = list end, { provided_by = { "shop" } })
            assert.is_true(run_all({ prt, crt }, function() return last and #last == 1 end, 10000))
            local counters = consumer:counters()
            consumer:close()
            return counters, last
        end
        local first, list1 = resolve_once()
        assert.equal(1, first.fetch_calls)
        local second, list2 = resolve_once()
        assert.equal(0, second.fetch_calls)
        assert.equal(0, second.fetches)
        assert.equal(list1[1].url, list2[1].url)
    end)
end)
