-- The observed consumer of the chaos suite, run as its own process:
--
--   disco run spec/chaos/consumer.lua REGISTRY_URL SERVICE_ID APP PROBE_MS
--
-- Subscribes to SERVICE_ID (provided by APP) with the default validation
-- chain, `health/dubbo_probe` answering within PROBE_MS, and writes one JSON
-- object per line on stdout, each with `t` (core.hrtime(): CLOCK_MONOTONIC
-- in ms, the clock of the test process too):
--   {"ev":"list","t":..,"ports":[...]}      every list delivered
--   {"ev":"reasons","t":..,"reasons":{...}} every validation decision
--   {"ev":"session","t":..,"id":"..","passwd":"HEX"}  each new session, so
--                                           that the test can expire it
local rt, url, sid, app, probe_ms = ...
local cjson = require "cjson"
local core = require "disco.core"

local function emit(fields)
    fields.t = core.hrtime()
    io.stdout:write(cjson.encode(fields), "\n")
    io.stdout:flush()
end

local function hex(bytes)
    return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local consumer = rt:consumer({
    registry = url,
    validation = { conf = { ["health/dubbo_probe"] = { timeout_ms = tonumber(probe_ms) } } },
})

rt:on("ServiceInstancesChanged", function(e)
    if e.reasons and next(e.reasons) then
        emit({ ev = "reasons", reasons = e.reasons })
    end
end)

consumer:subscribe(sid, function(_, list)
    local ports = {}
    for i, entry in ipairs(list) do
        ports[i] = entry.port
    end
    emit({ ev = "list", ports = ports, n = #ports })
end, { provided_by = { app } })

-- The registry's session changes on every expiry; the test joins the
-- current one with these credentials to force the next.
local last_id
rt:every(100, function()
    local session = rt:registry_of(url).session()
    local id = session:session_id()
    if id and id ~= last_id and session:state() == "connected" then
        local sid_hex, passwd = session:debug_session()
        if sid_hex then
            last_id = id
            emit({ ev = "session", id = sid_hex, passwd = hex(passwd) })
        end
    end
end, "chaos-session")

for _, signame in ipairs({ "SIGINT", "SIGTERM" }) do
    rt:on_signal(signame, function()
        consumer:close()
        rt:stop(0)
    end)
end
