-- spec/valgrind/flow.lua: one full provider/consumer flow in one host
-- process, for `make valgrind` (spec/valgrind/run.lua runs it under valgrind
-- against a ZooKeeper it started).
--
--   build/disco run spec/valgrind/flow.lua HOST:PORT
--
-- Two provider instances of "shop" register (local storage: each serves its
-- MetadataService over dubbo), a consumer subscribes to one service ID,
-- fetches the metadata over dubbo and gets both addresses; one provider
-- leaves and the consumer's list shrinks to the other; then the second
-- provider stops and everything closes. Exit status 0 when every step
-- happened, 1 (with the step that did not) otherwise. Slow under valgrind,
-- so every wait is bounded by one deadline for the whole flow.
local rt, connect = ...
local ports = require "disco.testing.ports"

local IFACE = "com.acme.Valgrind"
local SID = "dubbo:" .. IFACE .. ":1.0.0"
local DEADLINE_MS = tonumber(os.getenv("DISCO_VALGRIND_FLOW_MS")) or 300000

if not connect or not connect:match("^[%w%.%-]+:%d+$") then
    io.stderr:write("usage: disco run spec/valgrind/flow.lua HOST:PORT\n")
    return rt:stop(2)
end
local url = "zookeeper://" .. connect .. "?session_timeout=20000&root=/valgrind"
    .. tostring(require("disco.core").getpid())

local function say(fmt, ...)
    io.stdout:write("flow: ", string.format(fmt, ...), "\n")
    io.stdout:flush()
end

local step = "start"
local finished = false
local function finish(ok, why)
    if finished then
        return
    end
    finished = true
    say(ok and "all steps done" or ("failed at %s: %s"), step, tostring(why))
    rt:stop(ok and 0 or 1)
end
rt:after(DEADLINE_MS, function() finish(false, "no progress within " .. DEADLINE_MS .. " ms") end, "deadline")

local providers = {}
for i = 1, 2 do
    local p = rt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = ports.pick_port(),
                            storage = "local", mapping = false, revision_port = false })
    p:export({ interface = IFACE, version = "1.0.0", methods = { "get" } })
    providers[i] = p
end

local consumer
local function on_change(_, list)
    say("%s: consumer lists %d address(es)", step, #list)
    if step == "subscribe" and #list == 2 then
        step = "leave"
        providers[1]:stop(function(err)
            if err then
                return finish(false, err)
            end
            say("provider 1 unregistered")
        end)
    elseif step == "leave" and #list == 1 then
        if list[1].port ~= providers[2].instance.port then
            return finish(false, "the remaining address is not provider 2's")
        end
        -- Both instances share one revision: one MetadataService call.
        local calls = consumer:counters().fetch_calls
        if calls ~= 1 then
            return finish(false, "expected 1 MetadataService call, got " .. tostring(calls))
        end
        step = "stop"
        providers[2]:stop(function(err)
            if err then
                return finish(false, err)
            end
            finish(true)
        end)
    end
end

local started = 0
for _, p in ipairs(providers) do
    p:start(function(err)
        if err then
            return finish(false, err)
        end
        started = started + 1
        say("provider at port %d registered", p.instance.port)
        if started == #providers then
            step = "subscribe"
            consumer = rt:consumer({ registry = url })
            consumer:subscribe(SID, on_change, { provided_by = { "shop" } })
        end
    end)
end
