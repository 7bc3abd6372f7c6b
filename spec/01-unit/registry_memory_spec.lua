-- registry/memory: the registry contract in process, with the semantics
-- flows rely on (sessions, registration identity, owner-only unregister,
-- coalesced async notifications, CAS on config), and survival of a reload.
local disco = require "disco"
local memory_store = require "disco.registry.memory_store"
local run_all = require("spec.support.registry").run_all

local function runtime(name)
    local rt = disco.runtime({ plugin_watch = false, log_level = "error" })
    local registry = assert(rt:load_plugin("registry/memory", { name = name }))
    return rt, registry
end

local function instance(port, extra)
    local i = { name = "shop", host = "127.0.0.1", port = port,
                metadata = { ["dubbo.metadata.revision"] = "r1" } }
    for k, v in pairs(extra or {}) do
        i[k] = v
    end
    return i
end

local function done_cb(box)
    return function(err, ...)
        box.err, box.done, box.results = err, true, { ... }
    end
end

describe("registry/memory", function()
    local provider, consumer, p_reg, c_reg

    before_each(function()
        memory_store.reset()
        provider, p_reg = runtime("spec")
        consumer, c_reg = runtime("spec")
    end)

    after_each(function()
        provider:close()
        consumer:close()
    end)

    it("delivers registrations to a watcher in another runtime, asynchronously", function()
        local changes = {}
        c_reg.watch_instances("shop", function(diff, list)
            changes[#changes + 1] = { diff = diff, list = list }
        end)
        local reg = {}
        p_reg.register(instance(20880), done_cb(reg))
        assert.is_nil(reg.done) -- never synchronously
        assert.is_true(run_all({ provider, consumer }, function() return reg.done and #changes >= 1 end))
        assert.is_nil(reg.err)
        assert.is_true(run_all({ consumer }, function()
            return #changes[#changes].list == 1
        end))
        local last = changes[#changes]
        assert.equals("127.0.0.1:20880", last.list[1].id)
        assert.equals("r1", last.list[1].metadata["dubbo.metadata.revision"])
        assert.is_number(last.list[1].identity.created)
        assert.is_number(last.list[1].registration_time)
        local apps = {}
        c_reg.list_apps(done_cb(apps))
        assert.is_true(run_all({ consumer }, function() return apps.done end))
        assert.same({ "shop" }, apps.results[1])
    end)

    it("coalesces a burst of changes into one notification", function()
        local calls, last = 0, nil
        c_reg.watch_instances("shop", function(diff, list)
            calls = calls + 1
            last = { diff = diff, list = list }
        end)
        assert.is_true(run_all({ consumer }, function() return calls == 1 end)) -- initial, empty
        for port = 1, 10 do
            p_reg.register(instance(port), function() end)
        end
        assert.is_true(run_all({ consumer, provider }, function() return calls == 2 end))
        assert.equals(10, #last.diff.added)
        assert.equals(10, #last.list)
        run_all({ consumer, provider }, function() return false end, 30)
        assert.equals(2, calls)
    end)

    it("reports a re-registration at the same address as updated, and unregisters only its own node", function()
        local last
        c_reg.watch_instances("shop", function(diff, list) last = { diff = diff, list = list } end)
        p_reg.register(instance(20880), function() end)
        assert.is_true(run_all({ consumer, provider }, function() return last and #last.list == 1 end))
        local old_identity = last.list[1].identity

        -- A new provider process (another session) registers the same address.
        local other, o_reg = runtime("spec")
        o_reg.register(instance(20880, { metadata = { ["dubbo.metadata.revision"] = "r2" } }), function() end)
        assert.is_true(run_all({ consumer, other }, function() return #last.diff.updated == 1 end))
        assert.are_not.equal(old_identity.created, last.list[1].identity.created)
        assert.equals("r2", last.list[1].metadata["dubbo.metadata.revision"])

        -- The old provider's unregister must not remove the new registration.
        local res = {}
        p_reg.unregister(instance(20880), done_cb(res))
        assert.is_true(run_all({ provider }, function() return res.done end))
        assert.matches("^ENOTOWNER: ", res.err)
        run_all({ consumer }, function() return false end, 20)
        assert.equals(1, #last.list)
        other:close()
    end)

    it("removes a session's registrations when its runtime closes", function()
        local last
        c_reg.watch_instances("shop", function(diff, list) last = { diff = diff, list = list } end)
        p_reg.register(instance(1), function() end)
        p_reg.register(instance(2), function() end)
        assert.is_true(run_all({ consumer, provider }, function() return last and #last.list == 2 end))
        provider:close()
        assert.is_true(run_all({ consumer }, function() return #last.list == 0 end))
        assert.equals(2, #last.diff.removed)
    end)

    it("updates a registration and rejects bad instances clearly", function()
        local last
        c_reg.watch_instances("shop", function(diff, list) last = { diff = diff, list = list } end)
        p_reg.register(instance(7), function() end)
        assert.is_true(run_all({ consumer, provider }, function() return last and #last.list == 1 end))
        p_reg.update(instance(7, { metadata = { ["dubbo.metadata.revision"] = "r9" } }), function() end)
        assert.is_true(run_all({ consumer, provider }, function() return #last.diff.updated == 1 end))
        assert.equals("r9", last.list[1].metadata["dubbo.metadata.revision"])

        local res = {}
        p_reg.register({ name = "shop", host = "127.0.0.1", port = 0 }, done_cb(res))
        assert.is_true(run_all({ provider }, function() return res.done end))
        assert.matches("^EINVAL: instance.port", res.err)
        res = {}
        p_reg.update(instance(8), done_cb(res))
        assert.is_true(run_all({ provider }, function() return res.done end))
        assert.matches("^ENONODE: ", res.err)
    end)

    it("does compare-and-set on config values, and watches them", function()
        local seen = {}
        c_reg.watch_config("/dubbo/mapping/com.acme.Foo", function(value, version)
            seen[#seen + 1] = { value, version }
        end)
        local function append(app)
            return function(old)
                if old and (("," .. old .. ","):find("," .. app .. ",", 1, true)) then
                    return nil
                end
                return old and (old .. "," .. app) or app
            end
        end
        local a, b, c = {}, {}, {}
        p_reg.cas_config("/dubbo/mapping/com.acme.Foo", append("app1"), done_cb(a))
        assert.is_true(run_all({ provider, consumer }, function() return a.done and #seen == 1 end))
        assert.same({ "app1", 0 }, seen[1]) -- created
        p_reg.cas_config("/dubbo/mapping/com.acme.Foo", append("app2"), done_cb(b))
        p_reg.cas_config("/dubbo/mapping/com.acme.Foo", append("app1"), done_cb(c))
        assert.is_true(run_all({ provider, consumer }, function()
            return b.done and c.done and #seen == 2
        end))
        assert.equals("app1,app2", b.results[1])
        assert.equals("app1,app2", c.results[1]) -- already there: unchanged
        local got = {}
        c_reg.get_config("/dubbo/mapping/com.acme.Foo", done_cb(got))
        assert.is_true(run_all({ consumer }, function() return got.done end))
        assert.same({ "app1,app2", 1 }, got.results)
        assert.same({ "app1,app2", 1 }, seen[#seen])
        local missing = {}
        c_reg.get_config("/nothing", done_cb(missing))
        assert.is_true(run_all({ consumer }, function() return missing.done end))
        assert.is_nil(missing.err)
        assert.is_nil(missing.results[1])
    end)

    it("keeps registrations and watchers across a reload of the plugin", function()
        local last, calls = nil, 0
        c_reg.watch_instances("shop", function(diff, list)
            calls = calls + 1
            last = { diff = diff, list = list }
        end)
        p_reg.register(instance(1), function() end)
        assert.is_true(run_all({ consumer, provider }, function() return last and #last.list == 1 end))
        assert.is_true(provider:reload("registry/memory"))
        assert.is_true(consumer:reload("registry/memory"))
        local new_p = provider.plugins:get("registry/memory")
        new_p.register(instance(2), function() end)
        assert.is_true(run_all({ consumer, provider }, function() return #last.list == 2 end))
        assert.equals(1, #last.diff.added)
        assert.equals(2, last.diff.added[1].port)
        -- the reloaded provider still owns its first registration
        local res = {}
        new_p.unregister(instance(1), done_cb(res))
        assert.is_true(run_all({ consumer, provider }, function() return res.done and #last.list == 1 end))
        assert.is_nil(res.err)
    end)

    it("stops calling a cancelled watcher", function()
        local calls = 0
        local w = c_reg.watch_instances("shop", function() calls = calls + 1 end)
        assert.is_true(run_all({ consumer }, function() return calls == 1 end))
        w.cancel()
        p_reg.register(instance(1), function() end)
        run_all({ consumer, provider }, function() return false end, 30)
        assert.equals(1, calls)
    end)
end)

describe("runtime:registry(url)", function()
    it("loads the registry plugin of the URL's scheme with the URL as its configuration", function()
        memory_store.reset()
        local rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        local registry = assert(rt:registry("memory://orders?x=1"))
        assert.equals(registry, rt.plugins:get("registry/memory"))
        local ok, err = rt:registry("memory://other")
        assert.is_nil(ok)
        assert.matches("a memory registry is connected already", err)
        ok, err = rt:registry("zookeeper://nohost")
        assert.is_nil(ok)
        assert.matches("bad host 'nohost'", err)
        -- the name reached the plugin: registrations land in memory://orders
        registry.register({ name = "shop", host = "127.0.0.1", port = 1 }, function() end)
        assert.same({ "shop" }, memory_store.get("orders"):app_names())
        rt:close()
    end)
end)

describe("disco.registry.url", function()
    local url = require "disco.registry.url"

    it("parses zookeeper URLs with hosts, chroot and parameters", function()
        local u = assert(url.parse("zookeeper://127.0.0.1:2181,127.0.0.2:2182/dubbo?session_timeout=4000"
                                   .. "&auth=digest:user:p%40ss&root=/services"))
        assert.equals("zookeeper", u.scheme)
        assert.same({ "127.0.0.1:2181", "127.0.0.2:2182" }, u.hosts)
        assert.equals("/dubbo", u.chroot)
        assert.equals("4000", u.params.session_timeout)
        assert.equals("digest:user:p@ss", u.params.auth)
        assert.equals("/services", u.params.root)
        assert.equals("", assert(url.parse("zookeeper://h:1")).chroot)
    end)

    it("parses memory URLs", function()
        assert.same({ scheme = "memory", name = "shop", params = {} }, url.parse("memory://shop"))
    end)

    it("explains what is wrong with a bad URL", function()
        local cases = {
            { "redis://x", "unknown registry scheme 'redis'" },
            { "zookeeper://", "no host given" },
            { "zookeeper://h:0", "bad host 'h:0'" },
            { "zookeeper://h", "bad host 'h'" },
            { "zookeeper://h:1/a/", "bad chroot" },
            { "memory://", "memory://NAME" },
            { "nonsense", "expected scheme://" },
        }
        for _, case in ipairs(cases) do
            local ok, err = url.parse(case[1])
            assert.is_nil(ok, case[1])
            assert.matches(case[2], err, 1, true)
        end
    end)
end)
