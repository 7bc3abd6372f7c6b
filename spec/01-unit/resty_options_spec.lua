-- disco.resty.options: every option of disco.resty.init checked with a
-- clear error, the defaults, and the dict size estimate.
local options = require "disco.resty.options"

local BASE = { registry = "zookeeper://127.0.0.1:2181", subscriptions = { "rest:com.acme.Hello" } }

local function with(extra)
    local conf = {}
    for k, v in pairs(BASE) do
        conf[k] = v
    end
    for k, v in pairs(extra) do
        conf[k] = v
    end
    return conf
end

local function rejects(conf, message)
    local ok, err = pcall(options.check, conf)
    assert.is_false(ok)
    assert.matches(message, err, 1, true)
end

describe("disco.resty.options", function()
    it("fills in the defaults and canonical service IDs", function()
        local conf = options.check(with({
            subscriptions = { "rest:com.acme.Hello",
                              { id = "dubbo:com.acme.Cart:1.0.0:", opts = { debounce_ms = 5 } } },
        }))
        assert.equal("disco", conf.dict)
        assert.equal(0.01, conf.step_interval)
        assert.equal("auto", conf.owner)
        assert.equal(0.2, conf.feedback_flush)
        assert.same({ id = "rest:com.acme.Hello" }, conf.subscriptions[1])
        assert.same({ id = "dubbo:com.acme.Cart:1.0.0", opts = { debounce_ms = 5 } }, conf.subscriptions[2])
        assert.same({}, conf.runtime)
        assert.same({ nodes_per_service = 256, bytes_per_node = 160 }, conf.estimate)
    end)

    it("names the first problem", function()
        rejects(nil, "init expects a configuration table, got nil")
        rejects(with({ regsitry = "x" }), "unknown option 'regsitry'")
        rejects({ subscriptions = BASE.subscriptions }, "option 'registry' is required")
        rejects(with({ registry = "nope" }), "option 'registry':")
        rejects(with({ subscriptions = {} }), "option 'subscriptions' must list at least one service ID")
        rejects(with({ subscriptions = { "com.acme.Hello" } }), "subscriptions[1]: service id: expected")
        rejects(with({ subscriptions = { { id = "rest:a.B", bogus = 1 } } }), "subscriptions[1]: unknown key 'bogus'")
        rejects(with({ subscriptions = { "rest:a.B", "rest:a.B" } }), "subscriptions[2]: 'rest:a.B' is listed twice")
        rejects(with({ step_interval = 0 }), "option 'step_interval' must be a positive number up to 1, got 0")
        rejects(with({ step_interval = "10ms" }), "option 'step_interval' must be a number, got string")
        rejects(with({ owner = "master" }), "option 'owner' must be auto, worker0 or agent; got 'master'")
        rejects(with({ feedback_cap = 1.5 }), "option 'feedback_cap' must be a positive integer")
        rejects(with({ feedback_flush = 0 }), "option 'feedback_flush' must be a positive number up to 10, got 0")
        rejects(with({ feedback_flush = 11 }), "option 'feedback_flush' must be a positive number up to 10, got 11")
        rejects(with({ feedback_flush = "1s" }), "option 'feedback_flush' must be a number, got string")
        rejects(with({ runtime = { log_levle = "info" } }), "unknown runtime option 'log_levle'")
        rejects(with({ runtime = { log_level = "loud" } }), "runtime option 'log_level' must be one of")
        rejects(with({ consumer = { registry = "x" } }), "consumer.registry must not be set")
        rejects(with({ estimate = { nodes = 3 } }), "unknown estimate option 'nodes'")
        rejects(with({ estimate = { bytes_per_node = -1 } }), "estimate.bytes_per_node must be a positive integer")
        rejects(with({ empty_grace = -1 }), "option 'empty_grace' must be a number >= 0, got -1")
    end)

    it("refuses a dict too small for the estimate, naming the figures", function()
        local conf = options.check(with({ estimate = { nodes_per_service = 1000, bytes_per_node = 100 } }))
        local need = options.required_bytes(conf)
        assert.is_true(need > 2 * 1000 * 100)
        assert.equal(need, options.check_capacity(conf, need))
        local ok, err = pcall(options.check_capacity, conf, need - 1)
        assert.is_false(ok)
        assert.matches("lua_shared_dict disco is " .. (need - 1) .. " bytes; this configuration needs about "
                       .. need, err, 1, true)
    end)
end)
