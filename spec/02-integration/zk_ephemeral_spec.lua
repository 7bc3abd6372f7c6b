-- zk:ephemeral() against a real ZooKeeper: creation with container parents,
-- ownership by ephemeral_owner (RELIABILITY.md §1, §3 row 1), updates,
-- owner-only close, forced expiry and the server's own cleanup.

local zkspec = require("spec.support.zk")

-- Paths unique to this run, so reruns against a shared server never meet.
local unique = zkspec.unique("eph-spec", "/node")

describe("zk:ephemeral #zookeeper #integration", function()
    local fx = zkspec.fixture()
    before_each(fx.setup)
    after_each(fx.teardown)
    local run_until, connect, call = fx.run_until, fx.connect, fx.call

    local function ename(err)
        return err and err:match("^(%u+):")
    end

    -- An ephemeral handle and the list of "state" or "state:ENAME" it saw.
    local function ephemeral(zk, path, data)
        local states = {}
        local node = assert(zk:ephemeral(path, data, {
            on_state = function(n, state, err)
                assert.is_not_nil(n)
                states[#states + 1] = err and (state .. ":" .. ename(err)) or state
            end,
        }))
        return node, states
    end

    local function last(list)
        return list[#list]
    end

    it("creates the node with container parents, updates and deletes it", function()
        local zk = connect()
        local path = unique("basic")
        local node, states = ephemeral(zk, path, "v1")
        assert.equal(path, node:path())
        assert.is_true(run_until(function() return #states > 0 end))
        assert.same({ "created" }, states)
        assert.is_true(node:owned())
        local err, r = call(zk, "get", path, nil)
        assert.is_nil(err)
        assert.equal("v1", r.data)
        assert.equal(zk:session_id(), r.stat.ephemeral_owner)

        local done, uerr = false, "unset"
        assert(node:update("v2", function(e) done, uerr = true, e end))
        assert.is_true(run_until(function() return done end))
        assert.is_nil(uerr)
        err, r = call(zk, "get", path, nil)
        assert.is_nil(err)
        assert.equal("v2", r.data)

        node:close()
        assert.is_true(node:is_closed())
        assert.is_true(run_until(function() return last(states) == "closed" end))
        assert.equal(path, node:path())
        assert.equal("ENONODE", ename((call(zk, "exists", path, nil))))
        assert.has_error(function() node:update("x") end)
        -- The parent was made a container node (ephemeral_owner 0, kept
        -- until the server's container reaper removes it).
        local parent = path:match("^(.*)/node$")
        err, r = call(zk, "exists", parent, nil)
        if err == nil then
            assert.is_false(r.stat.ephemeral)
        end
    end)

    it("takes over a node left by another session, with our data", function()
        local zk = connect()
        local other = connect()
        local path = unique("takeover")
        assert.is_nil(call(other, "create", path, "old",
            { mode = "ephemeral", parents = true }))
        local node, states = ephemeral(zk, path, "mine")
        assert.is_true(run_until(function() return #states > 0 end))
        assert.same({ "created" }, states)
        local err, r = call(zk, "get", path, nil)
        assert.is_nil(err)
        assert.equal("mine", r.data)
        assert.equal(zk:session_id(), r.stat.ephemeral_owner)
        assert.not_equal(other:session_id(), r.stat.ephemeral_owner)
        node:close()
        assert.is_true(run_until(function() return last(states) == "closed" end))
    end)

    it("keeps a node it finds it already owns", function()
        local zk = connect()
        local path = unique("ours")
        local err, r = call(zk, "create", path, "before",
            { mode = "ephemeral", parents = true })
        assert.is_nil(err)
        local czxid = r.stat.czxid
        local node, states = ephemeral(zk, path, "after")
        assert.is_true(run_until(function() return #states > 0 end))
        assert.same({ "created" }, states)
        assert.is_true(run_until(function()
            local _, res = call(zk, "get", path, nil)
            return res and res.data == "after"
        end, 5000))
        err, r = call(zk, "get", path, nil)
        assert.is_nil(err)
        assert.equal(czxid, r.stat.czxid) -- kept, not re-created
        node:close()
        assert.is_true(run_until(function() return last(states) == "closed" end))
        assert.equal("ENONODE", ename((call(zk, "exists", path, nil))))
    end)

    it("leaves a node that another session re-created in place on close", function()
        local zk = connect()
        local other = connect()
        local path = unique("foreign")
        local node, states = ephemeral(zk, path, "mine")
        assert.is_true(run_until(function() return #states > 0 end))
        assert.is_nil(call(other, "delete", path, -1))
        assert.is_nil(call(other, "create", path, "theirs", { mode = "ephemeral" }))
        node:close()
        assert.is_true(run_until(function() return last(states) == "closed" end))
        local err, r = call(other, "get", path, nil)
        assert.is_nil(err)
        assert.equal("theirs", r.data)
        assert.equal(other:session_id(), r.stat.ephemeral_owner)
    end)

    it("closes with its session, and the server removes the node", function()
        local observer = connect()
        local zk = connect({ session_timeout = 4000 })
        local path = unique("session-close")
        local node, states = ephemeral(zk, path, "x")
        assert.is_true(run_until(function() return #states > 0 end))
        zk:close()
        assert.is_true(run_until(function() return node:is_closed() end))
        assert.is_true(run_until(function() return last(states) == "closed" end))
        -- Within the session timeout (the close removes it at once).
        local gone = run_until(function()
            local n, e = 0, nil
            assert(observer:exists(path, nil, function(err) n, e = 1, err end))
            run_until(function() return n > 0 end, 2000)
            return ename(e) == "ENONODE"
        end, 4000)
        assert.is_true(gone)
    end)

    it("refuses bad arguments", function()
        local zk = connect()
        assert.has_error(function() zk:ephemeral(nil, "x") end)
        assert.has_error(function() zk:ephemeral("/a", "x", { on_state = 1 }) end)
        local node, err, name = zk:ephemeral("relative", "x")
        assert.is_nil(node)
        assert.equal("EINVAL", name)
        assert.matches("^EINVAL:", err)
    end)

    describe("with a server of its own", function()
        local server
        before_each(function() server = fx.start_server() end)
        after_each(fx.stop_server)

        -- Expires zk's session from a second handle on it (see
        -- zk_session_spec.lua); true once zk runs on a new generation.
        local function expire(zk)
            local gen = zk:generation()
            for _ = 1, 3 do
                fx.intrude(server.connect_string, assert(zk:debug_session()))
                if run_until(function()
                    return zk:state() == "connected" and zk:generation() > gen
                end, 8000) then
                    return true
                end
            end
            return false
        end

        it("re-creates the node on the new session after an expiry", function()
            local zk = connect({ hosts = server.connect_string,
                                 session_timeout = 4000,
                                 min_backoff = 50, max_backoff = 200 })
            local observer = connect({ hosts = server.connect_string })
            local path = unique("expiry")
            local node, states = ephemeral(zk, path, "payload")
            assert.is_true(run_until(function() return #states > 0 end))
            local old_sid = zk:session_id()
            assert.is_true(expire(zk), "the session did not expire")
            assert.not_equal(old_sid, zk:session_id())
            assert.is_true(run_until(function()
                return last(states) == "recreated"
            end), table.concat(states, " "))
            assert.equal("created", states[1])
            assert.equal("lost:ESESSIONEXPIRED", states[2])
            local err, r = call(observer, "get", path, nil)
            assert.is_nil(err)
            assert.equal("payload", r.data)
            assert.equal(zk:session_id(), r.stat.ephemeral_owner)
            -- Updates after the expiry reach the new node.
            local done = false
            assert(node:update("after", function(e)
                assert.is_nil(e)
                done = true
            end))
            assert.is_true(run_until(function() return done end))
            err, r = call(observer, "get", path, nil)
            assert.is_nil(err)
            assert.equal("after", r.data)
            node:close()
            assert.is_true(run_until(function() return last(states) == "closed" end))
            assert.equal("ENONODE", ename((call(observer, "exists", path, nil))))
        end)

        it("keeps the node across a server restart within the timeout", function()
            local zk = connect({ hosts = server.connect_string,
                                 session_timeout = 6000 })
            local path = unique("restart")
            local node, states = ephemeral(zk, path, "kept")
            assert.is_true(run_until(function() return #states > 0 end))
            local sid = zk:session_id()
            server:stop()
            assert.is_true(run_until(function()
                return zk:state() == "connecting"
            end, 5000))
            -- An update while disconnected is written after the reconnect.
            local done, uerr = false, nil
            assert(node:update("while-down", function(e) done, uerr = true, e end))
            run_until(function() return false end, 1000)
            server:start()
            assert.is_true(run_until(function()
                return zk:state() == "connected"
            end, 15000))
            assert.equal(sid, zk:session_id())
            assert.is_true(run_until(function() return done end))
            assert.is_nil(uerr)
            local err, r = call(zk, "get", path, nil)
            assert.is_nil(err)
            assert.equal("while-down", r.data)
            assert.equal(sid, r.stat.ephemeral_owner)
            assert.same({ "created" }, states)
            node:close()
        end)
    end)
end)
