-- disco.zk against a real ZooKeeper: sessions, requests, watches, ACLs,
-- expiry recovery, connection loss, and closing without stalling the loop.
-- The shared server (helpers.zookeeper()) serves the tests that do not
-- disturb it; the others start their own and destroy it in a finally.

local helpers = require("spec.helpers")
local core = require("disco.core")
local zkspec = require("spec.support.zk")

-- Paths unique to this run, so reruns against a shared server never meet.
local unique = zkspec.unique("zk-spec")

describe("disco.zk #zookeeper #integration", function()
    local fx = zkspec.fixture({ states = true })
    before_each(fx.setup)
    after_each(fx.teardown)
    local run_until, open, connect, call = fx.run_until, fx.open, fx.connect, fx.call

    local function ename(err)
        return err and err:match("^(%u+):")
    end

    local function contains(list, value)
        for _, v in ipairs(list) do
            if v == value then
                return true
            end
        end
        return false
    end

    it("connects with generation 1 and a session id", function()
        local zk, states = connect()
        assert.same({ "connected:1" }, states)
        assert.equal(1, zk:generation())
        assert.matches("^%x+$", zk:session_id())
        assert.equal(16, #zk:session_id())
    end)

    it("creates, reads, sets and deletes with versions and stats", function()
        local zk = connect()
        local path = unique("rt")
        local err, r = call(zk, "create", path, "v1", nil)
        assert.is_nil(err)
        assert.equal(path, r.path)
        assert.equal(0, r.stat.version)

        err, r = call(zk, "get", path, nil)
        assert.is_nil(err)
        assert.equal("v1", r.data)
        assert.equal(0, r.stat.version)
        assert.equal(2, r.stat.data_length)
        assert.equal(0, r.stat.num_children)
        assert.is_false(r.stat.ephemeral)
        assert.is_true(r.stat.czxid > 0)
        assert.equal(r.stat.czxid, r.stat.mzxid)
        assert.is_true(r.stat.ctime > 1.6e12)

        err, r = call(zk, "set", path, "v2", 0)
        assert.is_nil(err)
        assert.equal(1, r.stat.version)
        assert.is_true(r.stat.mzxid > r.stat.czxid)

        err = call(zk, "set", path, "v3", 0)
        assert.equal("EBADVERSION", ename(err))
        err = call(zk, "delete", path, 0)
        assert.equal("EBADVERSION", ename(err))
        err = call(zk, "create", path, "again", nil)
        assert.equal("ENODEEXISTS", ename(err))

        err, r = call(zk, "exists", path, nil)
        assert.is_nil(err)
        assert.equal(1, r.stat.version)

        err = call(zk, "delete", path, 1)
        assert.is_nil(err)
        err = call(zk, "get", path, nil)
        assert.equal("ENONODE", ename(err))
        err = call(zk, "exists", path, nil)
        assert.equal("ENONODE", ename(err))
        err = call(zk, "delete", path, -1)
        assert.equal("ENONODE", ename(err))
        err = call(zk, "create", path .. "/no/parent", "x", nil)
        assert.equal("ENONODE", ename(err))
    end)

    it("creates missing parents, persistent or container", function()
        local zk = connect()
        local base = unique("parents")
        local err, r = call(zk, "create", base .. "/a/b/leaf", "x",
            { parents = true, mode = "ephemeral" })
        assert.is_nil(err)
        assert.equal(base .. "/a/b/leaf", r.path)
        err, r = call(zk, "get", base .. "/a/b", nil)
        assert.is_nil(err)
        assert.is_false(r.stat.ephemeral)
        assert.equal(1, r.stat.num_children)
        err, r = call(zk, "get", base .. "/a/b/leaf", nil)
        assert.is_nil(err)
        assert.equal(zk:session_id(), r.stat.ephemeral_owner)

        -- Some parents exist already: only the missing ones are created.
        err = call(zk, "create", base .. "/a/c/d", "y", { parents = "container" })
        assert.is_nil(err)
        err, r = call(zk, "children", base .. "/a", nil)
        assert.is_nil(err)
        table.sort(r.children)
        assert.same({ "b", "c" }, r.children)
    end)

    it("returns the created path of sequential nodes", function()
        local zk = connect()
        local base = unique("seq")
        local err, r = call(zk, "create", base .. "/n-", "", {
            mode = "sequential", parents = true })
        assert.is_nil(err)
        assert.matches("^" .. base:gsub("%-", "%%-") .. "/n%-%d%d%d%d%d%d%d%d%d%d$",
            r.path)
        local first = r.path
        err, r = call(zk, "create", base .. "/n-", "", { mode = "ephemeral_sequential" })
        assert.is_nil(err)
        assert.is_true(r.path > first)
    end)

    it("fires a child watch once, and a data watch on set", function()
        local zk = connect()
        local base = unique("watch")
        assert.is_nil(call(zk, "create", base, "", nil))

        local child_events = {}
        local err, r = call(zk, "children", base, {
            watch = function(ev) child_events[#child_events + 1] = ev end })
        assert.is_nil(err)
        assert.same({}, r.children)
        assert.equal(0, r.stat.num_children)

        assert.is_nil(call(zk, "create", base .. "/c1", "", nil))
        assert.is_true(run_until(function() return #child_events > 0 end))
        assert.equal("child", child_events[1].type)
        assert.equal(base, child_events[1].path)
        assert.equal(1, child_events[1].generation)
        -- One-shot: another change does not fire it again.
        assert.is_nil(call(zk, "create", base .. "/c2", "", nil))
        run_until(function() return false end, 200)
        assert.equal(1, #child_events)

        local data_events = {}
        err = call(zk, "get", base .. "/c1", {
            watch = function(ev) data_events[#data_events + 1] = ev end })
        assert.is_nil(err)
        assert.is_nil(call(zk, "set", base .. "/c1", "new", -1))
        assert.is_true(run_until(function() return #data_events > 0 end))
        assert.same({ type = "changed", path = base .. "/c1", generation = 1 },
            data_events[1])

        -- An exists watch on a missing node fires when it is created.
        local exist_events = {}
        err = call(zk, "exists", base .. "/later", {
            watch = function(ev) exist_events[#exist_events + 1] = ev end })
        assert.equal("ENONODE", ename(err))
        assert.is_nil(call(zk, "create", base .. "/later", "", nil))
        assert.is_true(run_until(function() return #exist_events > 0 end))
        assert.equal("created", exist_events[1].type)
    end)

    it("works under a chroot", function()
        local root = connect()
        local chroot = unique("chroot")
        assert.is_nil(call(root, "create", chroot, "", nil))
        local zk = connect({ hosts = helpers.zookeeper().connect_string .. chroot })
        local err, r = call(zk, "create", "/inside", "y", nil)
        assert.is_nil(err)
        assert.equal("/inside", r.path)
        err, r = call(root, "get", chroot .. "/inside", nil)
        assert.is_nil(err)
        assert.equal("y", r.data)
        err, r = call(zk, "children", "/", nil)
        assert.is_nil(err)
        assert.same({ "inside" }, r.children)
    end)

    it("enforces digest auth with the creator_all ACL", function()
        -- Requests made before the session connected wait for its auth.
        local owner = open({ hosts = helpers.zookeeper().connect_string,
                             auth = "alice:secret", acl = "creator_all" })
        local base = unique("acl")
        assert.is_nil(call(owner, "create", base .. "/node", "private",
            { parents = true }))
        local other = connect()
        local err = call(other, "delete", base .. "/node", -1)
        assert.equal("ENOAUTH", ename(err))
        err = call(other, "get", base .. "/node", nil)
        assert.equal("ENOAUTH", ename(err))
        -- A wrong password is just another identity.
        local wrong = connect({ auth = "alice:wrong" })
        err = call(wrong, "get", base .. "/node", nil)
        assert.equal("ENOAUTH", ename(err))
        local r
        err, r = call(owner, "get", base .. "/node", nil)
        assert.is_nil(err)
        assert.equal("private", r.data)
        assert.is_nil(call(owner, "delete", base .. "/node", -1))
        assert.is_nil(call(owner, "delete", base, -1))
    end)

    it("completes every request in flight exactly once on close", function()
        -- Several rounds, closing at different points of the traffic, since
        -- what is in the queue, in ZooKeeper or done varies with timing.
        for round = 1, 6 do
            local zk = connect()
            local base = unique("inflight")
            local counts, total, watches = {}, 0, 0
            for i = 1, 40 do
                local cb = function()
                    counts[i] = (counts[i] or 0) + 1
                    total = total + 1
                end
                if i % 2 == 0 then
                    assert(zk:create(base .. "/n" .. i, "x", { parents = true }, cb))
                else
                    assert(zk:get("/", { watch = function() watches = watches + 1 end }, cb))
                end
            end
            if round > 1 then
                run_until(function() return total >= (round - 1) * 6 end, 2000)
            end
            zk:close()
            assert.has_error(function() zk:get("/", nil, function() end) end)
            assert.is_true(run_until(function() return total >= 40 end))
            run_until(function() return false end, 50)
            assert.equal(40, total)
            for i = 1, 40 do
                assert.equal(1, counts[i])
            end
            assert.equal(0, watches)
        end
    end)

    it("closes a session nobody refers to when it is collected", function()
        local observer = connect()
        local path = unique("gc")
        local weak = setmetatable({}, { __mode = "v" })
        -- Made in a coroutine that then dies, so that no stack slot of a
        -- live frame can still hold the box.
        local co = coroutine.create(function()
            local zk = assert(fx.loop:zk({ hosts = helpers.zookeeper().connect_string }))
            weak[1] = zk
            assert.is_true(run_until(function() return zk:state() == "connected" end))
            assert.is_nil(call(zk, "create", path, "", { mode = "ephemeral" }))
        end)
        assert(coroutine.resume(co))
        assert.equal("dead", coroutine.status(co))
        co = nil -- luacheck: ignore 311
        assert.is_nil(call(observer, "exists", path, nil))
        -- LuaJIT traces keep the constants they specialised on (such as the
        -- upvalue of a hot predicate closure) alive: drop them first.
        local jit = rawget(_G, "jit")
        if jit then
            jit.flush()
        end
        for _ = 1, 4 do
            collectgarbage()
            fx.loop:step()
        end
        assert.is_nil(weak[1], "the session's box was not collected")
        -- Closing the session removes its ephemeral node on the server at
        -- once (its 30 s timeout is far off).
        local gone = false
        for _ = 1, 50 do
            if ename(call(observer, "exists", path, nil)) == "ENONODE" then
                gone = true
                break
            end
            run_until(function() return false end, 100)
        end
        assert.is_true(gone)
    end)

    it("keeps the loop ticking while a connected session closes", function()
        local other = connect()
        local closed_at
        local zk = assert(fx.loop:zk({
            hosts = helpers.zookeeper().connect_string,
            on_state = function(_, state)
                if state == "closed" then closed_at = core.hrtime() end
            end,
        }))
        fx.track(zk)
        assert.is_true(run_until(function() return zk:state() == "connected" end))
        local ticks = 0
        local timer = assert(fx.loop:timer("ticks"))
        assert(timer:start(1, 1, function() ticks = ticks + 1 end))
        local t0 = core.hrtime()
        zk:close()
        assert.is_true(run_until(function() return closed_at ~= nil end))
        local ms = closed_at - t0
        print(string.format("zk close (connected, server up): %.1f ms, %d ticks",
            ms, ticks))
        timer:close()
        -- A loop blocked by zookeeper_close would show no ticks at all.
        if ms >= 20 then
            assert.is_true(ticks >= ms / 4)
        end
        -- Other sessions are not disturbed.
        assert.equal("connected", other:state())
        assert.is_nil(call(other, "exists", "/", nil))
    end)

    describe("with a server of its own", function()
        local server
        before_each(function() server = fx.start_server() end)
        after_each(fx.stop_server)

        it("recovers from a forced expiry with a new generation", function()
            local zk, states = connect({ hosts = server.connect_string,
                                         session_timeout = 4000,
                                         min_backoff = 50, max_backoff = 200 })
            local eph = unique("eph")
            assert.is_nil(call(zk, "create", eph, "", { mode = "ephemeral" }))
            local watch_events = {}
            assert.is_nil(call(zk, "get", eph, {
                watch = function(ev) watch_events[#watch_events + 1] = ev end }))
            local old_sid = zk:session_id()

            -- A second handle on the same session, closed as soon as it is
            -- connected: the server ends the session, and the first handle
            -- learns it on reconnect. If the first handle reconnects before
            -- the close, it takes the session back; try again then.
            local function kill_session()
                local id, passwd = assert(zk:debug_session())
                assert.equal(old_sid, id)
                fx.intrude(server.connect_string, id, passwd, function(z)
                    assert.equal(old_sid, z:session_id())
                end)
                return run_until(function()
                    return zk:state() == "connected" and zk:generation() == 2
                end, 8000)
            end
            local recovered = false
            for _ = 1, 3 do
                recovered = kill_session()
                if recovered or zk:generation() > 1 then
                    break
                end
            end
            if not recovered then
                recovered = run_until(function()
                    return zk:state() == "connected" and zk:generation() == 2
                end, 10000)
            end
            assert.is_true(recovered, "no recovery: " .. table.concat(states, " "))
            assert.is_true(contains(states, "expired:1"))
            assert.is_true(contains(states, "connecting:2"))
            assert.equal("connected:2", states[#states])
            -- expired comes before the new handle's states
            local pos = {}
            for i, s in ipairs(states) do pos[s] = pos[s] or i end
            assert.is_true(pos["expired:1"] < pos["connecting:2"])
            assert.is_true(pos["connecting:2"] < pos["connected:2"])
            assert.not_equal(old_sid, zk:session_id())
            -- The old session's ephemeral is gone with it.
            local err = call(zk, "exists", eph, nil)
            assert.equal("ENONODE", ename(err))
            -- The session events ZooKeeper sent to every watcher (connection
            -- loss, expiry) never reach a request's watch. The deletion of
            -- the node does, when this handle was still connected to hear
            -- it (the server may close the session before it drops the
            -- old connection).
            assert.is_true(#watch_events <= 1)
            if #watch_events == 1 then
                assert.same({ type = "deleted", path = eph, generation = 1 },
                    watch_events[1])
            end
        end)

        it("survives a server restart within the timeout as the same session", function()
            local zk, states = connect({ hosts = server.connect_string,
                                         session_timeout = 4000 })
            local eph = unique("keep")
            assert.is_nil(call(zk, "create", eph, "", { mode = "ephemeral" }))
            local sid = zk:session_id()
            local watch_events = {}
            assert.is_nil(call(zk, "get", eph, {
                watch = function(ev) watch_events[#watch_events + 1] = ev end }))
            server:stop()
            assert.is_true(run_until(function()
                return zk:state() == "connecting"
            end, 5000))
            run_until(function() return false end, 1000)
            server:start()
            assert.is_true(run_until(function()
                return zk:state() == "connected"
            end, 15000), "no reconnect: " .. table.concat(states, " "))
            assert.equal(1, zk:generation())
            assert.equal(sid, zk:session_id())
            assert.is_false(contains(states, "expired:1"))
            assert.same({ "connected:1", "connecting:1", "connected:1" }, states)
            local err, r = call(zk, "exists", eph, nil)
            assert.is_nil(err)
            assert.equal(sid, r.stat.ephemeral_owner)
            -- The watch survived the reconnect (the library re-sent it) and
            -- saw none of the session events.
            assert.same({}, watch_events)
            assert.is_nil(call(zk, "set", eph, "changed", -1))
            assert.is_true(run_until(function() return #watch_events > 0 end))
            assert.same({ { type = "changed", path = eph, generation = 1 } },
                watch_events)
        end)

        it("keeps the loop ticking while a close blocks on a paused server", function()
            -- zookeeper_close on a connected handle usually waits for the
            -- frozen server (about a quarter of the session timeout); now and
            -- then it returns at once (the close request fits in the socket
            -- buffer and the library does not wait). Only a close that did
            -- block says anything about the loop, so try a few sessions.
            local function attempt()
                local closed_at
                local zk = assert(fx.loop:zk({
                    hosts = server.connect_string,
                    session_timeout = 6000,
                    on_state = function(_, state)
                        if state == "closed" then closed_at = core.hrtime() end
                    end,
                }))
                fx.track(zk)
                assert.is_true(run_until(function() return zk:state() == "connected" end))
                local pending = 0
                assert(zk:get("/", nil, function() pending = pending + 1 end))
                assert.is_true(run_until(function() return pending == 1 end))
                local ticks = 0
                local timer = assert(fx.loop:timer("ticks"))
                assert(timer:start(1, 1, function() ticks = ticks + 1 end))
                server:pause()
                local ok, ms = pcall(function()
                    local t0 = core.hrtime()
                    zk:close()
                    assert.is_true(run_until(function() return closed_at ~= nil end, 15000))
                    return closed_at - t0
                end)
                server:resume()
                timer:close()
                assert(ok, ms)
                print(string.format(
                    "zk close (connected, server paused): %.1f ms, %d ticks", ms, ticks))
                return ms, ticks
            end
            local tried = {}
            for _ = 1, 4 do
                local ms, ticks = attempt()
                if ms > 500 then
                    -- The loop must have run its 1 ms timer all along.
                    assert.is_true(ticks >= ms / 4,
                        string.format("%d ticks in a %.0f ms close", ticks, ms))
                    return
                end
                tried[#tried + 1] = string.format("%.1f ms", ms)
            end
            error("no close blocked on the paused server: " .. table.concat(tried, ", "))
        end)
    end)
end)
