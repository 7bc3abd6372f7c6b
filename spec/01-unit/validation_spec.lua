-- The offline validation chain (disco.validation) and its rules on the
-- memory registry: order, defer/keep/remove, rules that raise, answer
-- garbage or time out, hot reload of a rule, recent_call,
-- registration_identity, dubbo_probe against a real local dubbo server,
-- and the consumer keeping a removed instance until the chain removes it.
local plugins = require "spec.support.plugins"
local ports = require "disco.testing.ports"
local validation = require "disco.validation"
local regspec = require "spec.support.registry"
local run_all = regspec.run_all

local CWD = os.getenv("PWD") or "."
local IFACE = "com.acme.Cart"
local SID = "dubbo:" .. IFACE .. ":1.0.0"

-- A validation rule answering `verdict` (or running `body`, Lua source of
-- validate(req, cb)) and recording its calls in the shared `calls` list.
local function rule(name, body)
    return string.format([[
local M = { name = %q, version = "1.0.0", kind = "validation" }
local calls = require("disco.validation_test_calls")
function M.init() end
function M.validate(req, cb)
    calls[#calls + 1] = M.name
    %s
end
return M
]], name, body)
end

local store_seq = 0

describe("the validation chain", function()
    local root, rt, calls

    before_each(function()
        root = plugins.root()
        rt = plugins.runtime(root, { log_level = "error" })
        rt.plugins:add_path(CWD .. "/plugins")
        calls = {}
        package.loaded["disco.validation_test_calls"] = calls
    end)

    after_each(function()
        rt:close()
        package.loaded["disco.validation_test_calls"] = nil
    end)

    local function write(name, body)
        plugins.write(root, "validation/" .. name, rule(name, body))
    end

    local function decide(chain, req)
        local decision
        chain:validate(req, function(d) decision = d end)
        assert.is_true(run_all({ rt }, function() return decision ~= nil end, 5000), "no decision")
        return decision
    end

    local inst = { name = "shop", host = "127.0.0.1", port = 20880, metadata = {},
                   id = "127.0.0.1:20880", identity = { created = 1, modified = 1, owner = 7 } }

    it("asks its rules in order and stops at the first keep or remove", function()
        write("a", 'cb({ verdict = "defer" })')
        write("b", 'cb({ verdict = "keep", reason = "b says so", until_ms = req.now + 10 })')
        write("c", 'cb({ verdict = "remove", reason = "c" })')
        local chain = assert(validation.new(rt, { rules = { "validation/a", "validation/b",
                                                           "validation/c" } }))
        local d = decide(chain, { instance = inst })
        assert.equal("keep", d.verdict)
        assert.equal("validation/b", d.rule)
        assert.equal("b says so", d.reason)
        assert.is_number(d.until_ms)
        assert.same({ "a", "b" }, calls)
        local st = chain:stats()
        assert.equal(1, st.kept["validation/b"])
        assert.equal(1, st.deferred)
        assert.equal(0, st.removed)
        assert.equal(0, st.errors)
    end)

    it("removes when every rule defers", function()
        write("a", 'cb({ verdict = "defer" })')
        write("b", 'cb({ verdict = "defer" })')
        local chain = assert(validation.new(rt, { rules = { "validation/a", "validation/b" } }))
        local d = decide(chain, { instance = inst })
        assert.equal("remove", d.verdict)
        assert.is_nil(d.rule)
        assert.same({ "a", "b" }, calls)
        assert.equal(1, chain:stats().removed)
        assert.same({ [validation.END_OF_CHAIN] = 1 }, chain:stats().removed_by)
        assert.equal(2, chain:stats().deferred)
        -- A rule's own remove is counted under its name.
        write("c", 'cb({ verdict = "remove", reason = "c" })')
        local by_c = assert(validation.new(rt, { rules = { "validation/a", "validation/c" } }))
        assert.equal("remove", decide(by_c, { instance = inst }).verdict)
        assert.same({ ["validation/c"] = 1 }, by_c:stats().removed_by)
    end)

    it("counts a rule that raises or answers garbage as defer, and logs it", function()
        write("boom", 'error("kaput")')
        write("junk", 'cb("yes please")')
        write("late", 'cb({ verdict = "maybe" })')
        write("no", 'cb({ verdict = "remove", reason = "gone" })')
        local chain = assert(validation.new(rt, { rules = { "validation/boom", "validation/junk",
                                                           "validation/late", "validation/no" } }))
        local d = decide(chain, { instance = inst })
        assert.equal("remove", d.verdict)
        assert.equal("validation/no", d.rule)
        assert.same({ "boom", "junk", "late", "no" }, calls)
        assert.equal(3, chain:stats().errors)
        local logged = {}
        for _, line in ipairs(rt.logged) do
            logged[#logged + 1] = line.message
        end
        logged = table.concat(logged, "\n")
        assert.matches("validation/boom raised", logged, 1, true)
        assert.matches("kaput", logged, 1, true)
    end)

    it("counts a rule that does not answer in time as defer", function()
        write("slow", "-- never answers")
        write("yes", 'cb({ verdict = "keep", reason = "fine" })')
        local chain = assert(validation.new(rt, { rules = { "validation/slow", "validation/yes" },
                                                  timeout_ms = 50 }))
        local t0 = rt:now()
        local d = decide(chain, { instance = inst })
        assert.equal("keep", d.verdict)
        assert.equal("validation/yes", d.rule)
        assert.is_true(rt:now() - t0 >= 45)
        assert.equal(1, chain:stats().errors)
    end)

    it("follows a hot reload of a rule", function()
        write("flip", 'cb({ verdict = "remove", reason = "v1" })')
        local chain = assert(validation.new(rt, { rules = { "validation/flip" } }))
        assert.equal("remove", decide(chain, { instance = inst }).verdict)
        write("flip", 'cb({ verdict = "keep", reason = "v2" })')
        assert(rt:reload("validation/flip"))
        local d = decide(chain, { instance = inst })
        assert.equal("keep", d.verdict)
        assert.equal("v2", d.reason)
    end)

    it("refuses a rule of another kind", function()
        assert.has_error(function()
            validation.new(rt, { rules = { "listener/log_changes" } })
        end)
    end)

    it("recent_call keeps an address that answered within the period", function()
        local chain = assert(validation.new(rt, { rules = { "validation/recent_call" },
                                                  period_ms = 1000 }))
        local now = rt:now()
        local d = decide(chain, { instance = inst, calls = { last_ok = now - 100, ok = 1, failed = 0 } })
        assert.equal("keep", d.verdict)
        assert.equal("recent successful call", d.reason)
        assert.equal(now - 100 + 1000, d.until_ms)
        assert.is_true(d.suspect)
        -- Too old, or failed since: no opinion, so removed.
        assert.equal("remove", decide(chain, { instance = inst,
                                               calls = { last_ok = now - 5000 } }).verdict)
        assert.equal("remove", decide(chain, { instance = inst, calls = { last_ok = now - 100,
                                               last_failed = now - 10 } }).verdict)
        assert.equal("remove", decide(chain, { instance = inst }).verdict)
    end)

    it("registration_identity keeps the newer registration at the same address", function()
        local chain = assert(validation.new(rt, { rules = { "validation/registration_identity" } }))
        local newer = { name = "shop", host = "127.0.0.1", port = 20880, metadata = {},
                        id = "127.0.0.1:20880", identity = { created = 9, modified = 9, owner = 8 } }
        local d = decide(chain, { instance = inst, current = newer })
        assert.equal("keep", d.verdict)
        assert.matches("address re-registered by a newer registration", d.reason, 1, true)
        -- The same registration, or none: no opinion.
        assert.equal("remove", decide(chain, { instance = inst, current = inst }).verdict)
        assert.equal("remove", decide(chain, { instance = inst }).verdict)
        -- Without creation numbers the timestamp metadata tells them apart.
        local a = { name = "shop", host = "h", port = 1, metadata = { timestamp = "1" } }
        local b = { name = "shop", host = "h", port = 1, metadata = { timestamp = "2" } }
        assert.equal("keep", decide(chain, { instance = a, current = b }).verdict)
    end)

    it("dubbo_probe keeps an instance whose dubbo port answers and removes a closed one", function()
        local port = ports.pick_port()
        local server = assert(rt.loop:dubbo_server({ host = "127.0.0.1", port = port,
                                                     on_request = function(req) req.reply(nil) end }))
        local chain = assert(validation.new(rt, { rules = { "health/dubbo_probe" },
                                                  conf = { ["health/dubbo_probe"] = { timeout_ms = 1000 } },
                                                  period_ms = 2000 }))
        local target = { name = "shop", host = "127.0.0.1", port = 1, id = "127.0.0.1:1",
                         metadata = { ["dubbo.endpoints"] = '[{"port":' .. port .. ',"protocol":"dubbo"}]' } }
        local now = rt:now()
        local d = decide(chain, { instance = target })
        assert.equal("keep", d.verdict)
        assert.equal("health/dubbo_probe", d.rule)
        assert.is_true(d.until_ms >= now + 2000)
        assert.is_true(server:stats().heartbeats >= 1)
        server:close()
        d = decide(chain, { instance = target })
        assert.equal("remove", d.verdict)
        assert.matches("dubbo probe", d.reason, 1, true)
    end)
end)

describe("the consumer with offline validation", function()
    local rt, prt, url

    before_each(function()
        store_seq = store_seq + 1
        url = "memory://validation" .. store_seq
        rt = require("disco").runtime({ plugin_watch = false, log_level = "error" })
        prt = require("disco").runtime({ plugin_watch = false, log_level = "error" })
    end)

    after_each(function()
        rt:close()
        prt:close()
    end)

    local function wait(pred, ms)
        return run_all({ rt, prt }, pred, ms or 5000)
    end

    local function start(r, port)
        local p = r:provider({ registry = url, app = "shop", host = "127.0.0.1", port = port,
                               mapping = false })
        p:export({ interface = IFACE, version = "1.0.0", methods = { "add" } })
        local done, err = false, nil
        p:start(function(e) done, err = true, e end)
        assert.is_true(wait(function() return done end))
        assert.is_nil(err)
        return p
    end

    local function stop(p)
        local done = false
        p:stop(function() done = true end)
        assert.is_true(wait(function() return done end))
    end

    it("keeps a recently called address until the chain removes it, with reasons", function()
        local port = ports.pick_port()
        local p = start(prt, port)
        local c = rt:consumer({ registry = url, validation = { period_ms = 300 } })
        local reasons, last = {}, nil
        rt:on("ServiceInstancesChanged", function(event)
            for addr, why in pairs(event.reasons or {}) do
                reasons[#reasons + 1] = addr .. " " .. why
            end
        end)
        c:subscribe(SID, function(_, list) last = list end, { provided_by = { "shop" } })
        assert.is_true(wait(function() return last and #last == 1 end))
        local addr = "127.0.0.1:" .. port
        c:report_call(addr, true, 3)
        stop(p)
        assert.is_true(wait(function() return #reasons >= 1 end))
        assert.matches("recent successful call", reasons[1], 1, true)
        assert.equal(1, #last)
        assert.is_truthy(last[1].instance.suspect)
        assert.equal(1, c:validation_stats().kept["validation/recent_call"])
        assert.equal(1, c:validation_stats().kept_now)
        -- After the period the chain is asked again: no recent call, no
        -- newer registration, the probe finds the port closed.
        assert.is_true(wait(function() return #last == 0 end, 5000))
        assert.matches("health/dubbo_probe", reasons[#reasons], 1, true)
        assert.equal(1, c:validation_stats().removed)
        assert.equal(0, c:validation_stats().kept_now)
    end)

    it("keeps a newer registration at the same address when the old one unregisters", function()
        local port = ports.pick_port()
        local m = start(prt, port)
        local c = rt:consumer({ registry = url })
        local last, lost = nil, false
        c:subscribe(SID, function(_, list)
            last = list
            if #list == 0 then
                lost = true
            end
        end, { provided_by = { "shop" } })
        assert.is_true(wait(function() return last and #last == 1 end))
        -- Provider N (another runtime, another session) takes the address.
        local nrt = require("disco").runtime({ plugin_watch = false, log_level = "error" })
        local n = nrt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = port,
                                 mapping = false, metadata_port = ports.pick_port() })
        n:export({ interface = IFACE, version = "1.0.0", methods = { "add" } })
        local done = false
        n:start(function(e) assert.is_nil(e); done = true end)
        assert.is_true(run_all({ rt, prt, nrt }, function() return done end))
        stop(m)
        run_all({ rt, prt, nrt }, function() return false end, 300)
        assert.is_false(lost)
        assert.equal(1, #last)
        local done2 = false
        n:stop(function() done2 = true end)
        assert.is_true(run_all({ rt, prt, nrt }, function() return done2 end))
        assert.is_true(run_all({ rt, prt, nrt }, function() return #last == 0 end))
        nrt:close()
    end)

    it("applies removals at once with validation = false", function()
        local port = ports.pick_port()
        local p = start(prt, port)
        local c = rt:consumer({ registry = url, validation = false })
        local last
        c:subscribe(SID, function(_, list) last = list end, { provided_by = { "shop" } })
        assert.is_true(wait(function() return last and #last == 1 end))
        c:report_call("127.0.0.1:" .. port, true, 1)
        stop(p)
        assert.is_true(wait(function() return #last == 0 end))
        assert.is_nil(c:validation_stats())
    end)
end)
