-- The chaos suite's report (spec/support/chaos/report.lua): what its
-- summary counts, so that an ensemble stall the suite worked around is
-- visible and a violation names the seed that replays it.
local faults = require "spec.support.chaos.faults"
local report = require "spec.support.chaos.report"

local function round(n, fault_list)
    return { round = n, faults = fault_list, t_inject = 0, t_heal = 10, settled_ms = 1, lists = 0 }
end

describe("chaos report", function()
    it("counts faults by kind, combined rounds and ensemble stalls", function()
        local r = report.new(42, 3, 9500)
        r:add_round(round(1, { { kind = "leader_pause" } }))
        r:add_round(round(2, { { kind = "registry_outage", ensemble_stall_ms = 15003 },
                               { kind = "proxy_reset" } }))
        r:add_round(round(3, { { kind = "registry_outage" } }))
        local text = r:summary()
        assert.truthy(text:find("chaos summary: seed 42, 3 of 3 rounds, bound 9500 ms, 0 violations", 1, true))
        assert.truthy(text:find("faults registry_outage%s+2\n"))
        assert.truthy(text:find("faults leader_pause%s+1\n"))
        assert.truthy(text:find("rounds combining two faults: 1", 1, true))
        local stalls = "ensemble stalls (a leader, but no new session for %d ms; leader restarted): 1"
        assert.truthy(text:find(string.format(stalls, faults.STALL_MS), 1, true))
    end)

    it("says nothing of stalls when there were none, and names the seed of a violation", function()
        local r = report.new(7, 1, 9500)
        r:add_round(round(1, { { kind = "provider_kill" } }))
        r:violation(1, "provider_kill", "provider2 kept 12000 ms after it died")
        local text = r:summary()
        assert.falsy(text:find("ensemble stalls", 1, true))
        assert.truthy(text:find("1 violations", 1, true))
        assert.truthy(text:find("violation: round 1 (provider_kill, seed 7): provider2 kept", 1, true))
    end)

    it("prints a round's faults with their details", function()
        local line = report.new(1, 1, 9500):round_line(round(4, {
            { kind = "registry_outage", target = "every server",
              detail = "3000 ms, ensemble committed nothing for 15002 ms after the election: leader 2 restarted" },
        }))
        local head = "chaos: round 4 registry_outage every server (3000 ms, ensemble committed nothing"
        assert.truthy(line:find(head, 1, true))
        assert.truthy(line:find("healed after 10 ms, settled in 1 ms", 1, true))
    end)
end)
