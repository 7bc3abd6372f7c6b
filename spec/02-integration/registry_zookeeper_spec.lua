-- registry/zookeeper against a real ZooKeeper: Dubbo's layout and JSON,
-- discovery across runtimes, bad children skipped without hurting their
-- siblings, owner-only unregister, ACLs, config CAS, a killed provider's
-- removal within the session timeout, re-registration after an expiry,
-- and `disco ls`.
local disco = require "disco"
local helpers = require "spec.helpers"
local zk_instance = require "disco.registry.zk_instance"

local seq = 0
local function fresh_root()
    seq = seq + 1
    return string.format("/spec%d_%d", helpers.core.getpid(), seq)
end

local function instance(port, revision)
    return { name = "shop", host = "127.0.0.1", port = port,
             metadata = { ["dubbo.metadata.revision"] = revision or "r1",
                          ["dubbo.metadata.storage-type"] = "local" } }
end

local regspec = require "spec.support.registry"
local run_all, call = regspec.run_all, regspec.call

describe("registry/zookeeper #zookeeper", function()
    local zk_server, root, url, rts

    local function runtime(extra_query)
        local rt = disco.runtime({ plugin_watch = false, log_level = "warn" })
        rt.logged = {}
        rt.loop:set_log_sink(function(level, component, message)
            rt.logged[#rt.logged + 1] = { level = level, component = component, message = message }
        end)
        local registry = assert(rt:registry(url .. (extra_query or "")))
        rts[#rts + 1] = rt
        return rt, registry
    end

    -- A raw session for writing what the adapter must cope with.
    local function raw(rt, opts)
        opts = opts or {}
        opts.hosts = opts.hosts or zk_server.connect_string
        local session = assert(rt.loop:zk(opts))
        assert(run_all({ rt }, function() return session:state() == "connected" end, 10000))
        return session
    end

    before_each(function()
        zk_server = helpers.zookeeper()
        root = fresh_root()
        url = "zookeeper://" .. zk_server.connect_string .. "?session_timeout=4000&root=" .. root
        rts = {}
    end)

    after_each(function()
        for _, rt in ipairs(rts) do
            rt:close()
        end
    end)

    it("registers as Dubbo 3 does and discovers across runtimes", function()
        local provider, p_reg = runtime()
        local consumer, c_reg = runtime()
        local last
        c_reg.watch_instances("shop", function(diff, list) last = { diff = diff, list = list } end)
        assert.is_nil(call({ provider, consumer }, p_reg.register, instance(20880)))
        assert.is_true(run_all({ provider, consumer }, function() return last and #last.list == 1 end))
        local got = last.list[1]
        assert.equals("127.0.0.1", got.host)
        assert.equals(20880, got.port)
        assert.equals("r1", got.metadata["dubbo.metadata.revision"])
        assert.is_number(got.registration_time)
        assert.is_string(got.identity.owner)
        -- The watch's ZooKeeper reads are counted (bench/churn.lua uses
        -- them): children lists, and one read of the one node; the
        -- provider, which watches nothing, read nothing.
        local st = c_reg.stats()
        assert.is_true(st.lists >= 1, "lists " .. tostring(st.lists))
        assert.equals(1, st.reads)
        assert.same({ 0, 0 }, { p_reg.stats().lists, p_reg.stats().reads })

        -- The node: ephemeral, owned by the provider's session, Curator JSON.
        local session = raw(consumer)
        local err, result = call({ consumer }, session.get, session, root .. "/shop/127.0.0.1:20880", nil)
        assert.is_nil(err)
        assert.is_true(result.stat.ephemeral)
        assert.equals(got.identity.owner, result.stat.ephemeral_owner)
        assert.matches('^{"name":"shop","id":"127.0.0.1:20880","address":"127.0.0.1","port":20880,'
                       .. '"sslPort":null,"payload":{"@class":"org.apache.dubbo.registry.zookeeper.'
                       .. 'ZookeeperInstance","id":"127.0.0.1:20880","name":"shop","metadata":{', result.data)
        local decoded = assert(zk_instance.decode(result.data))
        assert.equals(zk_instance.encode(decoded), result.data)

        -- An update is seen as updated; the list of apps knows "shop".
        assert.is_nil(call({ provider, consumer }, p_reg.update, instance(20880, "r2")))
        assert.is_true(run_all({ provider, consumer }, function()
            return #last.diff.updated == 1 and last.list[1].metadata["dubbo.metadata.revision"] == "r2"
        end))
        assert.is_true(c_reg.stats().reads >= 2, "the updated node was read again")
        local lerr, apps = call({ consumer }, c_reg.list_apps)
        assert.is_nil(lerr)
        assert.same({ "shop" }, apps)
        -- Unregister removes it for the consumer.
        assert.is_nil(call({ provider, consumer }, p_reg.unregister, instance(20880)))
        assert.is_true(run_all({ provider, consumer }, function() return #last.list == 0 end))
        session:close()
    end)

    it("holds each instance once, parsed: no copy of the node data, a compact identity", function()
        local memory = require "disco.memory"
        local consumer, c_reg = runtime()
        local session = raw(consumer)
        -- 100 instances: a bulk load, for which the registry asks the
        -- host to settle memory afterwards.
        for port = 20880, 20979 do
            assert.is_nil(call({ consumer }, session.create, session, root .. "/shop/127.0.0.1:" .. port,
                               zk_instance.encode(instance(port)), { parents = true }))
        end
        local settles = memory.settles
        local last
        c_reg.watch_instances("shop", function(diff, list) last = { diff = diff, list = list } end)
        assert.is_true(run_all({ consumer }, function() return last and #last.list == 100 end))
        local got = last.list[1]
        -- The identity reads by name, matches the znode, and is read-only.
        local err, result = call({ consumer }, session.get, session, root .. "/shop/127.0.0.1:20880", nil)
        assert.is_nil(err)
        assert.equals(result.stat.czxid, got.identity.created)
        assert.equals(result.stat.mzxid, got.identity.modified)
        assert.equals(result.stat.ephemeral_owner, got.identity.owner)
        assert.is_nil(got.identity.other)
        assert.has_error(function() got.identity.created = 1 end)
        -- The children cache under the watch keeps names and stats only:
        -- the parsed instances are the one copy (reached through the
        -- plugin's reload hand-over, which this runtime then closes).
        local watches = 0
        for w in pairs(c_reg.save().watches) do
            watches = watches + 1
            local snap = w.cache:snapshot()
            assert.is_table(snap["127.0.0.1:20880"])
            assert.is_nil(snap["127.0.0.1:20880"].data)
            assert.is_nil(snap["127.0.0.1:20881"].data)
        end
        assert.equals(1, watches)
        -- The bulk load asked for a settle (full GC, C heap trim).
        assert.is_true(run_all({ consumer }, function() return memory.settles > settles end, 5000))
        -- A change still arrives with the new data, though the cache kept none.
        local updated = instance(20880, "r2")
        assert.is_nil(call({ consumer }, session.set, session, root .. "/shop/127.0.0.1:20880",
                           zk_instance.encode(updated), -1))
        assert.is_true(run_all({ consumer }, function()
            return #last.diff.updated == 1 and last.list[1].metadata["dubbo.metadata.revision"] == "r2"
        end))
        assert.is_true(last.list[1].identity.modified > got.identity.modified)
        assert.equals(got.identity.created, last.list[1].identity.created)
        session:close()
    end)

    it("skips malformed, empty, binary and oversized children with warnings, keeping their siblings", function()
        local consumer, c_reg = runtime()
        local session = raw(consumer)
        local base = root .. "/shop/"
        local good = zk_instance.encode(instance(1))
        local children = {
            ["127.0.0.1:1"] = good,
            ["127.0.0.1:2"] = "{not json",
            ["127.0.0.1:3"] = "",
            ["127.0.0.1:4"] = "\0\1\2\255\254",
            ["127.0.0.1:5"] = string.rep("x", 900 * 1024),
            ["127.0.0.1:6"] = zk_instance.encode(instance(6)),
        }
        for name, data in pairs(children) do
            assert.is_nil((call({ consumer }, session.create, session, base .. name, data, { parents = true })))
        end
        local last
        c_reg.watch_instances("shop", function(diff, list) last = { diff = diff, list = list } end)
        assert.is_true(run_all({ consumer }, function() return last ~= nil end))
        local ports = {}
        for _, i in ipairs(last.list) do
            ports[#ports + 1] = i.port
        end
        assert.same({ 1, 6 }, ports)
        local warnings = {}
        for _, line in ipairs(consumer.logged) do
            if line.level == "warn" and line.message:match("^skipping ") then
                warnings[#warnings + 1] = line.message
            end
        end
        table.sort(warnings)
        assert.equals(4, #warnings)
        assert.matches("skipping " .. base:gsub("%p", "%%%0") .. "127.0.0.1:2: not JSON", warnings[1])
        assert.matches("127.0.0.1:3: empty node data", warnings[2])
        assert.matches("127.0.0.1:4: not JSON", warnings[3])
        assert.matches("127.0.0.1:5: node data over the size limit", warnings[4])
        -- A good sibling added later still arrives.
        assert.is_nil((call({ consumer }, session.create, session, base .. "127.0.0.1:7",
                            zk_instance.encode(instance(7)), nil)))
        assert.is_true(run_all({ consumer }, function() return #last.list == 3 end))
        session:close()
    end)

    it("leaves a node re-created by another session in place on unregister", function()
        local old_provider, old_reg = runtime()
        local new_provider, new_reg = runtime()
        assert.is_nil(call({ old_provider }, old_reg.register, instance(20880)))
        -- The new provider takes the address over (delete + create).
        assert.is_nil(call({ new_provider }, new_reg.register, instance(20880, "r2")))
        local err = call({ old_provider }, old_reg.unregister, instance(20880))
        assert.matches("^ENOTOWNER: ", err)
        local session = raw(old_provider)
        local gerr, result = call({ old_provider }, session.get, session, root .. "/shop/127.0.0.1:20880", nil)
        assert.is_nil(gerr)
        assert.equals(new_reg.session():session_id(), result.stat.ephemeral_owner)
        assert.matches('"dubbo.metadata.revision":"r2"', result.data, 1, true)
        session:close()
    end)

    it("stops a client without the password from deleting an instance (digest ACL)", function()
        local provider, p_reg = runtime("&auth=digest:disco:s3cret")
        assert.is_nil(call({ provider }, p_reg.register, instance(20880)))
        local stranger = raw(provider)
        local err = call({ provider }, stranger.delete, stranger, root .. "/shop/127.0.0.1:20880", -1)
        assert.matches("^ENOAUTH: ", err)
        stranger:close()
    end)

    it("does compare-and-set on config values and watches them", function()
        local writer, w_reg = runtime()
        local reader, r_reg = runtime()
        local path = root .. "/mapping/com.acme.Foo"
        local seen = {}
        r_reg.watch_config(path, function(value, version) seen[#seen + 1] = { value, version } end)
        -- The watch's first read sets the baseline; changes after it are news.
        run_all({ reader }, function() return false end, 300)
        local function append(app)
            return function(old)
                if old and (("," .. old .. ","):find("," .. app .. ",", 1, true)) then
                    return nil
                end
                return old and (old .. "," .. app) or app
            end
        end
        local err, value = call({ writer }, w_reg.cas_config, path, append("app1"))
        assert.is_nil(err)
        assert.equals("app1", value)
        err, value = call({ writer }, w_reg.cas_config, path, append("app2"))
        assert.is_nil(err)
        assert.equals("app1,app2", value)
        err, value = call({ writer }, w_reg.cas_config, path, append("app1"))
        assert.is_nil(err)
        assert.equals("app1,app2", value)
        local gerr, got, version = call({ reader }, r_reg.get_config, path)
        assert.is_nil(gerr)
        assert.equals("app1,app2", got)
        assert.equals(1, version)
        assert.is_true(run_all({ reader, writer }, function()
            return #seen > 0 and seen[#seen][1] == "app1,app2"
        end))
        local merr, missing = call({ reader }, r_reg.get_config, root .. "/nothing")
        assert.is_nil(merr)
        assert.is_nil(missing)
    end)

    it("removes a killed provider's instance within the session timeout", function()
        local consumer, c_reg = runtime()
        local last
        c_reg.watch_instances("shop", function(diff, list) last = { diff = diff, list = list } end)
        local dir = helpers.tmpdir()
        local ready = dir .. "/ready"
        local script = helpers.write_file(dir .. "/provider.lua", string.format([[
            local rt = ...
            local registry = assert(rt:registry(%q))
            registry.register({ name = "shop", host = "127.0.0.1", port = 30001, metadata = {} }, function(err)
                assert(not err, err)
                local f = assert(io.open(%q, "w")); f:write("1"); f:close()
            end)
            rt:after(60000, function() rt:stop(1) end)
        ]], url, ready))
        local pipe = assert(io.popen(helpers.shell_quote(helpers.disco_bin) .. " run "
                                     .. helpers.shell_quote(script) .. " >/dev/null 2>&1 & echo $!"))
        local pid = tonumber(pipe:read("*l"))
        pipe:close()
        assert.is_true(run_all({ consumer }, function()
            return helpers.read_file(ready) ~= nil and last and #last.list == 1
        end, 15000))
        local killed = helpers.core.hrtime()
        os.execute("kill -KILL " .. pid)
        assert.is_true(run_all({ consumer }, function() return #last.list == 0 end, 15000))
        local took = helpers.core.hrtime() - killed
        -- The server expires the session after its timeout (4 s here); it
        -- may round up to its tick, so allow a margin.
        assert.is_true(took < 4000 + 4000, "removal took " .. took .. " ms")
    end)

    it("re-registers after a forced session expiry, with the new session as owner", function()
        local provider, p_reg = runtime()
        local consumer, c_reg = runtime()
        local last, removed_at, back_at = nil, nil, nil
        c_reg.watch_instances("shop", function(diff, list)
            last = { diff = diff, list = list }
            if #list == 0 and #diff.removed > 0 then
                removed_at = helpers.core.hrtime()
            elseif removed_at and #list == 1 and not back_at then
                back_at = helpers.core.hrtime()
            end
        end)
        assert.is_nil(call({ provider, consumer }, p_reg.register, instance(20880)))
        assert.is_true(run_all({ provider, consumer }, function() return last and #last.list == 1 end))
        local old_owner = last.list[1].identity.owner

        -- Join the provider's session with a second handle and close it: the
        -- server expires the session.
        -- The second handle closes as soon as it is connected; if the
        -- provider's handle reconnects first it takes the session back, so
        -- try again then (at most 3 times).
        local zk = p_reg.session()
        local function kill_session()
            local id, passwd = assert(zk:debug_session())
            local closed = false
            assert(provider.loop:zk({
                hosts = zk_server.connect_string,
                session = { id = id, passwd = passwd },
                on_state = function(intruder, state)
                    if state == "connected" then
                        intruder:close()
                    elseif state == "closed" then
                        closed = true
                    end
                end,
            }))
            assert(run_all({ provider }, function() return closed end, 10000))
            return run_all({ provider, consumer }, function() return zk:generation() > 1 end, 8000)
        end
        for _ = 1, 3 do
            if kill_session() then
                break
            end
        end
        assert.is_true(zk:generation() > 1, "the session never expired")
        assert.is_true(run_all({ provider, consumer }, function()
            return last and #last.list == 1 and last.list[1].identity.owner ~= old_owner
        end, 20000))
        assert.equals(zk:session_id(), last.list[1].identity.owner)
        -- The consumer may see the gap between the old node's removal and
        -- the re-registration, but only that long: the new session's
        -- handle comes after a backoff of at most a few seconds.
        if removed_at then
            assert.is_true(back_at - removed_at < 6000,
                           "instance missing for " .. (back_at - removed_at) .. " ms")
        end
    end)

    it("keeps registrations and watchers across reloads of the plugin", function()
        local provider, p_reg = runtime()
        local consumer, c_reg = runtime()
        local calls, last = 0, nil
        c_reg.watch_instances("shop", function(diff, list)
            calls = calls + 1
            last = { diff = diff, list = list }
        end)
        assert.is_nil(call({ provider, consumer }, p_reg.register, instance(1)))
        assert.is_true(run_all({ provider, consumer }, function() return last and #last.list == 1 end))
        local owner, seen_calls = last.list[1].identity.owner, calls

        assert.is_true(provider:reload("registry/zookeeper"))
        assert.is_true(consumer:reload("registry/zookeeper"))
        local new_p = provider.plugins:get("registry/zookeeper")
        -- Same session: the registration was never dropped or re-made.
        assert.equals(owner, new_p.session():session_id())
        run_all({ provider, consumer }, function() return false end, 300)
        assert.equals(seen_calls, calls) -- the reloads produced no change to report

        assert.is_nil(call({ provider, consumer }, new_p.register, instance(2)))
        assert.is_true(run_all({ provider, consumer }, function() return #last.list == 2 end))
        assert.equals(1, #last.diff.added)
        assert.equals(2, last.diff.added[1].port)
        assert.equals(0, #last.diff.removed)
        assert.equals(owner, last.list[1].identity.owner)
        -- the reloaded provider still owns and can remove its first node
        assert.is_nil(call({ provider, consumer }, new_p.unregister, instance(1)))
        assert.is_true(run_all({ provider, consumer }, function() return #last.list == 1 end))
    end)

    it("keeps the last state through a 10 s server outage and converges after it", function()
        -- A server of this spec's own: it is stopped and started again.
        local own = helpers.zookeeper_server()
        finally(function() own:destroy() end)
        own:start()
        -- The sessions outlive the outage with room to spare, even on a
        -- loaded machine (the server restart and the client's reconnect
        -- backoff come on top of the 10 s).
        url = "zookeeper://" .. own.connect_string .. "?session_timeout=40000&root=" .. root
        zk_server = own
        local provider, p_reg = runtime()
        local consumer, c_reg = runtime()
        local last, emptied = nil, false
        c_reg.watch_instances("shop", function(diff, list)
            last = { diff = diff, list = list }
            if #list < 2 then
                emptied = emptied or #diff.removed > 0
            end
        end)
        assert.is_nil(call({ provider, consumer }, p_reg.register, instance(1)))
        assert.is_nil(call({ provider, consumer }, p_reg.register, instance(2)))
        assert.is_true(run_all({ provider, consumer }, function() return last and #last.list == 2 end))

        own:stop()
        run_all({ provider, consumer }, function() return false end, 10000)
        assert.equals(2, #last.list)
        assert.is_false(emptied)

        own:start()
        -- Same sessions (the outage was shorter than their timeout): the
        -- registrations are still there, and a change after it arrives.
        assert.is_true(run_all({ provider, consumer }, function()
            return p_reg.session():state() == "connected" and c_reg.session():state() == "connected"
        end, 30000))
        assert.equals(1, p_reg.session():generation())
        -- The caches re-check after the reconnect: nothing may be removed.
        run_all({ provider, consumer }, function() return false end, 500)
        assert.equals(2, #last.list)
        assert.is_false(emptied)
        assert.is_nil(call({ provider, consumer }, p_reg.unregister, instance(1)))
        assert.is_true(run_all({ provider, consumer }, function() return #last.list == 1 end, 10000))
        assert.equals(2, last.list[1].port)
    end)

    it("lists applications and instances with disco ls", function()
        local provider, p_reg = runtime()
        assert.is_nil(call({ provider }, p_reg.register, instance(20880)))
        local status, out, err = helpers.run_disco({ "ls", "--registry", url })
        assert.equals(0, status, err)
        assert.equals("shop\n", out)
        status, out, err = helpers.run_disco({ "ls", "--registry", url, "shop", "--json" })
        assert.equals(0, status, err)
        local list = require("cjson").decode(out)
        assert.equals(1, #list)
        assert.equals("127.0.0.1:20880", list[1].address)
        assert.equals("r1", list[1].revision)
        assert.equals("local", list[1].storage_type)
        status, out = helpers.run_disco({ "ls", "--registry", url, "shop" })
        assert.equals(0, status)
        assert.matches("127.0.0.1:20880%s+r1%s+%d%d%d%d%-%d%d%-%d%dT", out)
    end)
end)
