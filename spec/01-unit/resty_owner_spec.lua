-- disco.resty.owner outside nginx (a stub `ngx`, a fake shared dict, a
-- fake registry session): consumer entries to nodes, and what the owner
-- publishes from the consumer's lists, above all which empty lists it
-- holds back.
local options = require "disco.resty.options"
local shared = require "disco.resty.shared"
local fake_dict = require("spec.support.fake_shdict").new

local SID = "rest:com.acme.Hello"

local function entry(host, port, params, metadata)
    return { host = host, port = port, app = "hello", protocol = "rest",
             service = { params = params or {} },
             instance = { host = host, port = port, metadata = metadata or {} } }
end

describe("disco.resty.owner", function()
    local owner_mod, logged
    setup(function()
        logged = {}
        _G.ngx = {
            ERR = 4, WARN = 5, NOTICE = 6, INFO = 7, DEBUG = 8,
            log = function(level, ...)
                if level <= 5 then
                    logged[#logged + 1] = table.concat({ ... })
                end
            end,
            now = function() return 0 end,
            worker = { pid = function() return 1 end, exiting = function() return false end },
        }
        package.loaded["disco.resty.owner"] = nil
        owner_mod = require "disco.resty.owner"
    end)
    teardown(function()
        _G.ngx = nil
        package.loaded["disco.resty.owner"] = nil
    end)

    -- An owner of generation 1 on `dict`, as start() leaves it, without a
    -- runtime: its consumer has a registry whose session is connected
    -- while `link.connected`.
    local function new_owner(dict)
        local link = { connected = true, subscribed = {} }
        local conf = options.check({ registry = "memory://x", subscriptions = { SID } })
        assert(shared.ensure(dict, shared.OWNER_GEN, 1))
        local o = setmetatable({
            conf = conf, dict = dict, mode = "worker0", gen = 1,
            texts = {}, pending = {}, held = {}, addresses = {}, published = 0,
            stopped = false, steps = 0, busy_ms = 0, last_retry = 0,
            subs = {},
            consumer = {
                registry = { session = function()
                    return { state = function() return link.connected and "connected" or "connecting" end }
                end },
                subscribe = function(_, id, _, opts)
                    link.subscribed[#link.subscribed + 1] = id
                    return { cancel = function() end, opts = opts }
                end,
            },
        }, owner_mod.owner)
        return o, link
    end

    it("takes the weight from the URL, else the instance metadata, else 100", function()
        assert.equal(7, owner_mod.weight_of(entry("h", 1, { weight = "7" }, { weight = "9" })))
        assert.equal(9, owner_mod.weight_of(entry("h", 1, {}, { weight = "9" })))
        assert.equal(100, owner_mod.weight_of(entry("h", 1)))
        assert.equal(100, owner_mod.weight_of(entry("h", 1, { weight = "-3" })))
        assert.equal(0, owner_mod.weight_of(entry("h", 1, { weight = "0" })))
    end)

    it("gives one node per address, sorted, and maps addresses to instances", function()
        local addresses = {}
        local nodes = owner_mod.nodes_of({ entry("10.0.0.2", 80), entry("10.0.0.1", 81),
                                           entry("10.0.0.2", 80, { weight = "5" }) }, addresses)
        assert.same({
            { host = "10.0.0.1", port = 81, weight = 100, metadata = { app = "hello", protocol = "rest" } },
            { host = "10.0.0.2", port = 80, weight = 100, metadata = { app = "hello", protocol = "rest" } },
        }, nodes)
        assert.same({ ["10.0.0.1:81"] = "10.0.0.1:81", ["10.0.0.2:80"] = "10.0.0.2:80" }, addresses)
    end)

    it("publishes what the consumer gives, the empty list after its own non-empty one too", function()
        local dict = fake_dict(100000)
        local o = new_owner(dict)
        o:on_list(SID, { entry("10.0.0.1", 80), entry("10.0.0.2", 80) })
        assert.equal(2, shared.current_count(dict, SID))
        assert.equal("running", dict.data["owner/state"])
        -- The consumer's validation confirmed the removals: published.
        o:on_list(SID, {})
        assert.equal(0, shared.current_count(dict, SID))
        assert.is_nil(next(o.held))
    end)

    it("holds an empty list while the registry is not connected, then publishes it after the grace", function()
        local dict = fake_dict(100000)
        local o, link = new_owner(dict)
        link.connected = false
        o:on_list(SID, {})
        assert.is_nil(dict.data["v/" .. SID])
        assert.matches("is held (the registry is not connected)", logged[#logged], 1, true)
        o:check_held(0)
        link.connected = true
        o:check_held(1000)
        -- Connected: subscribed again (the consumer does not retry a
        -- mapping that failed while the registry was unreachable).
        assert.same({ SID }, link.subscribed)
        o:check_held(1000 + 9999)
        assert.is_nil(dict.data["v/" .. SID])
        -- A disconnection restarts the grace.
        link.connected = false
        o:check_held(1000 + 9999.5)
        link.connected = true
        o:check_held(1000 + 10000)
        assert.is_nil(dict.data["v/" .. SID])
        o:check_held(1000 + 10000 + 10000)
        assert.is_number(dict.data["v/" .. SID])
        assert.equal(0, shared.current_count(dict, SID))
    end)

    it("does not let a new owner's first empty list replace the previous owner's list", function()
        local dict = fake_dict(100000)
        local previous = assert(shared.encode(owner_mod.nodes_of({ entry("10.0.0.1", 80) })))
        local version = assert(shared.publish(dict, SID, previous))
        local o = new_owner(dict)
        o:on_list(SID, {})
        assert.equal(version, dict.data["v/" .. SID])
        assert.matches("would empty the previous owner's", logged[#logged], 1, true)
        -- A non-empty list replaces the held one at once.
        o:on_list(SID, { entry("10.0.0.3", 80) })
        assert.is_nil(next(o.held))
        local nodes = shared.decode(shared.current_text(dict, SID))
        assert.equal("10.0.0.3", nodes[1].host)
    end)

    it("adopts the dict's list when its first list is the same (no new version)", function()
        local dict = fake_dict(100000)
        local list = { entry("10.0.0.1", 80) }
        local version = assert(shared.publish(dict, SID, assert(shared.encode(owner_mod.nodes_of(list)))))
        local o = new_owner(dict)
        o:on_list(SID, list)
        assert.equal(version, dict.data["v/" .. SID])
        assert.equal("running", dict.data["owner/state"])
    end)

    it("publishes nothing once a newer owner claimed the dict", function()
        local dict = fake_dict(100000)
        local o = new_owner(dict)
        dict.data[shared.OWNER_GEN] = 2
        o:on_list(SID, { entry("10.0.0.1", 80) })
        assert.is_nil(dict.data["v/" .. SID])
    end)

    it("hands the workers' records to consumer:report_calls, by instance, and counts the calls", function()
        local dict = fake_dict(100000)
        local o = new_owner(dict)
        for _, name in ipairs(shared.COUNTERS) do
            shared.ensure(dict, "c/" .. name, 0)
        end
        o:on_list(SID, { entry("10.0.0.1", 80) })
        o.addresses["10.0.0.1:80"] = "instance-1"
        local got = {}
        o.consumer.report_calls = function(_, ...)
            got[#got + 1] = { ... }
        end
        o.rt = { step = function() end }
        o.report = owner_mod.reporter(o)
        assert(shared.push_feedback(dict, "10.0.0.1:80", 5, 2, 3, 10, 40, 100))
        dict:lpush(shared.FEEDBACK, "not a record")
        assert(shared.push_feedback(dict, "10.0.0.9:80", 0, 1, nil, nil, 0, 100))
        o:step(false)
        assert.same({ { "instance-1", 5, 2, 3, 10, 40 }, { "10.0.0.9:80", 0, 1, nil, nil, 0 } }, got)
        assert.equal(5 + 2 + 1, shared.counter(dict, "feedback_handled"))
        assert.equal(1, shared.counter(dict, "feedback_malformed"))
        assert.equal(0, #dict.lists[shared.FEEDBACK])
        assert.matches("1 malformed feedback records skipped", logged[#logged], 1, true)
    end)
end)
