--- mapping/subscribed_services: the last resort of the mapping chain.
--
-- Dubbo's registry URL parameter `subscribed-services=app1,app2` names the
-- applications to subscribe to when the mapping is empty (WIRE.md §3). The
-- list comes from the request (`req.params.subscribed_services`), else from
-- the configuration (`services`: a list or a comma-separated string; the
-- chain fills it from its `subscribed_services` or the `subscribed-services`
-- parameter of `registry_url`). It has no opinion when both are empty.
local mapping = require "disco.mapping"

local M = {
    name = "subscribed_services",
    version = "1.0.0",
    kind = "mapping",
}

local ctx
local services = {}

function M.check_config(conf)
    local s = conf.services
    if s ~= nil and type(s) ~= "string" and type(s) ~= "table" then
        return false, "services must be a list or a comma-separated string"
    end
    return true
end

function M.init(c, conf)
    ctx = c
    services = mapping.split_apps(conf.services)
end

--- cb(nil, apps): the request's list, else the configured one.
function M.resolve(req, cb)
    local apps = mapping.split_apps(req.params and req.params.subscribed_services)
    if #apps == 0 then
        apps = services
    end
    ctx:after(0, function() cb(nil, apps) end)
end

return M
