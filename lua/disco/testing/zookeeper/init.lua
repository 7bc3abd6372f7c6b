--- Real ZooKeeper servers for integration tests.
--
-- Like Curator's TestingServer or kazoo.testing: a standalone server or a
-- loopback ensemble, each member in its own temporary directory, started
-- from Debian's zookeeper package with a small JVM footprint.
--
-- A server only counts as started when *its own* process serves: its pid is
-- alive, its log says it bound the client port, `conf` on that port reports
-- its own data directory and `srvr` reports a mode. The port alone proves
-- nothing: when the port is taken, the new JVM dies with a BindException
-- while `ruok` keeps answering `imok` from the other process.
--
-- Every process is started through @{disco.testing.process}, so a watchdog
-- kills it if the test runner dies, and its process group is listed in
-- `$DISCO_TEST_PIDFILE` when that is set. Nothing here signals a process it
-- did not start: identities are (pid, start time) pairs.
--
--     local zookeeper = require("disco.testing.zookeeper")
--     local zk = zookeeper.server():start()
--     -- ... connect to zk.connect_string ...
--     zk:destroy()
--
-- This module is the fixture's public API; the work is done in
-- @{disco.testing.zookeeper.server} (one server),
-- @{disco.testing.zookeeper.ensemble} (a loopback ensemble),
-- @{disco.testing.zookeeper.commands} (four-letter words, zkCli, a
-- session probe),
-- @{disco.testing.zookeeper.jvm} (jars and JVM options) and
-- @{disco.testing.ports} (free loopback ports).
--
-- @module disco.testing.zookeeper

local ports = require("disco.testing.ports")
local commands = require("disco.testing.zookeeper.commands")
local ensemble = require("disco.testing.zookeeper.ensemble")
local jvm = require("disco.testing.zookeeper.jvm")
local server = require("disco.testing.zookeeper.server")

local _M = {}

-- The same tables and functions as in the modules that define and document
-- them, so that callers need only this module.
_M.DEFAULT_CLASSPATH = jvm.DEFAULT_CLASSPATH
_M.DEFAULT_JAVA_OPTS = jvm.DEFAULT_JAVA_OPTS
_M.FOUR_LETTER_WORDS = server.FOUR_LETTER_WORDS
_M.pick_port = ports.pick_port
_M.four_letter = commands.four_letter
_M.cli = commands.cli
_M.open_session = commands.open_session
_M.server = server.server
_M.ensemble = ensemble.ensemble

-- Servers and ensembles not destroyed yet.
local live = server.live

--- Destroy every server and ensemble this process created and has not
-- destroyed yet; for a suite's teardown.
function _M.destroy_all()
    local all = {}
    for obj in pairs(live) do
        all[#all + 1] = obj
    end
    -- Ensembles first: they own their members.
    table.sort(all, function(a, b)
        return (a.members and 0 or 1) < (b.members and 0 or 1)
    end)
    for _, obj in ipairs(all) do
        obj:destroy()
    end
end

return _M
