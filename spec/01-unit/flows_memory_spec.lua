-- The provider and consumer flows on the in-process memory registry, with
-- local storage served by the in-process MetadataService: the steps and
-- their events, updates, stops, vetoes, mapping through the registry, URL
-- building and change-only notifications.
local disco = require "disco"
local address_list = require "disco.address_list"
local metadata_info = require "disco.metadata_info"
local service_id = require "disco.service_id"
local ports = require "disco.testing.ports"
local regspec = require "spec.support.registry"
local run_all = regspec.run_all

local IFACE = "com.acme.Cart"
local SID = "dubbo:" .. IFACE .. ":1.0.0"

local store_seq = 0

describe("flows on the memory registry", function()
    local rt, url, seen

    before_each(function()
        store_seq = store_seq + 1
        url = "memory://flows" .. store_seq
        rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        seen = {}
        rt:on("*", function(event) seen[#seen + 1] = event.type end)
    end)

    after_each(function()
        rt:close()
    end)

    local function wait(pred, ms)
        return run_all({ rt }, pred, ms or 5000)
    end

    local function call(fn)
        local done, err = false, nil
        fn(function(e) done, err = true, e end)
        assert.is_true(wait(function() return done end), "no answer")
        return err
    end

    local function provider(app, port, extra)
        local conf = { registry = url, app = app, host = "127.0.0.1", port = port }
        for k, v in pairs(extra or {}) do
            conf[k] = v
        end
        local p = rt:provider(conf)
        p:export({ interface = IFACE, version = "1.0.0", methods = { "remove", "add" } })
        return p
    end

    local function index_of(list, value, from)
        for i = from or 1, #list do
            if list[i] == value then
                return i
            end
        end
    end

    it("publishes an application and resolves it through the mapping it wrote", function()
        local port = ports.pick_port()
        local p = provider("shop", port)
        assert.is_nil(call(function(cb) p:start(cb) end))
        local exported = index_of(seen, "ServiceConfigExported")
        local pre = index_of(seen, "ServiceInstancePreRegistered")
        local registered = index_of(seen, "ServiceInstanceRegistered")
        assert.is_truthy(exported and pre and registered)
        assert.is_true(exported < pre and pre < registered)
        assert.matches("^%x+$", p.revision)
        assert.equal(32, #p.revision)
        assert.equal(p.revision, p.instance.metadata["dubbo.metadata.revision"])
        assert.equal("local", p.instance.metadata["dubbo.metadata.storage-type"])
        assert.equal('[{"port":' .. port .. ',"protocol":"dubbo"}]', p.instance.metadata["dubbo.endpoints"])

        local c = rt:consumer({ registry = url })
        local last
        c:subscribe(SID, function(_, list) last = list end)
        assert.is_true(wait(function() return last and #last == 1 end))
        local entry = last[1]
        assert.equal("shop", entry.app)
        assert.equal(port, entry.port)
        assert.matches("^dubbo://127%.0%.0%.1:" .. port .. "/com%.acme%.Cart%?", entry.url)
        assert.matches("methods=add,remove", entry.url, 1, true)
        assert.matches("version=1.0.0", entry.url, 1, true)
        assert.truthy(index_of(seen, "ReferenceConfigInitialized"))
        assert.truthy(index_of(seen, "ServiceInstancesChanged"))
        assert.equal(1, c:counters().fetch_calls)
    end)

    it("publishes a change of exports as a new revision, updated in place", function()
        local port = ports.pick_port()
        local p = provider("shop", port)
        assert.is_nil(call(function(cb) p:start(cb) end))
        local first = p.revision
        local c = rt:consumer({ registry = url })
        local orders
        c:subscribe("dubbo:com.acme.Order", function(_, list) orders = list end, { provided_by = { "shop" } })
        assert.is_true(wait(function() return orders ~= nil end))
        assert.equal(0, #orders)

        p:export({ interface = "com.acme.Order", methods = { "place" } })
        assert.is_nil(call(function(cb) p:update(cb) end))
        assert.are_not.equal(first, p.revision)
        assert.is_true(wait(function() return #orders == 1 end))
        assert.matches("^dubbo://127%.0%.0%.1:" .. port .. "/com%.acme%.Order%?", orders[1].url)
        -- The previous revision stays servable for consumers that saw it.
        assert.truthy(p.metadata_server.infos[first])
    end)

    it("stops: the instance goes and the consumer's list empties", function()
        local port = ports.pick_port()
        local p = provider("shop", port)
        assert.is_nil(call(function(cb) p:start(cb) end))
        local c = rt:consumer({ registry = url })
        local last, removed = nil, 0
        c:subscribe(SID, function(diff, list)
            last = list
            removed = removed + #diff.removed
        end)
        assert.is_true(wait(function() return last and #last == 1 end))
        assert.is_nil(call(function(cb) p:stop(cb) end))
        assert.is_true(wait(function() return #last == 0 end))
        assert.equal(1, removed)
        local pre = index_of(seen, "ServiceInstancePreUnregistered")
        local done = index_of(seen, "ServiceInstanceUnregistered")
        assert.is_true(pre ~= nil and done ~= nil and pre < done)
    end)

    it("fails fast when a PreRegistered listener vetoes: nothing registered, nothing mapped", function()
        rt:on("ServiceInstancePreRegistered", function() return false, "maintenance window" end)
        local port = ports.pick_port()
        local p = provider("shop", port)
        local err = call(function(cb) p:start(cb) end)
        assert.matches("^EVETOED: maintenance window", err)
        assert.truthy(index_of(seen, "ServiceDiscoveryException"))
        assert.is_nil(index_of(seen, "ServiceInstanceRegistered"))
        local registry = rt:registry_of(url)
        local _, value = regspec.call({ rt }, registry.get_config, "/dubbo/mapping/" .. IFACE)
        assert.is_nil(value)
    end)

    it("lets PreRegistered listeners add instance metadata", function()
        rt:on("ServiceInstancePreRegistered", function(event)
            event.instance.metadata.zone = "eu-1"
        end)
        local port = ports.pick_port()
        local p = provider("shop", port)
        assert.is_nil(call(function(cb) p:start(cb) end))
        local c = rt:consumer({ registry = url })
        local last
        c:subscribe(SID, function(_, list) last = list end)
        assert.is_true(wait(function() return last and #last == 1 end))
        assert.equal("eu-1", last[1].instance.metadata.zone)
        -- Instance labels reach the URL; the discovery keys do not.
        assert.matches("zone=eu-1", last[1].url, 1, true)
        assert.is_nil(last[1].url:find("dubbo.metadata", 1, true))
    end)

    it("calls the listener only when the address list really changed", function()
        local port = ports.pick_port()
        local p = provider("shop", port)
        assert.is_nil(call(function(cb) p:start(cb) end))
        local c = rt:consumer({ registry = url })
        local calls = 0
        c:subscribe(SID, function() calls = calls + 1 end)
        assert.is_true(wait(function() return calls == 1 end))
        -- Re-writing the same registration changes nothing a consumer sees.
        local registry = rt:registry_of(url)
        local changes = 0
        rt:on("ServiceInstancesChanged", function() changes = changes + 1 end)
        assert.is_nil(call(function(cb) registry.update(p.instance, cb) end))
        -- The registry did report the update (so the listener had its
        -- chance to be called)...
        assert.is_true(wait(function() return changes > 0 end))
        wait(function() return false end, 200)
        -- ...and the list, unchanged, was not delivered again.
        assert.equal(1, calls)
    end)

    it("groups instances by revision: many instances, one fetch per revision", function()
        for i = 1, 30 do
            local p = rt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = ports.pick_port(),
                                    revision_port = false })
            p:export({ interface = IFACE, version = "1.0.0", params = { shard = tostring(i % 2) } })
            assert.is_nil(call(function(cb) p:start(cb) end))
        end
        local c = rt:consumer({ registry = url })
        local last
        c:subscribe(SID, function(_, list) last = list end)
        assert.is_true(wait(function() return last and #last == 30 end))
        assert.equal(2, c:counters().fetch_calls)
        -- Each URL has its own instance's port, from dubbo.endpoints.
        for _, entry in ipairs(last) do
            assert.equal(entry.instance.port, entry.port)
            assert.matches(":" .. entry.port .. "/", entry.url, 1, true)
        end
    end)

    it("gives instances on different ports different revisions by default, as Dubbo 3.1.1+", function()
        local a = provider("shop", ports.pick_port())
        local b = provider("shop", ports.pick_port())
        assert.is_nil(call(function(cb) a:start(cb) end))
        assert.is_nil(call(function(cb) b:start(cb) end))
        assert.are_not.equal(a.revision, b.revision)
    end)

    it("delivers the first list without a revision that cannot be read, and adds it on a retry", function()
        local port = ports.pick_port()
        local p = provider("shop", port)
        assert.is_nil(call(function(cb) p:start(cb) end))
        local pool = require("disco.metadata.client_pool").new(rt.loop)
        finally(function() pool:close() end)
        local real = require("disco.metadata.fetch").local_service(pool, function(fn) rt:after(0, fn) end)
        local failures = 0
        local c = rt:consumer({
            registry = url,
            cache = { fast_retry_ms = 30, jitter = 0 },
            fetchers = { ["local"] = function(inst, app, revision, cb)
                if failures < 2 then
                    failures = failures + 1
                    return rt:after(0, function() cb("ECONNREFUSED: injected") end)
                end
                real(inst, app, revision, cb)
            end },
        })
        local lists = {}
        c:subscribe(SID, function(diff, list)
            assert.equal(0, #diff.removed)
            lists[#lists + 1] = #list
        end)
        assert.is_true(wait(function() return lists[2] ~= nil end))
        assert.same({ 0, 1 }, lists)
        assert.equal(2, c:counters().failures)
    end)

    it("rejects a bad service ID and a bad configuration with clear errors", function()
        local c = rt:consumer({ registry = url })
        assert.has_error(function() c:subscribe("com.acme.Cart", function() end) end)
        assert.has_error(function() rt:provider({ registry = url, app = "a/b", host = "127.0.0.1" }) end,
                         "provider 'app' must be an application name without '/' or ','")
        assert.has_error(function() rt:consumer({ registry = "nope://x" }) end)
    end)
end)

describe("address_list", function()
    local function info_with(service)
        local info = metadata_info.new("shop")
        info:add(metadata_info.service(service))
        return info
    end

    it("takes the port from the ServiceInfo, else dubbo.endpoints, else the instance", function()
        local sid = assert(service_id.parse("tri:com.acme.Cart"))
        local endpoints = '[{"port":20880,"protocol":"dubbo"},{"port":50051,"protocol":"tri"}]'
        local inst = { name = "shop", host = "127.0.0.1", port = 20880, id = "127.0.0.1:20880",
                       metadata = { ["dubbo.endpoints"] = endpoints } }
        local with_port = info_with({ name = "com.acme.Cart", protocol = "tri", port = 50052 })
        assert.equal(50052, address_list.entries(inst, with_port, sid, "shop")[1].port)
        local without = info_with({ name = "com.acme.Cart", protocol = "tri", port = -1 })
        assert.equal(50051, address_list.entries(inst, without, sid, "shop")[1].port)
        local bare = { name = "shop", host = "127.0.0.1", port = 20880, metadata = {} }
        assert.equal(20880, address_list.entries(bare, without, sid, "shop")[1].port)
    end)

    it("builds URLs disco.url parses back: service params, then instance labels", function()
        local url = require "disco.url"
        local info = info_with({ name = "com.acme.Cart", port = 20880,
                                 params = { side = "provider", methods = "a,b", note = "x&y=z é" } })
        local inst = { name = "shop", host = "::1", port = 20880, metadata = {
            zone = "eu 1", side = "consumer", ["dubbo.metadata.revision"] = "r", ["meta-v"] = "1.0.0" } }
        local entry = address_list.entries(inst, info, assert(service_id.parse("dubbo:com.acme.Cart")), "shop")[1]
        local u = assert(url.parse(entry.url))
        assert.equal(entry.url, url.format(u))
        assert.equal("::1", u.host)
        assert.equal(20880, u.port)
        assert.equal("com.acme.Cart", u.path)
        -- The service's own value wins over the instance's; discovery keys stay out.
        assert.same({ methods = "a,b", note = "x&y=z é", side = "provider", zone = "eu 1" }, u.params)
        assert.same({ "methods", "note", "side", "zone" }, u.keys)
    end)

    it("keeps only the services matching the service ID", function()
        local info = metadata_info.new("shop")
        info:add(metadata_info.service({ name = "com.acme.Cart", version = "1.0.0", port = 1 }))
        info:add(metadata_info.service({ name = "com.acme.Cart", version = "2.0.0", port = 2 }))
        info:add(metadata_info.service({ name = "com.acme.Cart", version = "1.0.0", group = "g", port = 3 }))
        local inst = { name = "shop", host = "h", port = 9, metadata = {} }
        local function ports_of(id)
            local out = {}
            for _, entry in ipairs(address_list.entries(inst, info, assert(service_id.parse(id)), "shop")) do
                out[#out + 1] = entry.port
            end
            return out
        end
        assert.same({ 1 }, ports_of("dubbo:com.acme.Cart:1.0.0"))
        assert.same({ 2 }, ports_of("dubbo:com.acme.Cart:2.0.0"))
        assert.same({ 3 }, ports_of("dubbo:com.acme.Cart:1.0.0:g"))
        assert.same({}, ports_of("tri:com.acme.Cart:1.0.0"))
    end)

    it("keeps an instance's last resolved MetadataInfo while its new revision is unknown", function()
        local info = info_with({ name = "com.acme.Cart", port = 7 })
        local sid = assert(service_id.parse("dubbo:com.acme.Cart"))
        local inst = { name = "shop", host = "h", port = 9, id = "h:9",
                       metadata = { ["dubbo.metadata.revision"] = "r1" } }
        local state = { name = "shop", instances = { inst }, last_info = {} }
        local set = {}
        address_list.collect(set, state, sid, function(rev) return rev == "r1" and info or nil end)
        assert.is_not_nil(next(set))
        local moved = { name = "shop", host = "h", port = 9, id = "h:9",
                        metadata = { ["dubbo.metadata.revision"] = "r2" } }
        state.instances = { moved }
        local again = {}
        address_list.collect(again, state, sid, function() return nil end)
        assert.is_not_nil(next(again))
        -- A new instance with an unknown revision is left out.
        state.instances = { { name = "shop", host = "h", port = 10, id = "h:10",
                              metadata = { ["dubbo.metadata.revision"] = "r3" } } }
        local none = {}
        address_list.collect(none, state, sid, function() return nil end)
        assert.is_nil(next(none))
    end)
    it("keeps the entries of the instance now at each address, and nothing of the ones it replaced", function()
        local info = info_with({ name = "com.acme.Cart", port = 7 })
        local sid = assert(service_id.parse("dubbo:com.acme.Cart"))
        local known = function(rev) return rev == "r1" and info or nil end
        local function registration(port)
            return { name = "shop", host = "h", port = port, id = "h:" .. port,
                     metadata = { ["dubbo.metadata.revision"] = "r1" } }
        end
        local state = { name = "shop", instances = { registration(9) }, last_info = {} }
        address_list.collect({}, state, sid, known)
        local first = address_list.entries_of(state, state.instances[1], sid, known)
        -- Unchanged, the instance's entries are reused, not rebuilt.
        assert.equal(first, address_list.entries_of(state, state.instances[1], sid, known))
        -- A new registration at the same address replaces them; the old
        -- instance, which the old entries point to, can then be collected
        -- (LuaJIT has no ephemerons: a weak table keyed by the instance
        -- whose value leads back to it would keep it forever).
        local watch = setmetatable({ state.instances[1] }, { __mode = "v" })
        first = nil -- luacheck: ignore 311
        state.instances = { registration(9) }
        local set = {}
        address_list.collect(set, state, sid, known)
        assert.equal(state.instances[1], select(2, next(set)).instance)
        collectgarbage()
        collectgarbage()
        assert.is_nil(watch[1])
        -- Forgetting the address drops what was kept for it.
        watch[1] = state.instances[1]
        address_list.forget(state, "h:9")
        state.instances = {}
        set = nil -- luacheck: ignore 311
        collectgarbage()
        collectgarbage()
        assert.is_nil(watch[1])
    end)
end)
