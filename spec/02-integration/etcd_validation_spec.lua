-- The offline validation scenarios of validation_scenarios_spec, on etcd:
-- a provider replaced at the same address by another process is never
-- dropped by the old one's unregister, and the killed replacement is
-- removed once its lease expires and the probe is refused; a provider
-- paused past its lease's TTL is removed, and added back when it resumes
-- (its lease lost, it registers again under a new one).
local disco = require "disco"
local etcd = require "spec.support.etcd"
local helpers = require "spec.helpers"
local ports = require "disco.testing.ports"
local process = require "disco.testing.process"
local regspec = require "spec.support.registry"
local run_all, call = regspec.run_all, regspec.call

local IFACE = "com.acme.Cart"
local SID = "dubbo:" .. IFACE .. ":1.0.0"
local TTL_MS = 2000
local PROBE_MS = 1500 -- health/dubbo_probe's timeout here
local MARGIN_MS = 2000
-- The last keepalive came at most a third of the TTL before a kill.
local EARLIEST_EXPIRY_MS = TTL_MS - TTL_MS / 3

local now = helpers.core.hrtime

describe("offline validation scenarios #etcd", function()
    local url, prefix, rts, procs

    teardown(etcd.teardown)

    local function runtime()
        local rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        rts[#rts + 1] = rt
        return rt
    end

    before_each(function()
        url, prefix = etcd.url("valsc", "ttl=" .. TTL_MS / 1000)
        rts, procs = {}, {}
    end)

    after_each(function()
        etcd.clean_up(rts, procs)
    end)

    local function spawn_provider(list, port, method)
        local log = helpers.tmpdir() .. "/provide.log"
        local proc = process.spawn({ argv = etcd.disco_argv({ "provide", "--registry", url,
            "--app", "shop", "--host", "127.0.0.1", "--port", tostring(port),
            "--service", IFACE .. ":1.0.0", "--method", method, "--storage", "local" }), log = log })
        procs[#procs + 1] = proc
        assert.is_true(run_all(list, function()
            return (helpers.read_file(log) or ""):match("registered[^\n]*") ~= nil
        end, 20000), "disco provide did not register: " .. (helpers.read_file(log) or ""))
        return proc
    end

    -- A consumer of SID recording every list and every validation reason.
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
        function obs.first_with(port, pattern)
            for i, rec in ipairs(obs.lists) do
                for _, u in ipairs(rec.urls) do
                    if u:find(":" .. port .. "/", 1, true) and u:find(pattern, 1, true) then
                        return i
                    end
                end
            end
        end
        function obs.always(port, from)
            for i = from, #obs.lists do
                if not obs.lists[i].ports[port] then
                    return false, "list " .. i .. " of " .. #obs.lists .. " lacks port " .. port
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

    -- The lease a key is bound to now (etcdctl's JSON), or nil.
    local function key_lease(key)
        local out = assert(etcd.server():ctl({ "get", key, "-w", "json" }))
        return out:match('"lease":(%d+)')
    end

    it("keeps an address replaced by another process, and removes it once that one dies", function()
        local prt, crt = runtime(), runtime()
        local list = { prt, crt }
        local port = ports.pick_port()
        local m = prt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = port,
                                 storage = "local", mapping = false })
        m:export({ interface = IFACE, version = "1.0.0", methods = { "get" } })
        local started
        m:start(function(e) started = { e } end)
        assert.is_true(run_all(list, function() return started ~= nil end, 10000))
        assert.is_nil(started[1])
        local obs = observe(crt)
        assert.is_true(run_all(list, function() return obs.has(port) end, 10000), "M never listed")
        local registry = prt:registry_of(url)
        local m_lease = registry.stats().lease

        -- M stops listening (its registration stays); N takes the address.
        m.metadata_server:close()
        local n = spawn_provider(list, port, "charge")
        assert.is_true(run_all(list, function() return obs.first_with(port, "methods=charge") end, 15000),
                       "N never listed; reasons: " .. obs.explain())

        -- M unregisters: the key is N's now, and stays.
        assert.matches("^ENOTOWNER: ", call(list, registry.unregister, m.instance))
        local key = prefix .. "/services/shop/127.0.0.1:" .. port
        local lease = key_lease(key)
        assert.is_not_nil(lease)
        assert.is_not.equal(m_lease, lease)
        run_all(list, function() return false end, PROBE_MS + 1000)
        assert.is_true(obs.always(port, 1))
        assert.equal(0, obs.consumer:validation_stats().removed)

        -- N dies: gone once its lease expires and the probe is refused.
        assert.is_true(process.signal(n.pid, "KILL"))
        local killed = now()
        assert.is_true(run_all(list, function() return not obs.has(port) end,
                               TTL_MS + PROBE_MS + MARGIN_MS + 2000),
                       "N still listed; reasons: " .. obs.explain())
        local took = obs.last().t - killed
        assert.is_true(took < TTL_MS + PROBE_MS + MARGIN_MS, "removal took " .. took .. " ms")
        assert.is_true(took >= EARLIEST_EXPIRY_MS - 100, "removed after " .. took .. " ms, before the expiry")
        assert.matches("health/dubbo_probe", obs.reasons[#obs.reasons].reason, 1, true)
        -- The replacement reached the consumer as an update (one revision
        -- overwrote the key), so the chain ran for the kill only.
        local st = obs.consumer:validation_stats()
        assert.equal(1, st.removed)
        assert.equal(0, st.kept_total)
        assert.equal(0, st.errors)
    end)

    it("removes a provider paused past its lease, and adds it back under a new lease", function()
        local crt = runtime()
        local port = ports.pick_port()
        local obs = observe(crt)
        local n = spawn_provider({ crt }, port, "get")
        assert.is_true(run_all({ crt }, function() return obs.has(port) end, 10000), "never listed")
        local key = prefix .. "/services/shop/127.0.0.1:" .. port
        local old_lease = key_lease(key)
        assert.is_not_nil(old_lease)

        assert.is_true(process.signal(n.pid, "STOP"))
        local stopped = now()
        assert.is_true(run_all({ crt }, function() return not obs.has(port) end,
                               TTL_MS + PROBE_MS + MARGIN_MS + 2000),
                       "a stopped provider stayed listed; reasons: " .. obs.explain())
        local took = obs.last().t - stopped
        assert.is_true(took >= EARLIEST_EXPIRY_MS - 100, "removed after " .. took .. " ms, before the expiry")
        assert.matches("health/dubbo_probe", obs.reasons[#obs.reasons].reason, 1, true)
        assert.is_nil(key_lease(key))

        -- Resumed: its next keepalive finds the lease gone; it registers
        -- again under a new lease and the consumer lists it again.
        assert.is_true(process.signal(n.pid, "CONT"))
        assert.is_true(run_all({ crt }, function() return obs.has(port) end, TTL_MS + 5000),
                       "not back; reasons: " .. obs.explain())
        local new_lease = key_lease(key)
        assert.is_not_nil(new_lease)
        assert.is_not.equal(old_lease, new_lease)

        assert.is_true(process.signal(n.pid, "TERM"))
        assert.is_true(process.wait_dead(n.pid, 10000, n.start_time))
    end)
end)
