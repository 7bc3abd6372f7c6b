-- The chaos suite (issue 9; RELIABILITY.md §3-§5): a 3-server ZooKeeper
-- ensemble on loopback, three `disco provide` processes and one consumer
-- process, every client behind its own fault_proxy. Rounds of random
-- faults (pauses and kills of the leader, of the consumer's server, of
-- servers and providers; forced session expiry; delays, blackholes and
-- resets through the proxies); after each, heal, let it settle (bounded)
-- and reconcile the consumer's view with a fresh read of ZooKeeper and the
-- providers' real liveness. See docs/testing.md, "Chaos suite".
--
-- CHAOS_ROUNDS (default 4: the short run of `make test`), CHAOS_MINUTES
-- (a bound on the whole run, default 30), CHAOS_SEED (default: from the
-- clock; printed, so any run can be replayed), CHAOS_KINDS (only these
-- fault kinds, comma-separated), CHAOS_REPORT (a file that receives the
-- summary too). `make chaos` runs the long version.
local helpers = require "spec.helpers"
local checker = require "spec.support.chaos.checker"
local cluster = require "spec.support.chaos.cluster"
local faults = require "spec.support.chaos.faults"
local report = require "spec.support.chaos.report"

local SESSION_MS = 3000 -- clients' session timeout (tickTime 500: 1000-10000)
local PROBE_MS = 1500   -- health/dubbo_probe's timeout
-- Expiry runs in tick buckets and a paused or killed client's session may
-- have been touched up to a third of the timeout late; the chain may have
-- kept an instance for one period (the session timeout) just before it
-- died; processes on a loaded 2-core box (ASan) are slow.
local MARGIN_MS = 5000
local BOUND_MS = SESSION_MS + PROBE_MS + MARGIN_MS
-- Bounds of the consumer's resources over a run (after the first round).
local MAX_FD_GROWTH = 16
local MAX_RSS_GROWTH_KB = (os.getenv("SANITIZE") == "1" and 96 or 32) * 1024

local now = helpers.core.hrtime

local function env_number(name, default)
    local v = tonumber(os.getenv(name) or "")
    return v or default
end

describe("chaos #chaos", function()
    local c

    after_each(function()
        if c then
            c:stop_all()
            c = nil
        end
    end)

    it("keeps the consumer's view true to the registry and the providers' liveness", function()
        local rounds = env_number("CHAOS_ROUNDS", 4)
        local minutes = env_number("CHAOS_MINUTES", 30)
        local seed = env_number("CHAOS_SEED", os.time() % 1000000)
        local short = rounds <= #faults.KINDS
        local rng = faults.rng(seed)
        local rep = report.new(seed, rounds, BOUND_MS)
        print(string.format("chaos: seed %d, %d rounds, bound %d ms (replay: CHAOS_SEED=%d)",
                            seed, rounds, BOUND_MS, seed))

        c = cluster.new({ providers = 3, session_ms = SESSION_MS, probe_ms = PROBE_MS })
        c.bound_ms = BOUND_MS
        c:start()
        local provider_ports = {}
        for i, p in ipairs(c.providers) do
            provider_ports[i] = p.port
        end
        local chk = checker.new(BOUND_MS, provider_ports)
        chk:cut_off(c.consumer_started, now())
        local run_deadline = now() + minutes * 60000 - 2 * BOUND_MS
        local fd0, rss0

        -- CHAOS_KINDS (comma-separated) narrows the kinds. The short run
        -- takes distinct kinds (a shuffled deck), the long one draws with
        -- replacement.
        local deck = {}
        for _, k in ipairs(faults.KINDS) do
            local only = os.getenv("CHAOS_KINDS")
            if not only or only == "" or ("," .. only .. ","):find("," .. k .. ",", 1, true) then
                deck[#deck + 1] = k
            end
        end
        assert(#deck > 0, "CHAOS_KINDS names no fault kind; kinds: " .. table.concat(faults.KINDS, ","))
        local kinds = {}
        for i, k in ipairs(deck) do
            kinds[i] = k
        end
        for i = #deck, 2, -1 do
            local j = rng:int(1, i)
            deck[i], deck[j] = deck[j], deck[i]
        end

        for round = 1, rounds do
            if now() > run_deadline then
                rep:note("stopped after " .. (round - 1) .. " rounds: CHAOS_MINUTES reached")
                break
            end
            -- The long run combines two faults of different domains in a
            -- third of its rounds.
            local plan = { short and deck[(round - 1) % #deck + 1] or rng:pick(kinds) }
            if not short and rng:int(1, 3) == 1 then
                local others = {}
                for _, k in ipairs(kinds) do
                    if faults.DOMAIN[k] ~= faults.DOMAIN[plan[1]] then
                        others[#others + 1] = k
                    end
                end
                if #others > 0 then
                    plan[2] = rng:pick(others)
                end
            end
            local kind = table.concat(plan, "+")
            local lists_before = #c.lists
            local rec = { round = round, kind = kind, faults = faults.run(plan, c, rng, chk) }
            rec.t_inject, rec.t_heal = math.huge, 0
            for _, f in ipairs(rec.faults) do
                rec.t_inject = math.min(rec.t_inject, f.t_inject)
                rec.t_heal = math.max(rec.t_heal, f.t_heal)
            end

            -- Settle: until the consumer, ZooKeeper and the providers agree,
            -- bounded by the checker's clocks.
            local live = {}
            for _, p in ipairs(c.providers) do
                live[p.port] = true
            end
            local deadline = rec.t_heal + BOUND_MS + 1000
            local zk_problem
            local violations = {}
            while true do
                c:poll()
                local found, open = chk:check(c.lists, now())
                for _, v in ipairs(found) do
                    violations[#violations + 1] = v
                end
                for _, m in ipairs(open) do
                    deadline = math.max(deadline, m.deadline + 1000)
                end
                local zk, zerr = c:zk_instances()
                zk_problem = nil
                if not zk then
                    zk_problem = "registry read failed: " .. tostring(zerr)
                else
                    for port in pairs(live) do
                        if not zk[port] then
                            zk_problem = "live provider " .. port .. " not registered in ZooKeeper"
                        end
                    end
                    for port in pairs(zk) do
                        if not live[port] then
                            zk_problem = "ZooKeeper lists " .. port .. ", no live provider there"
                        end
                    end
                end
                if zk_problem and zk_problem ~= rec.slow_zk then
                    -- What kept ZooKeeper unsettled longest, for the report.
                    rec.slow_zk = zk_problem
                    rec.slow_zk_ms = now() - rec.t_heal
                end
                if #open == 0 and not zk_problem then
                    break
                end
                if now() > deadline then
                    break
                end
                -- The test's own session recovers on its loop.
                helpers.run_until(c.loop, function() return false end, 200)
            end
            rec.settled_ms = now() - rec.t_heal
            for _, f in ipairs(rec.faults) do
                if f.problem then
                    rep:violation(round, kind, f.problem)
                end
            end
            for _, v in ipairs(chk:check(c.lists, now())) do
                violations[#violations + 1] = v
            end
            for _, v in ipairs(violations) do
                rep:violation(round, kind, v.text)
            end
            if zk_problem then
                rep:violation(round, kind, zk_problem)
            end

            -- Real liveness, crashes and resources.
            for _, p in ipairs(c.providers) do
                if not c:provider_answers(p, PROBE_MS) then
                    rep:violation(round, kind, p.name .. " (port " .. p.port
                                  .. ") is not running or does not answer a heartbeat")
                end
            end
            if not c:proc_running(c.consumer) then
                rep:violation(round, kind, "the consumer died:\n" .. c:consumer_tail())
                rep:add_round(rec)
                break
            end
            for _, m in ipairs(c.ensemble.members) do
                if not m:running() then
                    rep:violation(round, kind, "server " .. m.myid .. " died")
                end
            end
            for name, px in pairs(c.proxies) do
                if not px:alive() then
                    rep:violation(round, kind, "fault_proxy " .. name .. " died")
                end
            end
            for _, line in ipairs(c:broken_lines()) do
                rep:violation(round, kind, line)
            end
            local fds, rss = c:consumer_resources()
            if round == 1 then
                fd0, rss0 = fds, rss
            elseif fds and rss then
                if fds - fd0 > MAX_FD_GROWTH then
                    rep:violation(round, kind, string.format("consumer fds grew from %d to %d", fd0, fds))
                end
                if rss - rss0 > MAX_RSS_GROWTH_KB then
                    rep:violation(round, kind, string.format("consumer RSS grew from %d to %d KiB", rss0, rss))
                end
            end
            rec.fds, rec.rss = fds, rss
            rec.lists = #c.lists - lists_before
            rep:add_round(rec)
            print(rep:round_line(rec))
        end

        -- The end: an orderly stop must still work after all that.
        if c:proc_running(c.consumer) then
            for _, problem in ipairs(c:shutdown()) do
                rep:violation(#rep.rounds, "shutdown", problem)
            end
            for _, line in ipairs(c:broken_lines()) do
                rep:violation(#rep.rounds, "shutdown", line)
            end
        end

        local summary = rep:summary()
        print(summary)
        if #rep.violations > 0 then
            local kept = (os.getenv("BUILD") or "build") .. "/chaos/failed-seed-" .. seed
            c:keep_logs(kept)
            print("chaos: logs of the failed run kept in " .. kept)
        end
        local path = os.getenv("CHAOS_REPORT")
        if path and path ~= "" then
            helpers.write_file(path, summary .. "\n")
        end
        assert.equal(0, #rep.violations, summary .. "\n--- consumer output (tail) ---\n" .. c:consumer_tail())
    end)
end)
