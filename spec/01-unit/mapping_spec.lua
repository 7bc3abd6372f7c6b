-- disco.mapping: the chain of mapping policies (first non-empty answer in
-- order, a failing policy skipped and logged, live updates, hot reload)
-- and the static, zookeeper-layout and subscribed-services policies, on the
-- memory registry.
local mapping = require "disco.mapping"
local memory_store = require "disco.registry.memory_store"
local helpers = require "spec.helpers"
local plugins = require "spec.support.plugins"
local regspec = require "spec.support.registry"
local run_all, call = regspec.run_all, regspec.call

local FIXTURE = "spec/fixtures/mapping/service-name-mapping.properties"

-- A policy that raises in resolve, and one that answers a fixed list.
local BROKEN = [[
local M = { name = "broken", version = "1.0.0", kind = "mapping" }
function M.init() end
function M.resolve(req) error("boom for " .. req.interface) end
function M.watch() error("no watching either") end
return M
]]
local FIXED = [[
local M = { name = "fixed", version = "1.0.0", kind = "mapping" }
local ctx, apps
function M.init(c, conf) ctx, apps = c, conf.apps end
function M.resolve(req, cb) ctx:after(0, function() cb(nil, apps) end) end
return M
]]
-- A policy that fails (as mapping/zookeeper does while the registry is
-- unreachable) until its configuration's `down` is cleared; no watch.
local FLAKY = [[
local M = { name = "flaky", version = "1.0.0", kind = "mapping" }
local ctx, conf
function M.init(c, cf) ctx, conf = c, cf end
function M.resolve(req, cb)
    conf.asked = (conf.asked or 0) + 1
    ctx:after(0, function()
        if conf.down then return cb("ECONNLOSS: registry unreachable") end
        cb(nil, { "shop" })
    end)
end
return M
]]
local SILENT = [[
local M = { name = "silent", version = "1.0.0", kind = "mapping" }
function M.init() end
function M.resolve() end
return M
]]

describe("disco.mapping", function()
    local rts, root

    local function runtime()
        local rt = plugins.runtime(root, { log_level = "info" })
        rt.plugins:add_path("plugins")
        rt.plugins:add_path(root) -- the spec's own policies first
        rts[#rts + 1] = rt
        return rt, assert(rt:registry("memory://mapping-spec"))
    end

    local function logged(rt, level, pattern)
        for _, line in ipairs(rt.logged) do
            if line.level == level and line.message:find(pattern) then
                return true
            end
        end
        return false
    end

    before_each(function()
        memory_store.reset()
        rts = {}
        root = plugins.root()
        plugins.write(root, "mapping/broken", BROKEN)
        plugins.write(root, "mapping/fixed", FIXED)
        plugins.write(root, "mapping/silent", SILENT)
    end)

    after_each(function()
        for _, rt in ipairs(rts) do
            rt:close()
        end
    end)

    it("parses service IDs and normalizes lists of names", function()
        assert.same({ interface = "com.acme.Foo" }, mapping.service_id("com.acme.Foo"))
        assert.same({ protocol = "tri", interface = "com.acme.Foo", version = "1.0.0", group = "g" },
                    mapping.service_id("tri:com.acme.Foo:1.0.0:g"))
        assert.same({ protocol = "dubbo", interface = "com.acme.Foo", group = "g" },
                    mapping.service_id("dubbo:com.acme.Foo::g"))
        assert.is_nil((mapping.service_id("dubbo:")))
        assert.same({ "a b", "c" }, mapping.split_apps(" c ,a b,, c,"))
        assert.same({}, mapping.split_apps(nil))
        assert.same({ "x", "y" }, mapping.normalize({ "y", "x", " y", 3, "" }))
    end)

    it("lets provided_by win over the properties file and the registry", function()
        local rt, reg = runtime()
        assert.is_nil(call({ rt }, reg.cas_config, "/dubbo/mapping/com.acme.Interface1",
                           function() return "zk-app" end))
        local chain = assert(mapping.new(rt, { registry = reg,
                                               conf = { ["mapping/static"] = { file = FIXTURE } } }))
        local err, apps = call({ rt }, chain.resolve, chain, "com.acme.Interface1",
                               { provided_by = "b-app, a-app,b-app" })
        assert.is_nil(err)
        assert.same({ "a-app", "b-app" }, apps)
        -- As a list too.
        err, apps = call({ rt }, chain.resolve, chain, "com.acme.Interface1", { provided_by = { "solo" } })
        assert.is_nil(err)
        assert.same({ "solo" }, apps)
    end)

    it("maps through the properties file with Dubbo's protocol:interface[:group][:version] keys", function()
        local rt, reg = runtime()
        local chain = assert(mapping.new(rt, { registry = reg,
                                               conf = { ["mapping/static"] = { file = FIXTURE } } }))
        local function resolve(sid)
            local err, apps = call({ rt }, chain.resolve, chain, sid, nil)
            assert.is_nil(err)
            return apps
        end
        assert.same({ "P1 Service", "P2 Service" },
                    resolve({ protocol = "dubbo", interface = "com.acme.Interface1", group = "default" }))
        assert.same({ "cart", "shop" }, resolve("com.acme.Interface2"))
        assert.same({ "Service1", "Service2" }, resolve("thrift:com.acme.InterfaceX"))
        assert.same({ "versioned-app" }, resolve("dubbo:com.acme.Versioned:1.0.0:g1"))
        -- Keys are exact: no group means no ":default".
        assert.same({}, resolve("com.acme.Interface1"))
        assert.same({}, resolve("dubbo:com.acme.Versioned::g1"))
    end)

    it("re-reads the properties file on a reload of mapping/static", function()
        local rt, reg = runtime()
        local file = root .. "/mapping.properties"
        helpers.write_file(file, "dubbo\\:com.acme.Foo = first\n")
        local chain = assert(mapping.new(rt, { registry = reg, conf = { ["mapping/static"] = { file = file } } }))
        local seen = {}
        local sub = chain:subscribe("com.acme.Foo", function(apps) seen[#seen + 1] = apps end)
        assert.is_true(run_all({ rt }, function() return #seen == 1 end))
        assert.same({ "first" }, seen[1])
        helpers.write_file(file, "dubbo\\:com.acme.Foo = second, third\n")
        assert.is_true(rt:reload("mapping/static"))
        assert.is_true(run_all({ rt }, function() return #seen == 2 end))
        assert.same({ "second", "third" }, seen[2])
        -- A broken file fails the reload; the old mapping stays in force.
        helpers.write_file(file, "dubbo\\:com.acme.Foo = \\uZZZZ\n")
        local ok, err = rt:reload("mapping/static")
        assert.is_nil(ok)
        assert.matches("malformed", err)
        local rerr, apps = call({ rt }, chain.resolve, chain, "com.acme.Foo", nil)
        assert.is_nil(rerr)
        assert.same({ "second", "third" }, apps)
        sub.cancel()
    end)

    it("follows the chain order and falls back to subscribed_services", function()
        local rt, reg = runtime()
        local chain = assert(mapping.new(rt, { registry = reg, subscribed_services = "fallback-b,fallback-a" }))
        assert.same(mapping.DEFAULT_POLICIES, chain.policies)
        -- Nothing static, nothing in the registry: the fallback.
        local err, apps = call({ rt }, chain.resolve, chain, "com.acme.Foo", nil)
        assert.is_nil(err)
        assert.same({ "fallback-a", "fallback-b" }, apps)
        -- The request's own list replaces the configured one.
        err, apps = call({ rt }, chain.resolve, chain, "com.acme.Foo", { subscribed_services = "mine" })
        assert.is_nil(err)
        assert.same({ "mine" }, apps)
        -- The registry's mapping node comes before the fallback.
        assert.is_nil(call({ rt }, reg.cas_config, "/dubbo/mapping/com.acme.Foo", function() return " z , y,," end))
        err, apps = call({ rt }, chain.resolve, chain, "com.acme.Foo", nil)
        assert.is_nil(err)
        assert.same({ "y", "z" }, apps)
        -- A chain without any answer gives {}.
        local empty = assert(mapping.new(rt, { registry = reg, policies = { "mapping/static" } }))
        err, apps = call({ rt }, empty.resolve, empty, "com.acme.Nothing", nil)
        assert.is_nil(err)
        assert.same({}, apps)
    end)

    it("reads subscribed-services from the registry URL", function()
        local rt, reg = runtime()
        local chain = assert(mapping.new(rt, { registry = reg,
                                               registry_url = "memory://x?subscribed-services=u2,u1" }))
        local err, apps = call({ rt }, chain.resolve, chain, "com.acme.Foo", nil)
        assert.is_nil(err)
        assert.same({ "u1", "u2" }, apps)
    end)

    it("skips and logs a policy that raises, answers nothing in time or is missing", function()
        local rt, reg = runtime()
        assert(rt:load_plugin("mapping/fixed", { apps = { "good" } }))
        local chain = assert(mapping.new(rt, { registry = reg, timeout_ms = 200,
                                               policies = { "mapping/broken", "mapping/silent", "mapping/fixed" } }))
        local err, apps = call({ rt }, chain.resolve, chain, "com.acme.Foo", nil)
        assert.is_nil(err)
        assert.same({ "good" }, apps)
        assert.is_true(logged(rt, "error", "mapping/broken: resolve raised: .*boom for com.acme.Foo"))
        assert.is_true(logged(rt, "warn", "mapping/silent: resolve failed, skipped: ETIMEDOUT"))
        -- Its watch raising does not stop a subscription either.
        local seen
        local sub = chain:subscribe("com.acme.Foo", function(list) seen = list end)
        assert.is_true(run_all({ rt }, function() return seen ~= nil end))
        assert.same({ "good" }, seen)
        assert.is_true(logged(rt, "error", "mapping/broken: watch raised"))
        sub.cancel()
        -- Every policy failing is an error, not an empty answer.
        rt.plugins:unload("mapping/fixed")
        err, apps = call({ rt }, chain.resolve, chain, "com.acme.Foo", nil)
        assert.matches("^EMAPPING: .*mapping/broken: .*boom.*mapping/silent: ETIMEDOUT.*mapping/fixed: ENOPLUGIN", err)
        assert.is_nil(apps)
    end)

    it("retries a failed resolution on a timer until it succeeds, then stops", function()
        local rt, reg = runtime()
        plugins.write(root, "mapping/flaky", FLAKY)
        local conf = { down = true }
        assert(rt:load_plugin("mapping/flaky", conf))
        local saved = { mapping.RETRY_MIN_MS, mapping.RETRY_MAX_MS }
        mapping.RETRY_MIN_MS, mapping.RETRY_MAX_MS = 20, 40
        finally(function() mapping.RETRY_MIN_MS, mapping.RETRY_MAX_MS = saved[1], saved[2] end)
        local chain = assert(mapping.new(rt, { registry = reg, policies = { "mapping/flaky" } }))
        local seen = {}
        local sub = chain:subscribe("com.acme.Foo", function(list) seen[#seen + 1] = list end)
        -- The first answer is the empty list, and the chain keeps asking.
        assert.is_true(run_all({ rt }, function() return (conf.asked or 0) >= 3 end, 5000))
        assert.same({ {} }, seen)
        conf.down = false
        assert.is_true(run_all({ rt }, function() return #seen == 2 end, 5000))
        assert.same({ "shop" }, seen[2])
        -- Once it succeeded, nothing asks again.
        local asked = conf.asked
        run_all({ rt }, function() return false end, 200)
        assert.equal(asked, conf.asked)
        sub.cancel()
    end)

    it("stops retrying when the subscription is cancelled", function()
        local rt, reg = runtime()
        plugins.write(root, "mapping/flaky", FLAKY)
        local conf = { down = true }
        assert(rt:load_plugin("mapping/flaky", conf))
        local saved = mapping.RETRY_MIN_MS
        mapping.RETRY_MIN_MS = 20
        finally(function() mapping.RETRY_MIN_MS = saved end)
        local chain = assert(mapping.new(rt, { registry = reg, policies = { "mapping/flaky" } }))
        local sub = chain:subscribe("com.acme.Foo", function() end)
        assert.is_true(run_all({ rt }, function() return (conf.asked or 0) >= 1 end, 5000))
        sub.cancel()
        local asked = conf.asked
        run_all({ rt }, function() return false end, 200)
        assert.equal(asked, conf.asked)
    end)

    it("delivers the initial list, then each change of the mapping node, across runtimes", function()
        local consumer, c_reg = runtime()
        local provider, p_reg = runtime()
        local chain = assert(mapping.new(consumer, { registry = c_reg }))
        local seen = {}
        local sub = chain:subscribe({ protocol = "dubbo", interface = "com.acme.Live" },
                                    function(apps) seen[#seen + 1] = apps end)
        assert.is_true(run_all({ consumer }, function() return #seen == 1 end))
        assert.same({}, seen[1]) -- delivered even though empty

        local p_chain = assert(mapping.new(provider, { registry = p_reg }))
        assert.is_nil(call({ provider }, p_chain.map, p_chain, "com.acme.Live", "app-b"))
        assert.is_true(run_all({ consumer, provider }, function() return #seen == 2 end))
        assert.same({ "app-b" }, seen[2])
        assert.is_nil(call({ provider }, p_chain.map, p_chain, "com.acme.Live", "app-a"))
        assert.is_true(run_all({ consumer, provider }, function() return #seen == 3 end))
        assert.same({ "app-a", "app-b" }, seen[3])
        assert.same({ "app-a", "app-b" }, sub.apps())
        -- Mapping an app again changes nothing: no write, no delivery.
        local _, before = call({ provider }, p_reg.get_config, "/dubbo/mapping/com.acme.Live")
        assert.is_nil(call({ provider }, p_chain.map, p_chain, "com.acme.Live", "app-a"))
        local _, after, version = call({ provider }, p_reg.get_config, "/dubbo/mapping/com.acme.Live")
        assert.equals(before, after)
        assert.equals("app-b,app-a", after)
        assert.equals(1, version)
        -- A write that does not change the list is not delivered.
        assert.is_nil(call({ provider }, p_reg.cas_config, "/dubbo/mapping/com.acme.Live",
                           function() return "app-a, app-b" end))
        run_all({ consumer, provider }, function() return false end, 100)
        assert.equals(3, #seen)
        -- After cancel nothing more arrives.
        sub.cancel()
        assert.is_nil(call({ provider }, p_chain.map, p_chain, "com.acme.Live", "app-c"))
        run_all({ consumer, provider }, function() return false end, 100)
        assert.equals(3, #seen)
    end)

    it("never maps the MetadataService", function()
        local rt, reg = runtime()
        local chain = assert(mapping.new(rt, { registry = reg }))
        assert.is_nil(call({ rt }, chain.map, chain, mapping.METADATA_SERVICE, "shop"))
        -- Nor does the plugin when called directly.
        local zk_policy = rt.plugins:get("mapping/zookeeper")
        assert.is_nil(call({ rt }, zk_policy.map, { interface = mapping.METADATA_SERVICE, app = "shop",
                                                     registry = reg }))
        local _, value = call({ rt }, reg.get_config, "/dubbo/mapping/" .. mapping.METADATA_SERVICE)
        assert.is_nil(value)
    end)

    it("uses the mapping group of mapping/zookeeper's configuration", function()
        local rt, reg = runtime()
        local chain = assert(mapping.new(rt, { registry = reg,
                                               conf = { ["mapping/zookeeper"] = { group = "shopgroup" } } }))
        assert.is_nil(call({ rt }, chain.map, chain, "com.acme.Foo", "shop"))
        local _, value = call({ rt }, reg.get_config, "/shopgroup/mapping/com.acme.Foo")
        assert.equals("shop", value)
    end)

    it("reads the 2.7.5 layout through list_config", function()
        local rt, reg = runtime()
        local chain = assert(mapping.new(rt, { registry = reg, policies = { "mapping/config_v27" } }))
        local err, apps = call({ rt }, chain.resolve, chain, "com.acme.Old", nil)
        assert.is_nil(err)
        assert.same({}, apps)
        assert.is_nil(call({ rt }, chain.map, chain, "com.acme.Old", "legacy-b"))
        assert.is_nil(call({ rt }, reg.cas_config, "/dubbo/config/mapping/com.acme.Old/legacy-a",
                           function() return "1590000000000" end))
        err, apps = call({ rt }, chain.resolve, chain, "com.acme.Old", nil)
        assert.is_nil(err)
        assert.same({ "legacy-a", "legacy-b" }, apps)
        local _, stamp = call({ rt }, reg.get_config, "/dubbo/config/mapping/com.acme.Old/legacy-b")
        assert.matches("^%d+$", stamp)
        local lerr, missing = call({ rt }, reg.list_config, "/dubbo/config/mapping/com.acme.None")
        assert.is_nil(lerr)
        assert.is_nil(missing)
    end)

    it("re-arms live subscriptions on a reload of a policy", function()
        local consumer, reg = runtime()
        local chain = assert(mapping.new(consumer, { registry = reg }))
        local seen = {}
        local sub = chain:subscribe("com.acme.R", function(apps) seen[#seen + 1] = apps end)
        assert.is_true(run_all({ consumer }, function() return #seen == 1 end))
        assert.is_true(consumer:reload("mapping/zookeeper"))
        assert.is_nil(call({ consumer }, chain.map, chain, "com.acme.R", "after-reload"))
        assert.is_true(run_all({ consumer }, function() return #seen == 2 end))
        assert.same({ "after-reload" }, seen[2])
        run_all({ consumer }, function() return false end, 100)
        assert.equals(2, #seen) -- once, not once per version
        sub.cancel()
        chain:close()
    end)
end)

