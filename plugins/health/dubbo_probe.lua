--- health/dubbo_probe: connect to the instance's dubbo port and send a
-- dubbo heartbeat; alive keeps it until the next period (the chain asks
-- again then), dead or silent removes it.
--
-- The port: the `dubbo` entry of `dubbo.endpoints`, else the port of the
-- MetadataService url-params, else the instance's port.
--
-- Configuration: `timeout_ms` (connect + heartbeat, default 3000),
-- `period_ms` (how long an alive answer keeps it; default the chain's
-- period).
local instance_model = require "disco.instance"

local M = {
    name = "dubbo_probe",
    version = "1.0.0",
    kind = "health",
}

local ctx, timeout_ms, period_ms

function M.check_config(conf)
    for _, key in ipairs({ "timeout_ms", "period_ms" }) do
        if conf[key] ~= nil and (type(conf[key]) ~= "number" or conf[key] <= 0) then
            return false, key .. " must be a positive number"
        end
    end
    return true
end

function M.init(c, conf)
    ctx = c
    timeout_ms = conf.timeout_ms or 3000
    period_ms = conf.period_ms
end

--- The port a dubbo heartbeat goes to.
function M.port_of(inst)
    local port = instance_model.endpoint_port(inst, "dubbo")
    if port then
        return port
    end
    local params = instance_model.url_params(inst)
    return params and tonumber(params.port) or inst.port
end

function M.check(req, cb)
    local inst = req.instance
    local port = M.port_of(inst)
    local where = inst.host .. ":" .. tostring(port)
    local client, err = ctx:dubbo_client({ host = inst.host, port = port, timeout = timeout_ms })
    if not client then
        return cb({ verdict = "remove", reason = "dubbo probe of " .. where .. " failed: "
                    .. tostring(err) })
    end
    local ok, herr0 = client:heartbeat(function(herr, ms)
        ctx:release(client)
        if herr then
            return cb({ verdict = "remove", reason = "dubbo probe of " .. where .. " failed: "
                        .. tostring(herr) })
        end
        local period = period_ms or req.period_ms or 30000
        cb({ verdict = "keep", reason = "dubbo heartbeat answered in " .. tostring(ms) .. " ms",
             until_ms = ctx:now() + period, suspect = true })
    end, timeout_ms)
    if not ok then
        ctx:release(client)
        cb({ verdict = "remove", reason = "dubbo probe of " .. where .. " failed: "
             .. tostring(herr0) })
    end
end

M.validate = M.check

return M
