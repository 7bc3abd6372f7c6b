-- examples/custom_validation.lua: a validation rule of your own.
--
--   build/disco run examples/custom_validation.lua
--
-- Writes `validation/zone_guard` into a temporary plugin directory: the
-- instances of zone "z1" are kept until two dubbo probes in a row fail
-- (a zone whose network flaps should not lose its providers on one lost
-- heartbeat); other zones are left to the rest of the chain. A provider of
-- zone z1 starts on the memory registry, a consumer subscribes, the
-- provider stops: the first failed probe keeps it, the second removes it.
local rt = ...
local ports = require "disco.testing.ports"

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
    io.stdout:flush()
end

local pipe = assert(io.popen("mktemp -d /tmp/disco-validation.XXXXXX"))
local dir = pipe:read("*l")
pipe:close()
os.execute("mkdir -p " .. dir .. "/validation")
local f = assert(io.open(dir .. "/validation/zone_guard.lua", "w"))
f:write([[
local M = { name = "zone_guard", version = "1.0.0", kind = "validation" }
local ctx, zone, retry_ms
local failures = {} -- address -> failed probes in a row

function M.init(c, conf)
    ctx, zone, retry_ms = c, conf.zone or "z1", conf.retry_ms or 200
end

function M.validate(req, cb)
    local inst = req.instance
    if (inst.metadata or {}).zone ~= zone then
        return cb({ verdict = "defer" })
    end
    local client = ctx:dubbo_client({ host = inst.host, port = inst.port, timeout = 500 })
    if not client then
        return cb({ verdict = "defer" })
    end
    client:heartbeat(function(err)
        ctx:release(client)
        if not err then
            failures[req.address] = nil
            return cb({ verdict = "keep", reason = "zone " .. zone .. " probe answered",
                        until_ms = ctx:now() + req.period_ms })
        end
        local n = (failures[req.address] or 0) + 1
        failures[req.address] = n
        if n >= 2 then
            failures[req.address] = nil
            return cb({ verdict = "remove", reason = "zone " .. zone .. ": two probes failed" })
        end
        cb({ verdict = "keep", reason = "zone " .. zone .. ": one probe failed, retrying",
             until_ms = ctx:now() + retry_ms, suspect = true })
    end, 500)
end

return M
]])
f:close()
rt.plugins:add_path(dir)

local url = "memory://custom-validation"
local port = ports.pick_port()
local p = rt:provider({ registry = url, app = "shop", host = "127.0.0.1", port = port,
                        mapping = false, metadata = { zone = "z1" } })
p:export({ interface = "com.acme.Cart", version = "1.0.0", methods = { "add" } })

local c = rt:consumer({ registry = url, validation = {
    rules = { "validation/zone_guard", "validation/recent_call",
              "validation/registration_identity", "health/dubbo_probe" },
} })
rt:on("ServiceInstancesChanged", function(event)
    for addr, why in pairs(event.reasons or {}) do
        say("%s: %s", addr, why)
    end
end)
local stopped = false
c:subscribe("dubbo:com.acme.Cart:1.0.0", function(_, list)
    say("%d address(es)", #list)
    if #list == 1 and not stopped then
        stopped = true
        p:stop(function() say("provider stopped") end)
    elseif #list == 0 and stopped then
        say("stats: %d removed, %d kept by zone_guard", c:validation_stats().removed,
            c:validation_stats().kept["validation/zone_guard"] or 0)
        os.execute("rm -rf " .. dir)
        rt:stop(0)
    end
end, { provided_by = { "shop" } })
p:start(function(err) assert(not err, err) end)
