--- validation/recent_call: keep an address that answered a call lately.
--
-- A provider that served a call within the last heartbeat period is very
-- likely alive whatever the registry says (a lost session, a coalesced
-- delete): keep it, marked suspect, until that period has passed since its
-- last successful call; the chain is asked again then. The consumer
-- records calls with `consumer:report_call(address, ok, latency_ms)` and
-- hands its record of the address to the chain as `req.calls`
-- (`last_ok`, `last_failed`: loop times in ms; `ok`, `failed`: counts).
--
-- Configuration: `period_ms` (default: the chain's period, which is the
-- registry's session timeout, else 30000).
local M = {
    name = "recent_call",
    version = "1.0.0",
    kind = "validation",
}

local period_ms

function M.check_config(conf)
    if conf.period_ms ~= nil and (type(conf.period_ms) ~= "number" or conf.period_ms <= 0) then
        return false, "period_ms must be a positive number"
    end
    return true
end

function M.init(_, conf)
    period_ms = conf.period_ms
end

function M.validate(req, cb)
    local calls = req.calls
    local last_ok = calls and calls.last_ok
    local period = period_ms or req.period_ms or 30000
    if last_ok and req.now - last_ok < period
        and not (calls.last_failed and calls.last_failed > last_ok) then
        return cb({ verdict = "keep", reason = "recent successful call",
                    until_ms = last_ok + period, suspect = true })
    end
    cb({ verdict = "defer" })
end

return M
