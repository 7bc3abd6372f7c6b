-- examples/demo.lua: what `make demo` runs, through `build/disco run`.
-- Starts a local ZooKeeper (Debian's package, on a free loopback port), runs
-- examples/hello.lua against it as a separate `disco run`, and stops
-- everything it started.
local rt = ...
local process = require "disco.testing.process"
local zookeeper = require "disco.testing.zookeeper"

local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local disco_bin = package.loaded["disco.host"].exe

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
    io.stdout:flush()
end

say("== starting ZooKeeper (Debian's zookeeper package) on 127.0.0.1")
local zk = zookeeper.server()
local started, err = pcall(zk.start, zk)
if not started then
    say("ZooKeeper did not start: %s", tostring(err))
    zk:destroy()
    return rt:stop(1)
end
say("ZooKeeper %s serving: pid %d, mode %s, data in %s", zk.connect_string,
    zk.pid, tostring(zk:mode()), zk.data_dir)

say("== %s run %s/hello.lua %s", disco_bin, here, zk.connect_string)
local status = os.execute(table.concat({ process.quote(disco_bin), "run",
    process.quote(here .. "/hello.lua"), process.quote(zk.connect_string) }, " "))
local hello_ok = status == 0 or status == true

say("== stopping ZooKeeper (pid %d)", zk.pid)
local pid, dir = zk.pid, zk.dir
zk:destroy()
local still_running = process.alive(pid)
local dir_left = os.rename(dir, dir) ~= nil
say("ZooKeeper process gone: %s; temporary directory removed: %s",
    still_running and "NO" or "yes", dir_left and "NO" or "yes")
local ok = hello_ok and not still_running and not dir_left
say(ok and "demo: OK" or "demo: FAILED")
rt:stop(ok and 0 or 1)
