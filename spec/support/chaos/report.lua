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
    self.by_kind[rec.kind] = (self.by_kind[rec.kind] or 0) + 1
end

function Report.round_line(_, rec)
    return string.format("chaos: round %d %s %s (%s): healed after %.0f ms, settled in %.0f ms,"
                         .. " %d lists delivered, consumer fds %s rss %s KiB",
                         rec.round, rec.kind, tostring(rec.target), tostring(rec.detail),
                         rec.t_heal - rec.t_inject, rec.settled_ms or -1, rec.lists or 0,
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
    for _, n in ipairs(self.notes) do
        lines[#lines + 1] = "  note: " .. n
    end
    for _, v in ipairs(self.violations) do
        lines[#lines + 1] = "  violation: " .. v
    end
    return table.concat(lines, "\n")
end

return _M
