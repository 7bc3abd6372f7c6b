-- examples/hello.lua: the runtime's moving parts at this stage: the loop, a
-- timer, and the thread-safe event queue that ZooKeeper events will take.
--
--   build/disco run examples/hello.lua [ZOOKEEPER_CONNECT_STRING]
--
-- It connects to nothing yet; given a connect string it only says where
-- ZooKeeper is. Later stages replace this with a provider and a consumer.
local rt, zookeeper = ...
local disco = require "disco"

print(string.format("hello from disco %s on %s (libuv %s)", disco.VERSION,
                    jit and jit.version or _VERSION, disco.core.LIBUV_VERSION))
if zookeeper then
    print("a ZooKeeper server is running at " .. zookeeper
          .. " (this stage does not connect to it yet)")
end

local started = rt:now()
local ticks = 0
local ticker = rt:every(100, function()
    ticks = ticks + 1
end, "ticker")

-- Four threads push 250,000 numbered events each into a fresh event queue;
-- the loop drains them and checks that every one arrived once, in order.
local probe_done = false
rt.loop:queue_probe(4, 250000, function(r)
    print(string.format(
        "event queue: %d events from %d threads in %.1f ms over %d wake-ups; "
        .. "missing %d, duplicated %d, out of order %d",
        r.received, r.producers, r.elapsed_ms, r.wakeups, r.missing,
        r.duplicates, r.out_of_order))
    probe_done = r.missing == 0 and r.duplicates == 0 and r.out_of_order == 0
end)

rt:after(1000, function()
    ticker:close()
    print(string.format("timer: ticked %d times in %d ms", ticks,
                        rt:now() - started))
    local ok = probe_done and ticks >= 5
    print(ok and "hello: all good" or "hello: something went wrong")
    rt:stop(ok and 0 or 1)
end, "finish")
