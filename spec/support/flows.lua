-- Scaffolding of the specs that run providers and consumers on the shared
-- ZooKeeper: a fresh registry root per test, the runtimes it opened (closed
-- in after_each), starting a provider and waiting for its answer, and a
-- `disco provide` process waited for until it registered.
local disco = require "disco"
local helpers = require "spec.helpers"
local process = require "disco.testing.process"
local regspec = require "spec.support.registry"
-- busted's assert (with assert.is_true) lives in each spec's environment.
local assert = require "luassert"

local _M = {}

local seq = 0

--- `fx.setup` and `fx.teardown` (for before_each and after_each) keep
-- `fx.url` (a zookeeper:// URL with a root of its own), `fx.root` and the
-- runtimes fresh; `fx.runtime()`, `fx.start(p, rts)`.
function _M.fixture(tag)
    local fx = { rts = {} }

    function fx.setup()
        local zk_server = helpers.zookeeper()
        seq = seq + 1
        fx.root = string.format("/%s%d_%d_%d", tag, helpers.core.getpid(), os.time(), seq)
        -- Tests sharing the server never see each other's instances.
        fx.url = "zookeeper://" .. zk_server.connect_string .. "?session_timeout=6000&root=" .. fx.root
        fx.rts = {}
    end

    function fx.teardown()
        for i = #fx.rts, 1, -1 do
            fx.rts[i]:close()
        end
    end

    --- A runtime closed after the test.
    function fx.runtime()
        local rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        fx.rts[#fx.rts + 1] = rt
        return rt
    end

    --- Starts provider `p`, driving `rts` until it answered; returns its error.
    function fx.start(p, rts)
        local done, err = false, nil
        p:start(function(e) done, err = true, e end)
        assert.is_true(regspec.run_all(rts, function() return done end, 20000), "start did not answer")
        return err
    end

    return fx
end

--- Runs `disco provide ARGS...` under the process watchdog and waits (20 s
-- at most) for its "registered ..." line; returns the process and that line.
function _M.spawn_provider(args)
    local log = helpers.tmpdir() .. "/provide.log"
    local argv = { helpers.disco_bin, "provide" }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    local proc = process.spawn({ argv = argv, log = log })
    local deadline = helpers.core.hrtime() + 20000
    local line
    while helpers.core.hrtime() < deadline do
        line = (helpers.read_file(log) or ""):match("registered[^\n]*")
        if line then
            break
        end
        helpers.core.sleep(50)
    end
    return proc, line or ("(not registered) " .. (helpers.read_file(log) or ""))
end

return _M
