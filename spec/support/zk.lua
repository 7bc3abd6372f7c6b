-- Scaffolding shared by the specs that drive disco.zk against a real
-- ZooKeeper: paths unique to a run, and a per-test loop with the sessions
-- it opened (closed in after_each), plus open/connect/call helpers.
local helpers = require "spec.helpers"
local core = require "disco.core"
-- busted's assert (with assert.is_true) lives in each spec's environment.
local assert = require "luassert"

local unpack = unpack or table.unpack -- luacheck: ignore 143

local _M = {}

--- A path factory: `unique(name)` gives "/<tag>-<pid>-<time>-<name>-<n>"
-- followed by `suffix` (if any), so reruns against a shared server never
-- meet.
function _M.unique(tag, suffix)
    local prefix = string.format("/%s-%d-%d", tag, core.getpid(), os.time())
    local counter = 0
    suffix = suffix or ""
    return function(name)
        counter = counter + 1
        return string.format("%s-%s-%d%s", prefix, name, counter, suffix)
    end
end

--- The fixture: `fx.setup` and `fx.teardown` (for before_each and
-- after_each; busted's hooks are not globals a module can reach) keep
-- `fx.loop` and `fx.sessions` fresh for each test; `fx.run_until`,
-- `fx.track`, `fx.open`, `fx.connect`, `fx.call`, `fx.intrude`,
-- `fx.close_all`, `fx.start_server` and `fx.stop_server`.
-- Options: `wait_ms` (how long connect and call wait, 10000 by default),
-- `states` (open and connect also return the list of "state:generation"
-- the session went through).
function _M.fixture(opts)
    opts = opts or {}
    local wait_ms = opts.wait_ms or 10000
    local fx = {}

    --- For before_each: a fresh loop and session list.
    function fx.setup()
        fx.loop = assert(core.new_loop())
        fx.sessions = {}
    end

    --- For after_each: closes every session, then the loop.
    function fx.teardown()
        for _, zk in ipairs(fx.sessions) do
            if not zk:is_closed() then
                zk:close()
            end
        end
        -- Runs every close to its end (zookeeper_close off the loop).
        assert(fx.loop:close())
    end

    function fx.run_until(pred, ms)
        return helpers.run_until(fx.loop, pred, ms or 10000)
    end

    --- Keeps `zk` for closing in after_each; returns it.
    function fx.track(zk)
        fx.sessions[#fx.sessions + 1] = zk
        return zk
    end

    --- A session (and, with the `states` option, its list of states).
    function fx.open(o)
        local states
        if opts.states then
            states = {}
            o.on_state = function(_, state, generation)
                states[#states + 1] = state .. ":" .. generation
            end
        end
        o.session_timeout = o.session_timeout or 10000
        local zk = fx.track(assert(fx.loop:zk(o)))
        return zk, states
    end

    --- A session on the shared server (or `o.hosts`), once connected.
    function fx.connect(o)
        o = o or {}
        o.hosts = o.hosts or helpers.zookeeper().connect_string
        local zk, states = fx.open(o)
        assert.is_true(fx.run_until(function()
            return zk:state() == "connected"
        end, wait_ms), "session did not connect")
        return zk, states
    end

    --- Calls zk:method(...) with a callback and waits for it: err, result.
    function fx.call(zk, method, ...)
        local n, e, r = 0, nil, nil
        local nargs = select("#", ...)
        local args = { ... }
        args[nargs + 1] = function(err, res)
            n = n + 1
            e, r = err, res
        end
        assert(zk[method](zk, unpack(args, 1, nargs + 1)))
        assert.is_true(fx.run_until(function() return n > 0 end, wait_ms),
            method .. " did not complete")
        return e, r
    end

    --- Opens a second handle on session `id`/`passwd` at `hosts` and closes
    -- it as soon as it connects (which expires the session for its first
    -- handle), and waits for that close; `on_connected(z)`, if given, runs
    -- on the second handle first.
    function fx.intrude(hosts, id, passwd, on_connected)
        local closed = false
        fx.track(assert(fx.loop:zk({
            hosts = hosts,
            session = { id = id, passwd = passwd },
            on_state = function(z, state)
                if state == "connected" then
                    if on_connected then
                        on_connected(z)
                    end
                    z:close()
                elseif state == "closed" then
                    closed = true
                end
            end,
        })))
        assert.is_true(fx.run_until(function() return closed end))
    end

    --- For before_each in a block whose tests need a server of their own:
    -- starts one and returns it.
    function fx.start_server()
        fx.server = helpers.zookeeper_server()
        fx.server:start()
        return fx.server
    end

    --- For after_each in that block: the sessions close before the server
    -- goes (the outer teardown runs later), so they are closed here while
    -- it still answers; then the server is destroyed.
    function fx.stop_server()
        fx.close_all(15000)
        fx.server:destroy()
        fx.server = nil
    end

    --- Closes every session and waits (up to `ms`) until all are closed,
    -- for tests that must finish them while their server still answers.
    function fx.close_all(ms)
        for _, zk in ipairs(fx.sessions) do
            if not zk:is_closed() then
                zk:close()
            end
        end
        fx.run_until(function()
            for _, zk in ipairs(fx.sessions) do
                if zk:state() ~= "closed" then
                    return false
                end
            end
            return true
        end, ms)
    end

    return fx
end

return _M
