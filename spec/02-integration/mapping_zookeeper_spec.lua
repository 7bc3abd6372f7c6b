-- The mapping policies against a real ZooKeeper: concurrent providers
-- appending themselves to one mapping node (Dubbo 3's CAS), live
-- subscriptions picking up a later app and a node created later, the
-- Dubbo 2.7.5 layout, and the MetadataService never mapped.
local disco = require "disco"
local helpers = require "spec.helpers"
local mapping = require "disco.mapping"

local regspec = require "spec.support.registry"
local run_all, call = regspec.run_all, regspec.call

local seq = 0
local function fresh_group()
    seq = seq + 1
    return string.format("mapspec%d_%d_%d", helpers.core.getpid(), os.time(), seq)
end

describe("mapping on zookeeper #zookeeper", function()
    local zk_server, url, group, rts

    -- A runtime with a ZooKeeper registry and a mapping chain whose
    -- mapping/zookeeper writes under /{group}/mapping.
    local function runtime(opts)
        opts = opts or {}
        local rt = disco.runtime({ plugin_watch = false, log_level = "warn" })
        rt.logged = {}
        rt.loop:set_log_sink(function(level, component, message)
            rt.logged[#rt.logged + 1] = { level = level, component = component, message = message }
        end)
        rts[#rts + 1] = rt
        local reg = assert(rt:registry(url))
        local chain = assert(mapping.new(rt, {
            registry = reg,
            policies = opts.policies,
            conf = { ["mapping/zookeeper"] = { group = group },
                     ["mapping/config_v27"] = { root = "/" .. group .. "/config" } },
        }))
        return rt, reg, chain
    end

    local function connected(list)
        return run_all(list, function()
            for _, rt in ipairs(list) do
                local session = rt.plugins:get("registry/zookeeper").session()
                if session:state() ~= "connected" then
                    return false
                end
            end
            return true
        end, 15000)
    end

    before_each(function()
        zk_server = helpers.zookeeper()
        url = "zookeeper://" .. zk_server.connect_string .. "?session_timeout=6000"
        group = fresh_group()
        rts = {}
    end)

    after_each(function()
        for _, rt in ipairs(rts) do
            rt:close()
        end
    end)

    it("ends with all of 20 applications that append themselves concurrently", function()
        local list, chains = {}, {}
        for i = 1, 20 do
            local rt, _, chain = runtime()
            list[i], chains[i] = rt, chain
        end
        assert.is_true(connected(list), "not every session connected")
        local results, done = {}, 0
        for i = 1, 20 do
            chains[i]:map("com.acme.Shared", string.format("app-%02d", i), function(err)
                results[i] = err or "ok"
                done = done + 1
            end)
        end
        assert.is_true(run_all(list, function() return done == 20 end, 30000), "not every map answered")
        for i = 1, 20 do
            assert.equals("ok", results[i])
        end
        local err, value = call(list, rts[1].plugins:get("registry/zookeeper").get_config,
                                "/" .. group .. "/mapping/com.acme.Shared")
        assert.is_nil(err)
        local apps = mapping.split_apps(value)
        assert.equals(20, #apps)
        for i = 1, 20 do
            assert.equals(string.format("app-%02d", i), apps[i])
        end
        -- No name was written twice.
        local _, commas = value:gsub(",", ",")
        assert.equals(19, commas)
        -- A consumer resolves all of them.
        local rerr, resolved = call(list, chains[1].resolve, chains[1], "dubbo:com.acme.Shared", nil)
        assert.is_nil(rerr)
        assert.same(apps, resolved)
    end)

    it("picks up an application added to the mapping node later in a live subscription", function()
        local provider, _, p_chain = runtime()
        local consumer, _, c_chain = runtime()
        local both = { provider, consumer }
        assert.is_true(connected(both))
        assert.is_nil(call(both, p_chain.map, p_chain, "com.acme.Live", "first-app"))
        local seen = {}
        local sub = c_chain:subscribe("com.acme.Live", function(apps) seen[#seen + 1] = apps end)
        assert.is_true(run_all(both, function() return #seen >= 1 end, 10000))
        assert.same({ "first-app" }, seen[1])

        local late, _, late_chain = runtime()
        local all = { provider, consumer, late }
        assert.is_true(connected(all))
        assert.is_nil(call(all, late_chain.map, late_chain, "com.acme.Live", "a-later-app"))
        assert.is_true(run_all(all, function() return #seen >= 2 end, 10000), "the later app was not delivered")
        assert.same({ "a-later-app", "first-app" }, seen[#seen])
        sub.cancel()
    end)

    it("picks up a mapping node created after the subscription", function()
        local provider, _, p_chain = runtime()
        local consumer, _, c_chain = runtime()
        local both = { provider, consumer }
        assert.is_true(connected(both))
        local seen = {}
        local sub = c_chain:subscribe({ protocol = "dubbo", interface = "com.acme.Late", version = "1.0.0" },
                                      function(apps) seen[#seen + 1] = apps end)
        assert.is_true(run_all(both, function() return #seen >= 1 end, 10000))
        assert.same({}, seen[1])
        assert.is_nil(call(both, p_chain.map, p_chain, "com.acme.Late", "creator"))
        assert.is_true(run_all(both, function() return #seen >= 2 end, 10000), "the new node was not delivered")
        assert.same({ "creator" }, seen[2])
        sub.cancel()
    end)

    it("reads and follows the Dubbo 2.7.5 layout with config_v27", function()
        local rt, reg, chain = runtime({ policies = { "mapping/config_v27" } })
        assert.is_true(connected({ rt }))
        local base = "/" .. group .. "/config/mapping/com.acme.Old"
        local session = assert(rt.loop:zk({ hosts = zk_server.connect_string }))
        assert.is_true(run_all({ rt }, function() return session:state() == "connected" end, 10000))
        -- As 2.7.5's publishConfig leaves them: one child per app, a timestamp each.
        for _, app in ipairs({ "legacy-b", "legacy-a" }) do
            local err = call({ rt }, session.create, session, base .. "/" .. app, "1590000000000",
                             { parents = true })
            assert.is_nil(err)
        end
        local err, apps = call({ rt }, chain.resolve, chain, "com.acme.Old", nil)
        assert.is_nil(err)
        assert.same({ "legacy-a", "legacy-b" }, apps)
        local lerr, missing = call({ rt }, reg.list_config, base .. "-none")
        assert.is_nil(lerr)
        assert.is_nil(missing)

        -- Live: a child added later is delivered, through watch_config_children.
        local seen = {}
        local sub = chain:subscribe("com.acme.Old", function(list) seen[#seen + 1] = list end)
        assert.is_true(run_all({ rt }, function() return #seen >= 1 end, 10000))
        assert.same({ "legacy-a", "legacy-b" }, seen[1])
        assert.is_nil(call({ rt }, chain.map, chain, "com.acme.Old", "legacy-c"))
        assert.is_true(run_all({ rt }, function() return #seen >= 2 end, 10000))
        assert.same({ "legacy-a", "legacy-b", "legacy-c" }, seen[2])
        local _, result = call({ rt }, session.get, session, base .. "/legacy-c", nil)
        assert.matches("^%d+$", result.data)
        sub.cancel()
        session:close()
    end)

    it("never maps the MetadataService", function()
        local rt, reg, chain = runtime()
        assert.is_true(connected({ rt }))
        assert.is_nil(call({ rt }, chain.map, chain, mapping.METADATA_SERVICE, "shop"))
        local direct = rt.plugins:get("mapping/zookeeper")
        assert.is_nil(call({ rt }, direct.map, { interface = mapping.METADATA_SERVICE, app = "shop",
                                                  registry = reg }))
        local session = reg.session()
        local err = call({ rt }, session.exists, session, "/" .. group .. "/mapping/" .. mapping.METADATA_SERVICE,
                         nil)
        assert.matches("^ENONODE", err)
    end)
end)
