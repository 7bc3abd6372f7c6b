-- The configuration of `disco serve`: every key checked, unknown keys
-- named, defaults filled in; and the command's exit status 2 on a bad file.
local config = require "disco.serve.config"
local helpers = require "spec.helpers"

local _ -- the values a test does not look at

describe("disco.serve.config", function()
    local function base(extra)
        local t = { registry = "memory://conf", subscriptions = { "dubbo:com.acme.Cart:1.0.0" } }
        for k, v in pairs(extra or {}) do
            t[k] = v
        end
        return t
    end

    local function refused(t, message)
        local conf, err = config.validate(t)
        assert.is_nil(conf)
        assert.matches(message, err, 1, true)
    end

    it("loads the shipped example with every section", function()
        local conf = assert(config.load("examples/serve.conf.lua"))
        assert.equal("zookeeper://127.0.0.1:2181?session_timeout=30000", conf.registry)
        assert.same({ host = "127.0.0.1", port = 9901 }, conf.admin)
        assert.same({ id = "dubbo:com.acme.Cart:1.0.0" }, conf.subscriptions[1])
        assert.same({ id = "dubbo:com.acme.Payment", empty_protection = true, debounce_ms = 100,
                      provided_by = { "billing" } }, conf.subscriptions[2])
        assert.same({ interface = "com.acme.Inventory", version = "1.0.0" }, conf.provider.services[1])
        assert.same({ interface = "com.acme.Stock", methods = { "get" } }, conf.provider.services[2])
        assert.same({ { name = "listener/log_changes" } }, conf.plugins.load)
        assert.equal(1000, conf.metrics.max_apps)
    end)

    it("fills in the defaults: loopback admin on 9901, 1000 app labels", function()
        local conf = assert(config.validate(base()))
        assert.same({ host = "127.0.0.1", port = 9901 }, conf.admin)
        assert.equal(1000, conf.metrics.max_apps)
        assert.same({}, conf.plugins.load)
        -- A service ID is normalised as the consumer formats it.
        conf = assert(config.validate(base({ subscriptions = { "dubbo:com.acme.Cart::g1" } })))
        assert.equal("dubbo:com.acme.Cart::g1", conf.subscriptions[1].id)
    end)

    it("names an unknown key, at any depth, with the keys known there", function()
        refused(base({ bogus = 1 }), "unknown key 'bogus' (known here: admin, consumer, metrics,")
        refused(base({ consumer = { snapshot_dirr = "/x" } }),
                "unknown key 'consumer.snapshot_dirr' (known here: cache, cache_file,")
        refused(base({ admin = { hots = "0.0.0.0" } }), "unknown key 'admin.hots'")
        refused(base({ subscriptions = { { id = "dubbo:a.B", debounce = 5 } } }),
                "unknown key 'subscriptions[1].debounce'")
        refused(base({ consumer = { validation = { rulez = {} } } }), "unknown key 'consumer.validation.rulez'")
        refused(base({ provider = { app = "a", port = 1, services = { { interface = "I", verison = "1" } } } }),
                "unknown key 'provider.services[1].verison'")
        refused(base({ plugins = { load = { { name = "listener/x", config = {} } } } }),
                "unknown key 'plugins.load[1].config'")
    end)

    it("refuses wrong types and values, naming the key", function()
        refused({ subscriptions = { "dubbo:a.B" } }, "'registry' is required")
        refused(base({ registry = "nope" }), "'registry' is not a registry URL")
        refused(base({ admin = { port = 70000 } }), "'admin.port' must be an integer from 0 to 65535, got 70000")
        refused(base({ admin = { port = "80" } }), "'admin.port' must be an integer")
        refused(base({ subscriptions = { "com.acme.Cart" } }), "'subscriptions[1]' is not a service ID")
        refused(base({ subscriptions = { { debounce_ms = 5 } } }), "'subscriptions[1].id' is required")
        refused(base({ subscriptions = { { id = "dubbo:a.B", debounce_ms = -1 } } }),
                "'subscriptions[1].debounce_ms' must be an integer from 0 up")
        refused(base({ subscriptions = { "dubbo:a.B", "dubbo:a.B" } }), "subscribes to dubbo:a.B a second time")
        refused(base({ subscriptions = { x = "dubbo:a.B" } }), "'subscriptions.x' is not a list entry")
        refused(base({ consumer = { validation = true } }), "'consumer.validation' must be a table")
        refused(base({ provider = { app = "a", port = 1, services = {} } }),
                "'provider.services' must list at least one service")
        refused(base({ provider = { app = "a", services = { "I" } } }), "'provider.port' is required")
        refused(base({ provider = { app = "a", port = 1, storage = "disk", services = { "I" } } }),
                "'provider.storage' must be one of local, remote, got disk")
        refused(base({ runtime = { log_level = "loud" } }), "'runtime.log_level' must be one of error")
        refused(base({ metrics = { max_apps = 0 } }), "'metrics.max_apps' must be an integer from 1 up")
        refused({ registry = "memory://x" }, "nothing to serve")
        local conf, err = config.validate("registry")
        assert.is_nil(conf)
        assert.equal("the configuration must be a table, got string", err)
        -- validation = false is a value of its own.
        assert.is_false(assert(config.validate(base({ consumer = { validation = false } }))).consumer.validation)
    end)

    it("reports a file that does not load or does not return a table", function()
        local dir = helpers.tmpdir()
        local conf, err = config.load(dir .. "/missing.lua")
        assert.is_nil(conf)
        assert.matches("missing.lua", err, 1, true)
        helpers.write_file(dir .. "/syntax.lua", "return {")
        conf, err = config.load(dir .. "/syntax.lua")
        assert.is_nil(conf)
        assert.matches("syntax.lua:1:", err, 1, true)
        helpers.write_file(dir .. "/raises.lua", "error('no config today')")
        conf, err = config.load(dir .. "/raises.lua")
        assert.is_nil(conf)
        assert.matches("no config today", err, 1, true)
        helpers.write_file(dir .. "/number.lua", "return 42")
        conf, err = config.load(dir .. "/number.lua")
        assert.is_nil(conf)
        assert.equal(dir .. "/number.lua: the configuration must be a table, got number", err)
    end)

    it("makes disco serve exit 2 naming the key, and --check accept a valid file", function()
        local dir = helpers.tmpdir()
        local bad = helpers.write_file(dir .. "/bad.lua",
                                       'return { registry = "memory://x", subscriptions = { "dubbo:a.B" },'
                                       .. ' admin = { prot = 1 } }')
        local status, out, err = helpers.run_disco({ "serve", bad })
        assert.equal(2, status, err)
        assert.equal("", out)
        assert.matches("disco serve: " .. bad .. ": unknown key 'admin.prot'", err, 1, true)
        status, out, err = helpers.run_disco({ "serve", "--check", "examples/serve.conf.lua" })
        assert.equal(0, status, err)
        assert.equal("disco serve: examples/serve.conf.lua is valid\n", out)
        status, _, err = helpers.run_disco({ "serve" })
        assert.equal(2, status)
        assert.matches("usage: disco serve CONFIG.lua", err, 1, true)
        status, _, err = helpers.run_disco({ "serve", "a.lua", "b.lua" })
        assert.equal(2, status)
        assert.matches("expected one configuration file", err, 1, true)
    end)
end)
