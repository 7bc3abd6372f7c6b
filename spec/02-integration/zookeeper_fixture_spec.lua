-- The real-ZooKeeper fixture must be trustworthy before any other
-- integration spec relies on it: it must start *its own* server, clean up
-- every process it started, and report port conflicts instead of silently
-- talking to somebody else's server.

local zookeeper = require("disco.testing.zookeeper")
local process = require("disco.testing.process")

local function exists(path)
    -- os.rename of a path onto itself succeeds exactly when it exists.
    return os.rename(path, path) ~= nil
end

local function list_dir(path)
    local names = {}
    local p = io.popen("ls -A " .. process.quote(path) .. " 2>/dev/null")
    for name in p:lines() do
        names[#names + 1] = name
    end
    p:close()
    return names
end

local function read_file(path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    return data
end

describe("disco.testing.zookeeper #zookeeper #integration", function()
    local created

    before_each(function()
        created = {}
    end)

    -- Runs even when an assertion failed, so a failing test leaves no JVM
    -- and no temp dir behind.
    after_each(function()
        for i = #created, 1, -1 do
            created[i]:destroy()
        end
    end)

    local function server(opts)
        local s = zookeeper.server(opts)
        created[#created + 1] = s
        return s
    end

    local function ensemble(n, opts)
        local e = zookeeper.ensemble(n, opts)
        created[#created + 1] = e
        return e
    end

    -- No process at all may still mention the server's directory: not the
    -- JVM, not its watchdog shell.
    local function assert_nothing_left(s, old_pid)
        assert.is_false(process.alive(old_pid))
        assert.is_false(s:running())
        assert.same({}, process.find(s.dir))
    end

    it("starts a standalone server that serves from its own data dir", function()
        local s = server():start()
        assert.is_number(s.pid)
        assert.is_true(process.alive(s.pid))
        assert.equal("127.0.0.1:" .. s.port, s.connect_string)
        assert.is_true(s.port >= 20000 and s.port <= 59999)

        local conf = assert(s:four_letter("conf"))
        assert.truthy(conf:find("dataDir=" .. s.data_dir .. "/version-2", 1, true))
        assert.equal("standalone", s:mode())
        assert.equal("imok", s:four_letter("ruok"))
        assert.truthy(read_file(s.log_path):find(
            "binding to port /127.0.0.1:" .. s.port, 1, true))
    end)

    it("stop() leaves no process behind and is idempotent", function()
        local s = server():start()
        local pid = s.pid
        s:stop()
        assert_nothing_left(s, pid)
        local answer, err = s:four_letter("ruok", 500)
        assert.is_nil(answer)
        assert.equal("connection refused", err)
        s:stop()
        assert.is_nil(s.pid)
    end)

    it("start() after stop() reuses the data dir and its data", function()
        local s = server():start()
        assert.truthy(s:cli({ "create", "/disco-fixture-marker", "kept" })
            :find("Created /disco-fixture-marker", 1, true))
        local version_dir = s.data_dir .. "/version-2"
        local before = list_dir(version_dir)
        assert.truthy(#before > 0)

        s:stop()
        local port = s.port
        s:start()
        assert.equal(port, s.port)
        assert.is_true(process.alive(s.pid))
        local conf = assert(s:four_letter("conf"))
        assert.truthy(conf:find("dataDir=" .. version_dir, 1, true))
        for _, name in ipairs(before) do
            assert.is_true(exists(version_dir .. "/" .. name), name .. " survives a restart")
        end
        local got = s:cli({ "get", "/disco-fixture-marker" })
        assert.truthy(got:find("kept", 1, true))
    end)

    it("pause() makes srvr time out and resume() restores it", function()
        local s = server():start()
        s:pause()
        assert.is_true(s:running())
        local answer, err = s:four_letter("srvr", 500)
        assert.is_nil(answer)
        assert.equal("timeout", err)
        s:resume()
        assert.equal("standalone", s:mode())
    end)

    it("refuses a port held by another ZooKeeper even though it answers", function()
        local a = server():start()
        local b = server({ port = a.port })
        local ok, err = pcall(b.start, b)
        assert.is_false(ok)
        assert.matches("BindException", err)
        assert.matches("another process holds it", err)
        assert.matches(b.log_path, err, 1, true)
        -- The port answered all along, from A.
        assert.equal("imok", a:four_letter("ruok"))
        assert.is_true(a:running())
        assert.same({}, process.find(b.dir))
    end)

    it("moves an auto-chosen port that turns out to be taken", function()
        local a = server():start()
        local b = server()
        -- Force the collision the random choice normally avoids; the port
        -- still counts as auto-chosen, so start() may pick another one.
        b:_set_port(a.port)
        b:start()
        assert.are_not.equal(a.port, b.port)
        assert.equal("standalone", b:mode())
        local conf = assert(b:four_letter("conf"))
        assert.truthy(conf:find("dataDir=" .. b.data_dir .. "/version-2", 1, true))
        assert.is_true(a:running())
    end)

    it("kill() then start() brings the server back", function()
        local s = server():start()
        local pid = s.pid
        s:kill()
        assert_nothing_left(s, pid)
        s:start()
        assert.are_not.equal(pid, s.pid)
        assert.equal("standalone", s:mode())
    end)

    it("destroy() stops the server and removes its temp dir", function()
        local s = server():start()
        local pid = s.pid
        assert.is_true(exists(s.dir))
        s:destroy()
        assert_nothing_left(s, pid)
        assert.is_false(exists(s.dir))
        s:destroy()
        assert.has_error(function()
            s:start()
        end)
    end)

    it("runs a 3-server ensemble that re-elects when the leader stops", function()
        local e = ensemble(3):start()
        assert.equal(3, #e.members)
        local parts = {}
        for _, m in ipairs(e.members) do
            parts[#parts + 1] = "127.0.0.1:" .. m.port
        end
        assert.equal(table.concat(parts, ","), e.connect_string)

        local modes = {}
        for _, m in ipairs(e.members) do
            local mode = m:mode()
            modes[mode] = (modes[mode] or 0) + 1
            local conf = assert(m:four_letter("conf"))
            assert.truthy(conf:find("dataDir=" .. m.data_dir .. "/version-2", 1, true))
        end
        assert.same({ leader = 1, follower = 2 }, modes)

        local old = assert(e:leader())
        local old_pid = old.pid
        old:stop()
        assert_nothing_left(old, old_pid)

        local new = e:wait_for_leader(20000)
        assert.are_not.equal(old, new)
        local followers = 0
        for _, m in ipairs(e.members) do
            if m ~= old and m ~= new then
                assert.equal("follower", m:mode())
                followers = followers + 1
            end
        end
        assert.equal(1, followers)
    end)

    it("await_serving() waits for every member to grant a session, not just for a leader", function()
        local e = ensemble(3):start()
        local leader = assert(e:await_serving(20000))
        assert.equal("leader", leader:mode())
        local ids = {}
        for _, m in ipairs(e.members) do
            local id = assert(zookeeper.open_session(m.port))
            assert.matches("^%x+$", id)
            assert.equal(16, #id)
            assert.is_nil(ids[id], "the same session twice")
            ids[id] = true
        end
        -- Without its followers the leader commits nothing, so no member
        -- grants a session (the leader holds the request or gives up
        -- leading and drops the connection).
        local followers = {}
        for _, m in ipairs(e.members) do
            if m ~= leader then
                followers[#followers + 1] = m
                m:pause()
            end
        end
        local id, err = zookeeper.open_session(leader.port, 1500)
        local t0 = process.now_ms()
        local none, why = e:await_serving(1500)
        local waited = process.now_ms() - t0
        for _, m in ipairs(followers) do
            m:resume()
        end
        assert.is_nil(id)
        assert.truthy(err == "timeout" or err == "no session", err)
        assert.is_nil(none)
        assert.is_string(why)
        assert.is_true(waited < 10000, "await_serving overran its bound: " .. waited .. " ms")
        assert.truthy(e:await_serving(30000))
        assert.truthy(zookeeper.open_session(leader.port))
    end)

    it("open_session() names why it got no session", function()
        local s = server():start()
        assert.truthy(zookeeper.open_session(s.port))
        s:pause()
        assert.same({ nil, "timeout" }, { zookeeper.open_session(s.port, 500) })
        s:resume()
        local port = s.port
        s:stop()
        assert.same({ nil, "connection refused" }, { zookeeper.open_session(port, 500) })
        assert.has_error(function() zookeeper.open_session(0) end)
    end)
end)
