--- disco as an APISIX discovery module (ECOSYSTEM.md §1): `nodes`,
-- `init_worker`, `dump_data`, `check_discovery_ready`.
--
-- Copy or link it as apisix/discovery/disco/init.lua (or require it from
-- there). The configuration is the one of `disco.resty.init`: given by an
-- earlier `require("disco.resty").init{...}`, else read from APISIX's
-- config.yaml under `discovery.disco`. APISIX runs a privileged agent, so
-- set `owner: agent` there.
-- @module disco.resty.discovery

local resty = require "disco.resty"

local _M = {
    version = "0.1.0",
}

-- APISIX's `discovery.disco` section, when running inside APISIX.
local function apisix_conf()
    local ok, core = pcall(require, "apisix.core")
    if not ok or type(core) ~= "table" or not core.config then
        return nil
    end
    local local_conf = core.config.local_conf()
    return local_conf and local_conf.discovery and local_conf.discovery.disco
end

--- Starts the owner in the owning process (every process calls it).
function _M.init_worker()
    if not resty.config() then
        local conf = apisix_conf()
        if not conf then
            error("disco.resty.discovery: no configuration (call disco.resty.init in "
                  .. "init_by_lua, or set discovery.disco in APISIX's config.yaml)", 2)
        end
        resty.init(conf)
    end
    return resty.init_worker()
end

--- The nodes of a service ID (`rest:com.acme.Hello`), `{host, port,
-- weight, metadata}` each, or nil before the first list. Read only.
function _M.nodes(service_name)
    return resty.nodes(service_name)
end

--- Every configured service's nodes and the owner's status.
function _M.dump_data()
    local services = {}
    for _, sub in ipairs(resty.config().subscriptions) do
        services[sub.id] = resty.nodes(sub.id) or {}
    end
    return { services = services, status = resty.status() }
end

--- Ready when every configured service has a published list.
-- @return true, or false and what is missing
function _M.check_discovery_ready()
    local conf = resty.config()
    if not conf then
        return false, "disco is not initialized"
    end
    for _, sub in ipairs(conf.subscriptions) do
        if resty.nodes(sub.id) == nil then
            return false, "no list published yet for " .. sub.id
        end
    end
    return true
end

return _M
