-- Offline validation against a real ZooKeeper (issue 7; DESIGN.md §2,
-- RELIABILITY.md §3 rows 8 and 10, WIRE.md §8 issue 1141): a provider
-- replaced at the same address by another process is never dropped by the
-- old one's delete or unregister, and a killed replacement is removed
-- within the session timeout plus the probe timeout; a forced session
-- expiry (delete and re-create, seen live or coalesced) never empties the
-- list; a provider paused past its session timeout is removed after the
-- probe times out and added back within 1 s of its re-registration; and a
-- validation rule reloaded live while the replacement runs removes nothing.
local flows = require "spec.support.flows"
local helpers = require "spec.helpers"
local ports = require "disco.testing.ports"
local process = require "disco.testing.process"
local regspec = require "spec.support.registry"
local run_all, call = regspec.run_all, regspec.call

local IFACE = "com.acme.Cart"
local SID = "dubbo:" .. IFACE .. ":1.0.0"
local SESSION_MS = 4000 -- the least the server accepts (tickTime 2000)
local PROBE_MS = 1500   -- health/dubbo_probe's timeout here
-- The server expires sessions in tick buckets: allow two ticks on top.
local MARGIN_MS = 4000
-- The earliest a killed provider's session can expire after the kill: the
-- session was last touched by the client's ping, sent after a third of the
-- timeout of quiet, so the timeout may have been running for that long.
local EARLIEST_EXPIRY_MS = SESSION_MS - SESSION_MS / 3

local now = helpers.core.hrtime

describe("offline validation scenarios #zookeeper", function()
    local fx = flows.fixture("valsc")
    local runtime = fx.runtime
    local url, procs

    before_each(function()
        fx.setup()
        url = "zookeeper://" .. helpers.zookeeper().connect_string .. "?session_timeout="
            .. SESSION_MS .. "&root=" .. fx.root
        procs = {}
    end)

    after_each(function()
        -- Only the processes this spec started, by pid.
        for _, proc in ipairs(procs) do
            if process.alive(proc.pid, proc.start_time) then
                process.signal(proc.pid, "CONT")
                process.signal(proc.pid, "KILL")
                process.wait_dead(proc.pid, 5000, proc.start_time)
            end
        end
        fx.teardown()
    end)

    -- `disco provide` on `port` (methods `method`, local storage), the
    -- loops of `rts` driven meanwhile; returns the process once it printed
    -- its "registered" line.
    local function spawn_provider(rts, port, method)
        local log = helpers.tmpdir() .. "/provide.log"
        local proc = process.spawn({ argv = { helpers.disco_bin, "provide", "--registry", url,
            "--app", "shop", "--host", "127.0.0.1", "--port", tostring(port),
            "--service", IFACE .. ":1.0.0", "--method", method, "--storage", "local" }, log = log })
        procs[#procs + 1] = proc
        local registered = run_all(rts, function()
            return (helpers.read_file(log) or ""):match("registered[^\n]*") ~= nil
        end, 20000)
        assert.is_true(registered, "disco provide did not register: " .. (helpers.read_file(log) or ""))
        return proc
    end

    -- A consumer of SID on `rt` recording every list it delivers and the
    -- reasons of every validation decision.
    local function observe(rt)
        local consumer = rt:consumer({ registry = url, validation = {
            conf = { ["health/dubbo_probe"] = { timeout_ms = PROBE_MS } } } })
        local obs = { lists = {}, reasons = {}, consumer = consumer }
        rt:on("ServiceInstancesChanged", function(e)
            for addr, why in pairs(e.reasons or {}) do
                obs.reasons[#obs.reasons + 1] = { t = now(), address = addr, reason = why }
            end
        end)
        consumer:subscribe(SID, function(_, list)
            local rec = { t = now(), ports = {}, urls = {} }
            for _, entry in ipairs(list) do
                rec.ports[entry.port] = true
                rec.urls[#rec.urls + 1] = entry.url
            end
            obs.lists[#obs.lists + 1] = rec
        end, { provided_by = { "shop" } })
        function obs.last()
            return obs.lists[#obs.lists]
        end
        function obs.has(port)
            local last = obs.last()
            return last ~= nil and last.ports[port] == true
        end
        -- The index of the first list with a URL at `port` matching `pattern`.
        function obs.first_with(port, pattern)
            for i, rec in ipairs(obs.lists) do
                for _, u in ipairs(rec.urls) do
                    if u:find(":" .. port .. "/", 1, true) and u:find(pattern, 1, true) then
                        return i
                    end
                end
            end
        end
        -- Every list from the `from`-th on has `port`; else the offender.
        function obs.always(port, from)
            for i = from, #obs.lists do
                if not obs.lists[i].ports[port] then
                    return false, "list " .. i .. " of " .. #obs.lists .. " lacks port " .. port
                        .. "; reasons: " .. obs.explain()
                end
            end
            return true
        end
        function obs.explain()
            local out = {}
            for _, r in ipairs(obs.reasons) do
                out[#out + 1] = r.address .. " " .. r.reason
            end
            return table.concat(out, " | ")
        end
        return obs
    end

    -- Scenario 1 (and 7 with `reload`): M at 127.0.0.1:P, replaced by a
    -- `disco provide` process N at P; M unregisters; N is killed.
    local function replacement(reload)
        local prt, crt = runtime(), runtime()
        local rts = { prt, crt }
        local port = ports.pick_port()
        local m = prt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = port,
                                 storage = "local", mapping = false })
        m:export({ interface = IFACE, version = "1.0.0", methods = { "get" } })
        assert.is_nil(fx.start(m, rts))
        local obs = observe(crt)
        assert.is_true(run_all(rts, function() return obs.has(port) end, 10000), "M never listed")
        local m_owner = prt:registry_of(url).session():session_id()

        local reloads, reload_failures = 0, {}
        local function do_reload()
            local ok, err = crt:reload("validation/registration_identity", {})
            reloads = reloads + 1
            if not ok then
                reload_failures[#reload_failures + 1] = tostring(err)
            end
        end
        if reload then
            -- Live replacement of the rule: on a timer, and right when the
            -- consumer hands removals to the chain.
            local timer
            local function tick()
                do_reload()
                timer = crt:after(25, tick)
            end
            timer = crt:after(25, tick)
            finally(function()
                if timer and not timer:is_closed() then
                    timer:close()
                end
            end)
            crt:on("ServiceInstancesChanged", function(e)
                if e.validating and #e.validating > 0 then
                    do_reload()
                end
            end)
        end

        -- M stops listening (its registration stays); N takes the address.
        m.metadata_server:close()
        local n = spawn_provider(rts, port, "charge")
        assert.is_true(run_all(rts, function() return obs.first_with(port, "methods=charge") end, 15000),
                       "N never listed; reasons: " .. obs.explain())
        local n_first = obs.first_with(port, "methods=charge")

        -- M unregisters: N's node is not M's to delete.
        local registry = prt:registry_of(url)
        local uerr = call(rts, registry.unregister, m.instance)
        assert.matches("^ENOTOWNER: ", uerr)
        local raw = assert(crt.loop:zk({ hosts = helpers.zookeeper().connect_string }))
        finally(function() raw:close() end)
        local gerr, node = call(rts, raw.get, raw, fx.root .. "/shop/127.0.0.1:" .. port, nil)
        assert.is_nil(gerr)
        assert.is_not.equal(m_owner, node.stat.ephemeral_owner)
        -- N's revision (its methods differ), not M's.
        assert.is_nil(node.data:find(m.revision, 1, true))
        assert.matches('"dubbo.metadata.revision"', node.data, 1, true)
        -- Long enough for any delete the consumer saw to be validated.
        run_all(rts, function() return false end, PROBE_MS + 1000)
        assert.is_true(obs.always(port, 1))
        assert.is_true(#obs.lists >= n_first)
        assert.equal(0, obs.consumer:validation_stats().removed)

        -- N dies: gone after its session expires and the probe is refused.
        assert.is_true(process.signal(n.pid, "KILL"))
        local killed = now()
        assert.is_true(run_all(rts, function() return not obs.has(port) end,
                               SESSION_MS + PROBE_MS + MARGIN_MS + 2000),
                       "N still listed; reasons: " .. obs.explain())
        local took = obs.last().t - killed
        assert.is_true(took < SESSION_MS + PROBE_MS + MARGIN_MS, "removal took " .. took .. " ms")
        assert.is_true(took >= EARLIEST_EXPIRY_MS - 100, "removed after " .. took .. " ms, before the expiry")
        assert.matches("health/dubbo_probe", obs.reasons[#obs.reasons].reason, 1, true)
        -- The replacement itself reached the consumer as an update (the
        -- registry's cache compares czxids), so the chain ran for the kill
        -- only: one removal, every rule found and answering.
        local st = obs.consumer:validation_stats()
        assert.equal(1, st.removed)
        assert.equal(0, st.kept_total)
        assert.equal(0, st.errors)
        if reload then
            assert.is_true(reloads > 10, "only " .. reloads .. " reloads")
            assert.same({}, reload_failures)
            assert.is_not_nil(crt.plugins:get("validation/registration_identity"))
        end
        return obs
    end

    it("keeps an address replaced by another process, and removes it once that one dies", function()
        replacement(false)
    end)

    it("removes nothing wrongly while validation/registration_identity is reloaded live", function()
        replacement(true)
    end)

    -- Scenario 2: the provider's session is expired by the server (its
    -- node deleted) and re-created by the new session; `paused` holds the
    -- consumer's loop meanwhile, so that it sees both at once.
    local function expiry(paused)
        local prt, crt = runtime(), runtime()
        local rts = { prt, crt }
        local port = ports.pick_port()
        local p = prt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = port,
                                 storage = "local", mapping = false })
        p:export({ interface = IFACE, version = "1.0.0", methods = { "get" } })
        assert.is_nil(fx.start(p, rts))
        local obs = observe(crt)
        assert.is_true(run_all(rts, function() return obs.has(port) end, 10000), "never listed")
        local zk = prt:registry_of(url).session()
        local old_owner = zk:session_id()

        -- Join the provider's session with a second handle and close it:
        -- the server expires the session (retried if the provider's own
        -- handle took the session back first).
        local driven = paused and { prt } or rts
        local function kill_session()
            local id, passwd = assert(zk:debug_session())
            local closed = false
            assert(prt.loop:zk({
                hosts = helpers.zookeeper().connect_string,
                session = { id = id, passwd = passwd },
                on_state = function(intruder, state)
                    if state == "connected" then
                        intruder:close()
                    elseif state == "closed" then
                        closed = true
                    end
                end,
            }))
            assert(run_all(driven, function() return closed end, 10000))
            return run_all(driven, function() return zk:generation() > 1 end, 10000)
        end
        for _ = 1, 3 do
            if kill_session() then
                break
            end
        end
        assert.is_true(zk:generation() > 1, "the session never expired")
        local raw = assert(prt.loop:zk({ hosts = helpers.zookeeper().connect_string }))
        finally(function() raw:close() end)
        local path = fx.root .. "/shop/127.0.0.1:" .. port
        assert.is_true(run_all(driven, function()
            local box
            raw:get(path, nil, function(err, r) box = { err = err, r = r } end)
            run_all(driven, function() return box ~= nil end, 5000)
            return box and not box.err and box.r.stat.ephemeral_owner == zk:session_id()
        end, 20000), "never re-registered")
        -- The consumer catches up (at once, when it was held).
        run_all(rts, function() return false end, PROBE_MS + 1000)
        assert.is_true(obs.has(port))
        assert.is_true(obs.always(port, 1))
        local st = obs.consumer:validation_stats()
        assert.equal(0, st.removed, obs.explain())
        -- Any delete the consumer saw was kept by a rule, with its reason.
        assert.equal(st.validations, st.kept_total, obs.explain())
        for _, r in ipairs(obs.reasons) do
            assert.is_nil(r.reason:match("removed"), r.reason)
        end
        local owner = obs.consumer.apps.shop.registered[1].identity.owner
        assert.is_not.equal(old_owner, owner)
        assert.equal(zk:session_id(), owner)
        return st
    end

    it("never drops a provider whose session expired and re-registered (consumer live)", function()
        expiry(false)
    end)

    it("never drops a provider whose delete and re-create reach a held consumer together", function()
        expiry(true)
    end)

    it("removes a provider paused past its session timeout, and adds it back within 1 s", function()
        local crt = runtime()
        local rts = { crt }
        local port = ports.pick_port()
        local obs = observe(crt)
        local n = spawn_provider(rts, port, "get")
        assert.is_true(run_all(rts, function() return obs.has(port) end, 10000), "never listed")

        assert.is_true(process.signal(n.pid, "STOP"))
        local stopped = now()
        assert.is_true(run_all(rts, function() return not obs.has(port) end,
                               SESSION_MS + PROBE_MS + MARGIN_MS + 4000),
                       "a stopped provider stayed listed; reasons: " .. obs.explain())
        local took = obs.last().t - stopped
        assert.is_true(took >= SESSION_MS, "removed after " .. took .. " ms, before the expiry")
        local why = obs.reasons[#obs.reasons].reason
        assert.matches("health/dubbo_probe", why, 1, true)

        -- The node is gone; watch for its re-creation.
        local raw = assert(crt.loop:zk({ hosts = helpers.zookeeper().connect_string }))
        finally(function() raw:close() end)
        local path = fx.root .. "/shop/127.0.0.1:" .. port
        local created_at
        local eerr = call(rts, raw.exists, raw, path, { watch = function(ev)
            if ev.type == "created" then
                created_at = now()
            end
        end })
        assert.matches("^ENONODE", eerr)

        local listed_before = #obs.lists
        assert.is_true(process.signal(n.pid, "CONT"))
        assert.is_true(run_all(rts, function()
            return created_at ~= nil and obs.has(port)
        end, 30000), "not back: created " .. tostring(created_at))
        local back
        for i = listed_before + 1, #obs.lists do
            if obs.lists[i].ports[port] then
                back = obs.lists[i].t
                break
            end
        end
        local lag = back - created_at
        assert.is_true(lag < 1000 + 250, "added back " .. lag .. " ms after its registration")

        assert.is_true(process.signal(n.pid, "TERM"))
        assert.is_true(process.wait_dead(n.pid, 10000, n.start_time))
    end)
end)
