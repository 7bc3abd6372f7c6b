--- The invariants of the chaos suite, checked on timelines: what the
-- consumer delivered (lists with their times) against the providers' real
-- liveness (transitions the test caused, with their times).
--
-- A provider that is live but absent from the consumer's list, or dead
-- (killed or stopped) but still listed, is a mismatch. Mismatches are
-- expected for a while: the registry must expire a dead provider's session
-- and the validation chain must probe it, a restarted one must register
-- and be read. So a mismatch is a violation only when it lasts longer than
-- `bound_ms`. Its clock starts when it begins, or, if it begins while a
-- fault cuts the consumer (or the whole registry) off, when that fault is
-- healed: during such a window the consumer cannot learn anything.
--
-- An empty list delivered while a provider is live is always a violation.
--
-- Pure logic (no processes), so that spec/01-unit/chaos_checker_spec.lua
-- can prove that it catches what it must.
local _M = {}

local Checker = {}
Checker.__index = Checker

--- `bound_ms`: how long a mismatch may last; `ports`: the providers'.
function _M.new(bound_ms, ports)
    local self = setmetatable({
        bound_ms = bound_ms,
        ports = ports,
        transitions = {}, -- { t =, port =, live = }
        windows = {},     -- { from =, to = }
        reported = {},    -- violation keys already returned
    }, Checker)
    return self
end

--- Provider at `port` became live (true) or dead (false) at `t`.
function Checker:set_live(port, live, t)
    self.transitions[#self.transitions + 1] = { t = t, port = port, live = live }
end

--- The consumer was cut off from `from` to `to` (ms).
function Checker:cut_off(from, to)
    self.windows[#self.windows + 1] = { from = from, to = to }
end

--- When a mismatch that began at `t` starts counting: at the end of a
-- window that covers `t`, or that opened before the mismatch could have
-- been resolved (a fault injected just after a kill).
function Checker:clock_start(t)
    local start = t
    for _, w in ipairs(self.windows) do
        if w.from <= start + self.bound_ms and w.to >= start then
            start = w.to
        end
    end
    return start
end

--- Whether the provider at `port` is live at `t`.
function Checker:live_at(port, t)
    local live = true
    for _, tr in ipairs(self.transitions) do
        if tr.port == port and tr.t <= t then
            live = tr.live
        end
    end
    return live
end

--- Checks `lists` (the consumer's deliveries: `{ t =, ports = set, n = }`,
-- in order) up to `now`. Returns the violations not returned before
-- (`{ key =, kind =, port =, at =, lasted_ms =, text = }`), and the
-- mismatches still open (`{ port =, kind =, start =, deadline = }`).
function Checker:check(lists, now)
    local events = {}
    for i, l in ipairs(lists) do
        events[#events + 1] = { t = l.t, order = 1, seq = i, list = l }
    end
    for i, tr in ipairs(self.transitions) do
        events[#events + 1] = { t = tr.t, order = 0, seq = i, tr = tr }
    end
    table.sort(events, function(a, b)
        if a.t ~= b.t then
            return a.t < b.t
        end
        if a.order ~= b.order then
            return a.order < b.order
        end
        return a.seq < b.seq
    end)

    local violations, open = {}, {}
    local function violation(key, v)
        if not self.reported[key] then
            self.reported[key] = true
            v.key = key
            violations[#violations + 1] = v
        end
    end

    local live, member, started = {}, {}, false
    for _, port in ipairs(self.ports) do
        live[port] = true
        member[port] = false
    end
    local mismatch = {} -- port -> { kind =, began =, start = }
    local function settle(t)
        for _, port in ipairs(self.ports) do
            local m = mismatch[port]
            local wrong = started and live[port] ~= member[port]
            if wrong and not m then
                mismatch[port] = { kind = live[port] and "live provider missing" or "dead provider kept",
                                   began = t, start = self:clock_start(t) }
            elseif not wrong and m then
                if t - m.start > self.bound_ms then
                    violation(port .. "@" .. m.began, {
                        kind = m.kind, port = port, at = m.began, lasted_ms = t - m.start,
                        text = string.format("%s: port %d for %.0f ms (bound %d ms)",
                                             m.kind, port, t - m.start, self.bound_ms),
                    })
                end
                mismatch[port] = nil
            end
        end
    end

    local i = 1
    while i <= #events do
        local t = events[i].t
        while i <= #events and events[i].t == t do
            local e = events[i]
            if e.tr then
                live[e.tr.port] = e.tr.live
            else
                started = true
                for _, port in ipairs(self.ports) do
                    member[port] = e.list.ports[port] == true
                end
                if (e.list.n or 0) == 0 then
                    for _, port in ipairs(self.ports) do
                        if live[port] then
                            violation("empty@" .. t, {
                                kind = "empty push", at = t,
                                text = string.format("empty list delivered while port %d was live", port),
                            })
                            break
                        end
                    end
                end
            end
            i = i + 1
        end
        settle(t)
    end

    for _, port in ipairs(self.ports) do
        local m = mismatch[port]
        if m then
            if now - m.start > self.bound_ms then
                violation(port .. "@" .. m.began, {
                    kind = m.kind, port = port, at = m.began, lasted_ms = now - m.start,
                    text = string.format("%s: port %d for %.0f ms and counting (bound %d ms)",
                                         m.kind, port, now - m.start, self.bound_ms),
                })
            end
            open[#open + 1] = { port = port, kind = m.kind, start = m.start,
                                deadline = m.start + self.bound_ms }
        end
    end
    return violations, open
end

return _M
