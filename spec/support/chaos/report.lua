--- The chaos suite's report: rounds, faults by kind, violations (each
-- with its round, its fault and the seed that replays the run).
local _M = {}

local Report = {}
Report.__index = Report

function _M.new(seed, rounds, bound_ms)
    return setmetatable({ seed = seed, planned = rounds, bound_ms = bound_ms, rounds = {},
                          by_kind = {}, violations = {}, notes = {} }, Report)
end

function Report:note(text)
    self.notes[#self.notes + 1] = text
end

function Report:violation(round, kind, text)
    self.violations[#self.violations + 1] = string.format("round %d (%s, seed %d): %s",
                                                          round, kind, self.seed, text)
end

function Report:add_round(rec)
    self.rounds[#self.rounds + 1] = rec
    for _, f in ipairs(rec.faults) do
        self.by_kind[f.kind] = (self.by_kind[f.kind] or 0) + 1
        if f.ensemble_stall_ms then
            self.stalls = (self.stalls or 0) + 1
        end
    end
    if #rec.faults > 1 then
        self.combined = (self.combined or 0) + 1
    end
end

function Report.round_line(_, rec)
    local what = {}
    for i, f in ipairs(rec.faults) do
        what[i] = string.format("%s %s (%s)", f.kind, tostring(f.target), tostring(f.detail))
    end
    local slow = ""
    if rec.slow_zk and (rec.settled_ms or 0) > 2000 then
        slow = string.format(" (at %.0f ms: %s)", rec.slow_zk_ms, rec.slow_zk)
    end
    return string.format("chaos: round %d %s: healed after %.0f ms, settled in %.0f ms%s,"
                         .. " %d lists delivered, consumer fds %s rss %s KiB",
                         rec.round, table.concat(what, " + "),
                         rec.t_heal - rec.t_inject, rec.settled_ms or -1, slow, rec.lists or 0,
                         tostring(rec.fds), tostring(rec.rss))
end

function Report:summary()
    local kinds = {}
    for kind in pairs(self.by_kind) do
        kinds[#kinds + 1] = kind
    end
    table.sort(kinds)
    local lines = {
        string.format("chaos summary: seed %d, %d of %d rounds, bound %d ms, %d violations",
                      self.seed, #self.rounds, self.planned, self.bound_ms, #self.violations),
    }
    for _, kind in ipairs(kinds) do
        lines[#lines + 1] = string.format("  faults %-24s %d", kind, self.by_kind[kind])
    end
    if self.combined then
        lines[#lines + 1] = string.format("  rounds combining two faults: %d", self.combined)
    end
    if self.stalls then
        lines[#lines + 1] = string.format(
            "  ensemble stalls (a leader, but no new session for %d ms; leader restarted): %d",
            require("spec.support.chaos.faults").STALL_MS, self.stalls)
    end
    for _, n in ipairs(self.notes) do
        lines[#lines + 1] = "  note: " .. n
    end
    for _, v in ipairs(self.violations) do
        lines[#lines + 1] = "  violation: " .. v
    end
    return table.concat(lines, "\n")
end

return _M
