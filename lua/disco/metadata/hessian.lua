--- MetadataInfo as the dubbo MetadataService sends it: Hessian 2 objects
-- of Dubbo's classes (WIRE.md §5), in the Lua conventions of
-- `disco.core.hessian2_*` (objects are tables with `["@class"]`).
-- @module disco.metadata.hessian

local core = require "disco.core"
local metadata_info = require "disco.metadata_info"

local _M = {}

_M.METADATA_INFO = "org.apache.dubbo.metadata.MetadataInfo"
_M.SERVICE_INFO = "org.apache.dubbo.metadata.MetadataInfo$ServiceInfo"
-- Dubbo keeps the services in a ConcurrentHashMap and writes it typed.
_M.SERVICES_MAP = "java.util.concurrent.ConcurrentHashMap"

-- Caucho writes the fields in declaration order (it counts String among the
-- "primitive" fields it writes first), so this is Dubbo's wire order.
local SERVICE_FIELDS = { "name", "group", "version", "protocol", "port", "path", "params" }
local INFO_FIELDS = { "app", "revision", "services" }

local function or_null(v)
    if v == nil then
        return core.hessian2_null
    end
    return v
end

--- The Hessian object of `info` (its revision as `info.revision`, or
-- computed).
function _M.to_object(info)
    local services = { ["@map"] = _M.SERVICES_MAP }
    for _, service in ipairs(info:service_list()) do
        local params = { ["@map"] = "java.util.HashMap" }
        for k, v in pairs(service.params or {}) do
            params[k] = v
        end
        services[metadata_info.match_key(service)] = {
            ["@class"] = _M.SERVICE_INFO,
            ["@fields"] = SERVICE_FIELDS,
            port = math.floor(tonumber(service.port) or -1),
            name = service.name,
            group = or_null(service.group),
            version = or_null(service.version),
            protocol = or_null(service.protocol),
            path = or_null(service.path),
            params = params,
        }
    end
    return {
        ["@class"] = _M.METADATA_INFO,
        ["@fields"] = INFO_FIELDS,
        app = info.app,
        revision = metadata_info.revision_of(info),
        services = services,
    }
end

-- A decoded Hessian value as plain data: the null sentinel becomes nil and
-- the "@" keys of the conventions go.
local function plain(v, depth)
    if v == core.hessian2_null then
        return nil
    end
    if type(v) ~= "table" then
        return v
    end
    if depth > 8 then
        error("nested too deep", 0)
    end
    if v["@long"] then
        return tonumber(v["@long"])
    end
    local out = {}
    for k, x in pairs(v) do
        if type(k) ~= "string" or k:sub(1, 1) ~= "@" then
            out[k] = plain(x, depth + 1)
        end
    end
    return out
end

--- A MetadataInfo from what `getMetadataInfo` returned: a MetadataInfo
-- object, or a JSON string (dubbo-go may answer one). nil and an error for
-- anything else; a null answer (unknown revision) is an error too.
function _M.from_reply(value)
    if type(value) == "string" then
        return metadata_info.from_json(value)
    end
    if value == nil or value == core.hessian2_null then
        return nil, "ENOENT: the provider does not know this revision (null)"
    end
    if type(value) ~= "table" or value["@class"] == nil then
        return nil, "EPROTO: getMetadataInfo returned " .. type(value) .. ", not a MetadataInfo object"
    end
    local ok, doc = pcall(plain, value, 0)
    if not ok then
        return nil, "EPROTO: " .. tostring(doc)
    end
    return metadata_info.from_table(doc)
end

return _M
