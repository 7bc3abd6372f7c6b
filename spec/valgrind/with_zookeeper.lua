-- spec/valgrind/with_zookeeper.lua: runs one command against a ZooKeeper of
-- its own, for `make valgrind`: the command under valgrind must not start
-- the server itself (a JVM under valgrind would take minutes).
--
--   build/disco run spec/valgrind/with_zookeeper.lua SECONDS CMD [ARGS...]
--
-- Starts Debian's ZooKeeper on a free loopback port (disco.testing.zookeeper),
-- runs CMD ARGS... HOST:PORT (the connect string appended), killed after
-- SECONDS, destroys the server and exits with the command's status (124 or
-- 137 when the time ran out).
local rt = ...
local process = require "disco.testing.process"
local zookeeper = require "disco.testing.zookeeper"

local seconds = tonumber(arg[1])
if not seconds or seconds <= 0 or not arg[2] then
    io.stderr:write("usage: disco run spec/valgrind/with_zookeeper.lua SECONDS CMD [ARGS...]\n")
    return rt:stop(2)
end

local zk = zookeeper.server()
local ok, err = pcall(zk.start, zk)
if not ok then
    io.stderr:write("with_zookeeper: ZooKeeper did not start: ", tostring(err), "\n")
    zk:destroy()
    return rt:stop(1)
end

local words = { "timeout", "-k", "10", tostring(seconds) }
for i = 2, #arg do
    words[#words + 1] = process.quote(arg[i])
end
words[#words + 1] = process.quote(zk.connect_string)
-- LuaJIT 2.1's os.execute returns the wait status as a number.
local status = os.execute(table.concat(words, " "))
zk:destroy()
if type(status) ~= "number" then
    status = status and 0 or 1
elseif status > 255 then
    status = math.floor(status / 256)
end
rt:stop(status)
