-- bench/churn_consumer.lua: the consumer of bench/churn.lua, in a process
-- of its own so that its CPU time can be read from /proc/PID/stat.
--
--   build/disco run bench/churn_consumer.lua HOST:PORT APP SERVICE_ID
--
-- Subscribes to SERVICE_ID provided by APP and prints, on stdout, one line
-- per address list it is given:
--   change <hrtime_ms> <addresses> lists=<n> reads=<n> fetches=<n> <rev>=<count>...
-- (<rev> is the `rev` parameter of each address, which churn.lua puts in
-- every revision's ServiceInfo), and a `stats` line with the same counters
-- whenever they moved without a list change. lists/reads are the ZooKeeper
-- getChildren/getData of its instance watch, fetches the metadata calls.
-- Runs until SIGTERM.
local rt, connect, app, sid = ...
local core = require "disco.core"

local url = "zookeeper://" .. connect .. "?session_timeout=20000"
local consumer = rt:consumer({ registry = url })
local registry = assert(rt:registry_of(url))

local function counters()
    local st = registry.stats()
    return string.format("lists=%d reads=%d fetches=%d", st.lists, st.reads, consumer:counters().fetch_calls)
end

local last = ""
local function say(line)
    io.stdout:write(line, "\n")
    io.stdout:flush()
end

consumer:subscribe(sid, function(_, list)
    local count, names = {}, {}
    for _, entry in ipairs(list) do
        local rev = entry.service and entry.service.params.rev or "?"
        if not count[rev] then
            count[rev] = 0
            names[#names + 1] = rev
        end
        count[rev] = count[rev] + 1
    end
    table.sort(names)
    local parts = {}
    for i, rev in ipairs(names) do
        parts[i] = rev .. "=" .. count[rev]
    end
    last = counters()
    say(string.format("change %.3f %d %s %s", core.hrtime(), #list, last, table.concat(parts, " ")))
end, { provided_by = { app } })

-- Reads that changed nothing in the list (a re-list, a retried read) are
-- reported too, so that the bench counts every read.
rt:every(100, function()
    local now = counters()
    if now ~= last then
        last = now
        say(string.format("stats %.3f %s", core.hrtime(), now))
    end
end, "churn-stats")
