-- consumer:report_calls, the aggregated form of report_call that
-- disco.resty's owner uses: counts, the order of last_ok and last_failed
-- from the ages, records arriving out of order, and what
-- validation/recent_call concludes from the result (the same as from the
-- single calls it stands for).
local disco = require "disco"
local recent_call = require "plugins.validation.recent_call"

describe("consumer:report_calls", function()
    local rt, c, clock

    before_each(function()
        rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        local real = rt:consumer({ registry = "memory://report-calls" })
        -- The consumer's methods on a record with a clock the spec moves.
        clock = 100000
        c = setmetatable({ calls = {}, rt = { now = function() return clock end } }, getmetatable(real))
    end)

    after_each(function()
        rt:close()
    end)

    local function verdict(address)
        local got
        recent_call.init(nil, { period_ms = 1000 })
        recent_call.validate({ calls = c.calls[address], now = clock }, function(v) got = v end)
        return got.verdict
    end

    it("adds the counts and dates the last calls from their ages", function()
        c:report_calls("10.0.0.1:80", 3, 2, 7, 40, 10)
        assert.same({ ok = 3, failed = 2, last_ok = clock - 40, last_failed = clock - 10, latency_ms = 7 },
                    c.calls["10.0.0.1:80"])
        -- The failure came after the last success: not kept, as with the
        -- single calls (ok, ok, ok, failed, failed).
        assert.equal("defer", verdict("10.0.0.1:80"))
        clock = clock + 200
        c:report_calls("10.0.0.1:80", 1, 0, 2, 5)
        assert.same({ ok = 4, failed = 2, last_ok = clock - 5, last_failed = clock - 200 - 10, latency_ms = 2 },
                    c.calls["10.0.0.1:80"])
        assert.equal("keep", verdict("10.0.0.1:80"))
    end)

    it("counts like report_call one call at a time", function()
        local single = setmetatable({ calls = {}, rt = c.rt }, getmetatable(c))
        for _, ok in ipairs({ true, false, true, true }) do
            single:report_call("10.0.0.2:80", ok, 3)
        end
        c:report_calls("10.0.0.2:80", 3, 1, 3, 0, 0)
        assert.same(single.calls["10.0.0.2:80"], c.calls["10.0.0.2:80"])
    end)

    it("never moves a last call back in time (records of several workers in any order)", function()
        c:report_calls("10.0.0.3:80", 1, 1, 1, 0, 0)
        c:report_calls("10.0.0.3:80", 2, 1, 9, 150, 300) -- an older worker's record, drained later
        local rec = c.calls["10.0.0.3:80"]
        assert.same({ 3, 2, clock, clock, 9 }, { rec.ok, rec.failed, rec.last_ok, rec.last_failed, rec.latency_ms })
    end)

    it("ignores an empty record and refuses bad arguments", function()
        c:report_calls("10.0.0.4:80", 0, 0)
        assert.is_nil(c.calls["10.0.0.4:80"])
        assert.has_error(function() c:report_calls(nil, 1, 0) end,
                         'report_calls: address must be a "host:port" string')
        for _, bad in ipairs({ { -1, 0 }, { 1.5, 0 }, { 0, "2" }, { 1, nil } }) do
            assert.has_error(function() c:report_calls("10.0.0.4:80", bad[1], bad[2]) end,
                             "report_calls: ok_count and failed_count must be integers >= 0")
        end
        assert.is_nil(c.calls["10.0.0.4:80"])
    end)
end)
