--- The balancer's call outcomes, aggregated per worker: `record()` runs in
-- log_by_lua once per attempt and only updates a Lua table keyed by
-- address; `flush()` (from a timer, every `feedback_flush` seconds) pushes
-- one record per address into the shared dict (disco.resty.shared
-- push_feedback), for the owner to hand to `consumer:report_calls`.
--
-- Why: a shared-dict `lpush` per request (and an `rpop` plus a
-- report_call per request in the owner) was most of the cost of the
-- feedback; an address seen N times in an interval now costs one record.
--
-- Bounded: at most `cap` addresses are held; a new address beyond flushes
-- first, and is dropped (counted, `feedback_dropped`) only when the flush
-- could not push (a full dict). A record the dict refuses stays here and
-- is pushed again at the next flush.
--
-- Nothing here calls ngx: the dict and the clock are passed in, so the unit
-- spec runs it outside nginx.
-- @module disco.resty.feedback

local shared = require "disco.resty.shared"

local floor = math.floor
local pairs = pairs
local push_feedback = shared.push_feedback

local _M = {}

-- Milliseconds from `t` to `now` (seconds), whole, never negative.
local function age_ms(now, t)
    local ms = floor((now - t) * 1000 + 0.5)
    return ms > 0 and ms or 0
end

--- A new aggregator.
-- @param dict the shared dict (or a stand-in with its methods)
-- @tparam number cap the records the dict's list holds at most, and the
-- addresses held here at most
-- @tparam function now the clock, in seconds (ngx.now)
-- @return the aggregator: `record(address, ok, latency_ms)`, `flush()`,
-- `size()`, and the field `flush_each` (true: every record is pushed at
-- once, for a worker whose flush timer is gone)
function _M.new(dict, cap, now)
    local entries = {} -- address -> { ok =, failed =, latency =, t_ok =, t_failed = }
    local count = 0
    local self = { flush_each = false }

    --- Pushes one record per address seen since the last flush.
    -- @return the records pushed
    function self.flush()
        if count == 0 then
            return 0
        end
        local t = now()
        local pushed = 0
        for address, e in pairs(entries) do
            local ok_age = e.ok > 0 and age_ms(t, e.t_ok) or nil
            local failed_age = e.failed > 0 and age_ms(t, e.t_failed) or nil
            if push_feedback(dict, address, e.ok, e.failed, e.latency, ok_age, failed_age, cap) then
                entries[address] = nil -- assigning nil during pairs is allowed
                count = count - 1
                pushed = pushed + 1
            end
        end
        return pushed
    end

    --- Counts one attempt at `address` ("host:port"): whether the node
    -- answered, and its time in ms (or nil).
    -- @return true, or false when it was dropped (no room, counted)
    function self.record(address, ok, latency_ms)
        local e = entries[address]
        if not e then
            if count >= cap then
                self.flush()
                if count >= cap then
                    shared.bump(dict, "feedback_dropped")
                    return false
                end
            end
            e = { ok = 0, failed = 0 }
            entries[address] = e
            count = count + 1
        end
        if ok then
            e.ok = e.ok + 1
            e.t_ok = now()
        else
            e.failed = e.failed + 1
            e.t_failed = now()
        end
        e.latency = latency_ms
        if self.flush_each then
            self.flush()
        end
        return true
    end

    --- The addresses waiting for the next flush.
    function self.size()
        return count
    end

    return self
end

return _M
