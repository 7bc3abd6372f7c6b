-- examples/demo.lua: what `make demo` runs, through `build/disco run`.
--
-- The main job end to end on a real ZooKeeper (Debian's package, started
-- on a free loopback port):
--   1. two provider applications, three instances in two revisions, each a
--      separate `disco provide` process advertising 127.0.0.1 and serving
--      its MetadataService over the dubbo protocol (local storage, Dubbo's
--      default);
--   2. a consumer (this process) subscribed to two Dubbo service IDs,
--      printing its address lists and the number of MetadataService calls,
--      which equals the number of distinct revisions;
--   3. one provider instance stopped (SIGTERM: it unregisters), and the
--      consumer's lists shrinking;
--   4. everything it started stopped, by PID.
local rt = ...
local core = require "disco.core"
local ports = require "disco.testing.ports"
local read_file = require("disco.testing.files").read_file
local process = require "disco.testing.process"
local zookeeper = require "disco.testing.zookeeper"

local disco_bin = package.loaded["disco.host"].exe

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
    io.stdout:flush()
end

-- Drives the loop until pred() holds or ms pass.
local function drive(pred, ms)
    local deadline = core.hrtime() + ms
    while core.hrtime() < deadline do
        rt:step()
        if pred() then
            return true
        end
        core.sleep(5)
    end
    return false
end

say("== starting ZooKeeper (Debian's zookeeper package) on 127.0.0.1")
local zk = zookeeper.server()
local started, err = pcall(zk.start, zk)
if not started then
    say("ZooKeeper did not start: %s", tostring(err))
    zk:destroy()
    return rt:stop(1)
end
say("ZooKeeper %s serving: pid %d, data in %s", zk.connect_string, zk.pid, zk.data_dir)
local registry_url = "zookeeper://" .. zk.connect_string .. "?session_timeout=6000"

-- The providers: shop (two instances, one revision: Cart and Order) and
-- warehouse (one instance, another revision: Cart only), each on a free
-- loopback port.
local PROVIDERS = {
    { app = "shop", port = ports.pick_port(), services = { "com.acme.Cart:1.0.0", "com.acme.Order" } },
    { app = "shop", port = ports.pick_port(), services = { "com.acme.Cart:1.0.0", "com.acme.Order" } },
    { app = "warehouse", port = ports.pick_port(), services = { "com.acme.Cart:1.0.0" } },
}
local running = {}
local ok = true
for i, p in ipairs(PROVIDERS) do
    -- All three advertise 127.0.0.1 on their own ports, so the port is
    -- left out of the revision: the two shop instances then share one.
    local argv = { disco_bin, "provide", "--registry", registry_url, "--app", p.app,
                   "--host", "127.0.0.1", "--port", tostring(p.port), "--storage", "local",
                   "--revision-without-port", "--method", "get", "--method", "put" }
    for _, s in ipairs(p.services) do
        argv[#argv + 1] = "--service"
        argv[#argv + 1] = s
    end
    p.log = zk.dir .. "/provider" .. i .. ".log"
    p.proc = process.spawn({ argv = argv, log = p.log })
    running[#running + 1] = p
end
for _, p in ipairs(running) do
    local line
    drive(function()
        line = (read_file(p.log) or ""):match("registered[^\n]*")
        return line ~= nil
    end, 20000)
    say("provider pid %d: %s", p.proc.pid, line or ("did not register: " .. (read_file(p.log) or "")))
    ok = ok and line ~= nil
end

local consumer = rt:consumer({ registry = registry_url })
local lists = {}
local function show(id)
    say("  %s: %d address(es)", id, #lists[id])
    for _, entry in ipairs(lists[id]) do
        say("    %-9s %s", entry.app, entry.url:sub(1, 110) .. (#entry.url > 110 and "..." or ""))
    end
end
local IDS = { "dubbo:com.acme.Cart:1.0.0", "dubbo:com.acme.Order" }
for _, id in ipairs(IDS) do
    consumer:subscribe(id, function(diff, list)
        lists[id] = list
        if lists.shown then
            say("  change of %s: +%d -%d", id, #diff.added, #diff.removed)
        end
    end)
end
say("== consumer subscribed to %s", table.concat(IDS, " and "))
ok = drive(function()
    return lists[IDS[1]] and #lists[IDS[1]] == 3 and lists[IDS[2]] and #lists[IDS[2]] == 2
end, 20000) and ok
lists.shown = true
for _, id in ipairs(IDS) do
    if lists[id] then
        show(id)
    end
end
local counters = consumer:counters()
say("MetadataService calls: %d for 2 distinct revisions (cache hits %d, misses %d)",
    counters.fetch_calls, counters.hits, counters.misses)
ok = ok and counters.fetch_calls == 2

local victim = running[2]
say("== stopping provider pid %d (shop at 127.0.0.1:%d) with SIGTERM", victim.proc.pid, victim.port)
process.signal(victim.proc.pid, "TERM")
ok = drive(function()
    return #lists[IDS[1]] == 2 and #lists[IDS[2]] == 1
end, 20000) and ok
for _, id in ipairs(IDS) do
    show(id)
end

say("== stopping the consumer, the providers and ZooKeeper")
consumer:close()
-- The consumer's ZooKeeper session ends before the server does.
rt.plugins:close()
drive(function() return false end, 200)
for _, p in ipairs(running) do
    if process.alive(p.proc.pid, p.proc.start_time) then
        process.signal(p.proc.pid, "TERM")
    end
end
local providers_gone = true
for _, p in ipairs(running) do
    providers_gone = process.wait_dead(p.proc.pid, 10000, p.proc.start_time) and providers_gone
end
local pid, dir = zk.pid, zk.dir
zk:destroy()
local zk_gone = not process.alive(pid)
local dir_left = os.rename(dir, dir) ~= nil
say("providers gone: %s; ZooKeeper gone: %s; temporary directory removed: %s",
    providers_gone and "yes" or "NO", zk_gone and "yes" or "NO", dir_left and "NO" or "yes")
ok = ok and providers_gone and zk_gone and not dir_left
say(ok and "demo: OK" or "demo: FAILED")
rt:stop(ok and 0 or 1)
