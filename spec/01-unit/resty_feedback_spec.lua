-- disco.resty.feedback outside nginx (a fake shared dict, a clock the spec
-- moves): the balancer's outcomes counted per address in the worker, one
-- record per address per flush, the bound on addresses, a dict that
-- refuses records, and what the owner drains from it.
local feedback = require "disco.resty.feedback"
local shared = require "disco.resty.shared"
local fake_dict = require("spec.support.fake_shdict").new

-- What drain_feedback hands on, by address.
local function drain(dict)
    local got = {}
    shared.drain_feedback(dict, 1000, function(address, ok, failed, latency, ok_age, failed_age)
        assert.is_nil(got[address], "two records for " .. address .. " in one flush")
        got[address] = { ok = ok, failed = failed, latency = latency, ok_age = ok_age,
                         failed_age = failed_age }
    end)
    return got
end

describe("disco.resty.feedback", function()
    local dict, clock, agg

    before_each(function()
        dict = fake_dict(100000)
        clock = 1000
        agg = feedback.new(dict, 4, function() return clock end)
    end)

    it("counts per address and pushes nothing before a flush", function()
        assert.is_true(agg.record("10.0.0.1:80", true, 2))
        assert.is_true(agg.record("10.0.0.1:80", true, 3))
        assert.is_true(agg.record("10.0.0.2:80", false, nil))
        assert.equal(2, agg.size())
        assert.is_nil(dict.lists[shared.FEEDBACK])
    end)

    it("pushes one record per address with its counts, the last latency and the ages", function()
        agg.record("10.0.0.1:80", true, 2)
        clock = clock + 0.010
        agg.record("10.0.0.1:80", false, 30)
        clock = clock + 0.005
        agg.record("10.0.0.1:80", true, 4)
        agg.record("10.0.0.2:80", false, nil)
        clock = clock + 0.050
        assert.equal(2, agg.flush())
        assert.equal(0, agg.size())
        assert.same({
            ["10.0.0.1:80"] = { ok = 2, failed = 1, latency = 4, ok_age = 50, failed_age = 55 },
            ["10.0.0.2:80"] = { ok = 0, failed = 1, failed_age = 50 },
        }, drain(dict))
        -- Nothing seen since: the next flush pushes nothing.
        assert.equal(0, agg.flush())
        assert.same({}, drain(dict))
    end)

    it("makes the total of the counts the number of attempts, across flushes", function()
        local attempts, total = 0, 0
        for round = 1, 3 do
            for i = 1, 25 * round do
                agg.record("10.0.0." .. (i % 3) .. ":80", i % 5 ~= 0, i)
                attempts = attempts + 1
            end
            agg.flush()
            for _, rec in pairs(drain(dict)) do
                total = total + rec.ok + rec.failed
            end
        end
        assert.equal(25 + 50 + 75, attempts)
        assert.equal(attempts, total)
    end)

    it("holds at most `cap` addresses: a new one flushes first", function()
        for i = 1, 4 do
            agg.record("10.0.0." .. i .. ":80", true, 1)
        end
        assert.is_nil(dict.lists[shared.FEEDBACK])
        assert.is_true(agg.record("10.0.0.5:80", true, 1))
        assert.equal(1, agg.size())
        assert.equal(4, #dict.lists[shared.FEEDBACK])
        assert.equal(0, shared.counter(dict, "feedback_dropped"))
    end)

    it("keeps the dict's list at `cap` records, dropping the oldest (counted)", function()
        for flush = 1, 3 do
            for i = 1, 3 do
                agg.record("10.0.0." .. i .. ":80", true, flush)
            end
            agg.flush()
        end
        assert.equal(4, #dict.lists[shared.FEEDBACK])
        assert.equal(9 - 4, shared.counter(dict, "feedback_dropped"))
    end)

    it("keeps what a full dict refuses for the next flush, and drops new addresses beyond `cap`", function()
        local d = fake_dict(100000)
        local full = true
        local lpush = d.lpush
        d.lpush = function(self, key, value)
            if full then
                return nil, "no memory"
            end
            return lpush(self, key, value)
        end
        local a = feedback.new(d, 2, function() return clock end)
        a.record("10.0.0.1:80", true, 1)
        a.record("10.0.0.2:80", false, 1)
        assert.equal(0, a.flush())
        assert.equal(2, shared.counter(d, "feedback_failed"))
        assert.equal(2, a.size())
        -- No room to flush: a third address is dropped, counted.
        assert.is_false(a.record("10.0.0.3:80", true, 1))
        assert.equal(1, shared.counter(d, "feedback_dropped"))
        -- Known addresses still count; once the dict has room, nothing
        -- they counted is lost.
        assert.is_true(a.record("10.0.0.1:80", true, 1))
        full = false
        assert.equal(2, a.flush())
        local got = drain(d)
        assert.same({ 2, 0 }, { got["10.0.0.1:80"].ok, got["10.0.0.1:80"].failed })
        assert.same({ 0, 1 }, { got["10.0.0.2:80"].ok, got["10.0.0.2:80"].failed })
        assert.is_nil(got["10.0.0.3:80"])
    end)

    it("pushes every record at once when flush_each is set (no timer left)", function()
        agg.flush_each = true
        agg.record("10.0.0.1:80", true, 1)
        agg.record("10.0.0.1:80", false, 2)
        assert.equal(0, agg.size())
        assert.equal(2, #dict.lists[shared.FEEDBACK])
    end)

    it("names a node as $upstream_addr does, for the balancer's single-attempt reports", function()
        local balancer = require "disco.resty.balancer"
        local v4, v6 = { host = "10.0.0.1", port = 80 }, { host = "::1", port = 8080 }
        assert.equal("10.0.0.1:80", balancer.peer_name(v4))
        assert.equal("[::1]:8080", balancer.peer_name(v6))
        -- The owner maps reports to instances by the same key
        -- (disco.resty.owner nodes_of: "[" .. host .. "]:" .. port for IPv6).
        assert.equal(balancer.peer_name(v6), balancer.peer_name({ host = "::1", port = 8080 }))
    end)
end)
