--- mapping/static: mappings that live with the consumer, not the registry.
--
-- Two sources, in this order (WIRE.md §3, "Static mapping"):
-- 1. the reference's own list, `req.params.provided_by` (Dubbo's
--    `provided-by`); it wins over everything else;
-- 2. a properties file in the format of Dubbo's
--    `PropertiesFileServiceNameMapping` (`service-name-mapping.properties`):
--
--        dubbo\:com.acme.Interface1\:default = P1 Service,P2 Service
--
--    The key is `protocol:interface`, then `:group` if the service has a
--    group, then `:version` if it has a version (Dubbo builds it this way;
--    "default" above is a group name). Values are comma-separated names,
--    each trimmed. The protocol defaults to `dubbo`.
--
-- Configuration: `file` (a properties file, read in init, so a reload of
-- the plugin re-reads it; an unreadable or malformed file fails the load or
-- reload and the previous version keeps running), `text` (properties text)
-- and `mappings` (key -> list or comma-separated string), merged in that
-- order, later wins.
local mapping = require "disco.mapping"
local properties = require "disco.properties"

local M = {
    name = "static",
    version = "1.0.0",
    kind = "mapping",
}

local ctx
local by_key = {} -- property key -> sorted list of apps

function M.check_config(conf)
    if conf.file ~= nil and type(conf.file) ~= "string" then
        return false, "file must be a path"
    end
    if conf.text ~= nil and type(conf.text) ~= "string" then
        return false, "text must be properties text"
    end
    if conf.mappings ~= nil and type(conf.mappings) ~= "table" then
        return false, "mappings must be a table of key -> apps"
    end
    return true
end

local function merge(props)
    for key, value in pairs(props) do
        by_key[key] = mapping.split_apps(value)
    end
end

function M.init(c, conf)
    ctx = c
    by_key = {}
    if conf.file then
        merge(assert(properties.load_file(conf.file)))
    end
    if conf.text then
        merge(assert(properties.parse(conf.text)))
    end
    if conf.mappings then
        merge(conf.mappings)
    end
end

--- The property key of a service ID, as Dubbo builds it:
-- `protocol:interface[:group][:version]`.
function M.key(service_id)
    local parts = { service_id.protocol or "dubbo", service_id.interface }
    if service_id.group and service_id.group:match("%S") then
        parts[#parts + 1] = service_id.group
    end
    if service_id.version and service_id.version:match("%S") then
        parts[#parts + 1] = service_id.version
    end
    return table.concat(parts, ":")
end

--- cb(nil, apps): `provided_by`, else the properties entry, else nil.
function M.resolve(req, cb)
    local apps
    local provided = req.params and req.params.provided_by
    if provided ~= nil then
        apps = mapping.split_apps(provided)
    end
    if not apps or #apps == 0 then
        apps = by_key[M.key(req.service_id or { interface = req.interface })]
    end
    ctx:after(0, function() cb(nil, apps) end)
end

return M
