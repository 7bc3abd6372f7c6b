--- The faults of the chaos suite. Each kind injects one fault into a
-- spec/support/chaos/cluster, holds it for a random (bounded) time, heals
-- it, and tells the checker what it did: provider liveness transitions
-- (`set_live`) and windows in which the consumer was cut off (`cut_off`).
-- Every choice comes from the suite's seeded generator, so a seed replays
-- the same faults (their timing still depends on the machine).
local helpers = require "spec.helpers"
local process = require "disco.testing.process"

local _M = {}

local now = helpers.core.hrtime

--- A seeded generator (Park-Miller, exact in doubles): `rng:int(a, b)`,
-- `rng:pick(list)`.
function _M.rng(seed)
    local state = seed % 2147483646 + 1
    local r = {}
    function r.int(_, a, b)
        state = state * 48271 % 2147483647
        return a + state % (b - a + 1)
    end
    function r:pick(list)
        return list[self:int(1, #list)]
    end
    return r
end

local function sleep_until(t)
    local left = t - now()
    if left > 0 then
        process.sleep(left)
    end
end

local function hex_to_bytes(hex)
    return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

--- How long an ensemble with a leader may grant no new session before the
-- suite restarts its leader (CHAOS_STALL_MS; 0 restarts it after every
-- ensemble fault, to exercise that path).
_M.STALL_MS = tonumber(os.getenv("CHAOS_STALL_MS")) or 15000

-- Waits until the ensemble serves again (a leader, and every server grants
-- a new session: see disco.testing.zookeeper's await_serving); the fault's
-- heal is then, since no client (the consumer included) can open a
-- session before. A leader can say it leads while nothing commits:
-- Debian's ZooKeeper 3.8.0, after every server was paused, once sat 30 s
-- and once over 60 s like that: the followers synced by DIFF, and every
-- session creation queued until their link to the leader timed out (it
-- looks like one of the sync-phase races reported upstream, such as
-- ZOOKEEPER-4646 and -4685; not confirmed). An operator would restart the
-- leader; so does the suite after STALL_MS, and the round's record says
-- so (`rec.ensemble_stall_ms`), so that the report counts it.
local function await_quorum(c, rec)
    local leader = c.ensemble:wait_for_leader(60000)
    local t0 = now()
    local serving, why = false, "CHAOS_STALL_MS=0"
    if _M.STALL_MS > 0 then
        serving, why = c.ensemble:await_serving(_M.STALL_MS)
    end
    if serving then
        return
    end
    leader = c.ensemble:leader() or leader
    if rec then
        rec.ensemble_stall_ms = now() - t0
        rec.detail = (rec.detail or "") .. string.format(
            ", ensemble granted no session for %.0f ms after the election (%s): leader %d restarted",
            now() - t0, why, leader.myid)
    end
    leader:kill()
    leader:start(60000)
    serving, why = c.ensemble:await_serving(60000)
    if not serving then
        error("the ensemble serves nothing even after its leader restarted: " .. why, 0)
    end
end

-- Fault kinds: inject(c, rng, chk, rec) injects the fault, fills
-- rec.target and rec.detail and returns how long to hold it (ms) and its
-- heal(), which undoes it and tells the checker. `c.bound_ms` is the
-- checker's bound. DOMAIN says what a kind disturbs: a round that combines
-- faults takes them from different domains, so that two never fight over
-- one process and at most one provider is down at a time.
local kinds, DOMAIN = {}, {}

local function pause_server(server, chk, rec, hold)
    rec.target, rec.detail = "server " .. server.myid, hold .. " ms"
    local t0 = now()
    server:pause()
    return hold, function(c)
        server:resume()
        await_quorum(c, rec)
        chk:cut_off(t0, now())
    end
end

DOMAIN.leader_pause = "ensemble"
kinds.leader_pause = function(c, rng, chk, rec)
    local leader = c.ensemble:leader() or c.ensemble:wait_for_leader(30000)
    return pause_server(leader, chk, rec, rng:int(1500, 5000))
end

DOMAIN.consumer_server_pause = "ensemble"
kinds.consumer_server_pause = function(c, rng, chk, rec)
    local route = c.consumer_proxy:active_route() or rng:int(1, #c.ensemble.members)
    return pause_server(c.ensemble.members[route], chk, rec, rng:int(1500, 5000))
end

DOMAIN.server_kill = "ensemble"
kinds.server_kill = function(c, rng, chk, rec)
    local server = rng:pick(c.ensemble.members)
    local hold = rng:int(500, 3000)
    rec.target, rec.detail = "server " .. server.myid, "down " .. hold .. " ms"
    local t0 = now()
    server:kill()
    return hold, function()
        server:start(60000)
        await_quorum(c, rec)
        chk:cut_off(t0, now())
    end
end

-- The whole registry freezes (RELIABILITY.md §5): once it resumes, every
-- session overdue expires at once, the consumer's and the providers'.
DOMAIN.registry_outage = "ensemble"
kinds.registry_outage = function(c, rng, chk, rec)
    local hold = rng:int(1000, 2 * c.session_ms)
    rec.target, rec.detail = "every server", hold .. " ms"
    local t0 = now()
    for _, m in ipairs(c.ensemble.members) do
        m:pause()
    end
    return hold, function()
        for _, m in ipairs(c.ensemble.members) do
            m:resume()
        end
        await_quorum(c, rec)
        chk:cut_off(t0, now())
    end
end

DOMAIN.provider_pause = "provider"
kinds.provider_pause = function(c, rng, chk, rec)
    local p = rng:pick(c.providers)
    local hold = rng:int(1000, c.bound_ms)
    rec.target, rec.detail = p.name, hold .. " ms"
    process.signal(p.proc.pid, "STOP")
    chk:set_live(p.port, false, now())
    return hold, function()
        process.signal(p.proc.pid, "CONT")
        chk:set_live(p.port, true, now())
    end
end

DOMAIN.provider_kill = "provider"
kinds.provider_kill = function(c, rng, chk, rec)
    local p = rng:pick(c.providers)
    rec.target = p.name
    process.signal(p.proc.pid, "KILL")
    local t0 = now()
    chk:set_live(p.port, false, t0)
    process.wait_dead(p.proc.pid, 5000, p.proc.start_time)
    -- Healed after the round's other fault, whose window may delay the
    -- removal the checker expects.
    rec.late = true
    return 0, function()
        -- Down until the consumer dropped it (or past the bound: then the
        -- checker reports it), so that every kill exercises the removal.
        local deadline = chk:clock_start(t0) + c.bound_ms + 1000
        while now() < deadline and c:consumer_ports()[p.port] do
            process.sleep(50)
        end
        rec.detail = string.format("down %.0f ms", now() - t0)
        c:start_provider(p)
        chk:set_live(p.port, true, now())
        -- It registers once it reaches a quorum, which the round's other
        -- fault may deny until its own heal.
        rec.verify = function(healed)
            local ok = pcall(c.await_registered, c, p, healed + c.bound_ms - now())
            if not ok then
                rec.problem = string.format("%s, restarted, did not register within %d ms after the"
                                            .. " round healed", p.name, c.bound_ms)
            end
        end
    end
end

-- Joins the consumer's session `s` with a second handle and closes that
-- handle once connected (the server then expires the session). Returns
-- "closed" (joined, then closed), "expired" (the server says the session
-- is gone) or "timeout".
local function join_and_close(c, s)
    local outcome
    local intruder = assert(c.loop:zk({
        hosts = c.ensemble.connect_string,
        session = { id = s.id, passwd = hex_to_bytes(s.passwd) },
        on_state = function(z, state)
            if state == "connected" then
                outcome = "joined"
                z:close()
            elseif state == "expired" then
                outcome = "expired"
                z:close()
            elseif state == "closed" and outcome == "joined" then
                outcome = "closed"
            end
        end,
    }))
    helpers.run_until(c.loop, function()
        return outcome == "closed" or (outcome == "expired" and intruder:state() == "closed")
    end, 15000)
    if not intruder:is_closed() then
        intruder:close()
    end
    -- The close runs off the loop; let it finish.
    helpers.run_until(c.loop, function() return intruder:state() == "closed" end, 6000)
    return outcome == "closed" and "closed" or (outcome == "expired" and "expired" or "timeout")
end

DOMAIN.consumer_session_expiry = "consumer"
kinds.consumer_session_expiry = function(c, _, chk, rec)
    c:poll()
    local s = c.sessions[#c.sessions]
    rec.target = "consumer"
    if not s then
        rec.problem = "the consumer printed no session"
        return 0, function() end
    end
    rec.detail = "session " .. s.id
    local t0 = now()
    -- Join the session and close it; then join again to see it expired on
    -- the server, so that a violation below can only be the consumer's.
    local dead = false
    for _ = 1, 3 do
        local outcome = join_and_close(c, s)
        if outcome == "expired" then
            dead = true
            break
        elseif outcome ~= "closed" then
            break
        end
    end
    if not dead then
        -- No quorum to join the session on (another fault of the round).
        rec.detail = rec.detail .. ": skipped, could not expire it"
        return 0, function()
            chk:cut_off(t0, now())
        end
    end
    rec.verify = function(healed)
        -- The consumer must come back on a new session (it prints each)
        -- once every fault of the round is healed: a consumer that is
        -- also cut off learns of the expiry only when it reconnects.
        local deadline = healed + c.bound_ms
        while now() < deadline do
            c:poll()
            if c.sessions[#c.sessions].id ~= s.id then
                break
            end
            process.sleep(50)
        end
        local latest = c.sessions[#c.sessions].id
        if latest == s.id then
            rec.problem = string.format("the consumer kept its expired session %s for %d ms"
                                        .. " after the round healed", s.id, c.bound_ms)
        else
            rec.detail = rec.detail .. string.format(" -> %s after %.0f ms", latest, now() - t0)
        end
        chk:cut_off(t0, now())
    end
    return 0, function()
        chk:cut_off(t0, now())
    end
end

-- A client and its proxy: the consumer's, or a random provider's.
local function pick_client(c, rng)
    if rng:int(1, 2) == 1 then
        return c.consumer_proxy, "consumer"
    end
    local p = rng:pick(c.providers)
    return p.proxy, p.name
end

-- "" (every route) or " INDEX" (one route, 0-based).
local function pick_routes(c, rng)
    if rng:int(1, 3) == 1 then
        return " " .. (rng:int(1, #c.ensemble.members) - 1)
    end
    return ""
end

local function route_text(routes)
    return routes == "" and "all routes" or "route" .. routes
end

-- Puts a proxy command in place until the heal sends "pass".
local function proxy_fault(px, who, chk, command, hold)
    local t0 = now()
    px:must(command)
    return hold, function()
        px:must("pass")
        if who == "consumer" then
            chk:cut_off(t0, now())
        end
    end
end

DOMAIN.proxy_delay = "network"
kinds.proxy_delay = function(c, rng, chk, rec)
    local px, who = pick_client(c, rng)
    local ms, hold, routes = rng:int(50, 1500), rng:int(2000, 5000), pick_routes(c, rng)
    rec.target = who
    rec.detail = string.format("delay %d ms for %d ms on %s", ms, hold, route_text(routes))
    return proxy_fault(px, who, chk, "delay " .. ms .. routes, hold)
end

DOMAIN.proxy_blackhole = "network"
kinds.proxy_blackhole = function(c, rng, chk, rec)
    local px, who = pick_client(c, rng)
    local hold, routes = rng:int(1000, 2 * c.session_ms), pick_routes(c, rng)
    rec.target = who
    rec.detail = string.format("blackhole %d ms on %s", hold, route_text(routes))
    return proxy_fault(px, who, chk, "blackhole" .. routes, hold)
end

DOMAIN.proxy_reset = "network"
kinds.proxy_reset = function(c, rng, chk, rec)
    local px, who = pick_client(c, rng)
    rec.target, rec.detail = who, "reset every connection"
    return proxy_fault(px, who, chk, "reset", 0)
end

--- The fault kinds, in a fixed order (the generator indexes it).
_M.KINDS = { "leader_pause", "consumer_server_pause", "server_kill", "provider_pause",
             "provider_kill", "consumer_session_expiry", "proxy_delay", "proxy_blackhole",
             "proxy_reset", "registry_outage" }
_M.DOMAIN = DOMAIN

--- Injects the faults of `kind_list` (of different domains) together,
-- holds each for its time, heals them in the order their holds end, then
-- runs the checks that need the whole round healed.
-- Returns their records `{ kind =, target =, detail =, t_inject =,
-- t_heal =, problem = }`.
function _M.run(kind_list, c, rng, chk)
    local recs, pending = {}, {}
    -- An expiry goes first: joining the session needs a quorum, which the
    -- other fault may take away.
    local ordered = {}
    for i, kind in ipairs(kind_list) do
        ordered[i] = kind
    end
    table.sort(ordered, function(a, b)
        return (DOMAIN[a] == "consumer" and 0 or 1) < (DOMAIN[b] == "consumer" and 0 or 1)
    end)
    for i, kind in ipairs(ordered) do
        local rec = { kind = kind, t_inject = now() }
        local hold, heal = kinds[kind](c, rng, chk, rec)
        recs[i] = rec
        pending[i] = { at = rec.t_inject + hold, heal = heal, rec = rec }
    end
    table.sort(pending, function(a, b)
        if (a.rec.late or false) ~= (b.rec.late or false) then
            return not a.rec.late
        end
        return a.at < b.at
    end)
    for _, p in ipairs(pending) do
        sleep_until(p.at)
        p.heal(c)
        p.rec.t_heal = now()
    end
    -- Checks that need the whole round healed (rec.verify(healed_at)).
    local healed = now()
    for _, rec in ipairs(recs) do
        if rec.verify then
            rec.verify(healed)
            rec.verify = nil
        end
    end
    return recs
end

return _M
