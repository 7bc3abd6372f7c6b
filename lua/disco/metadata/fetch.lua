--- How a consumer reads the MetadataInfo of one revision, per storage type.
--
-- A fetcher is `fetch(instance, app, revision, cb)`: it asks on behalf of
-- `instance` (one instance that published `revision`) and answers
-- `cb(err, json)` on a later loop turn with the document as the provider
-- stored or served it. The consumer picks the instance, validates the
-- document and caches it; fetchers only move bytes.
--
--   remote  the metadata report: `/{group}/metadata/{app}/{revision}` in
--           the registry (WIRE.md §5, remote mode)
--   local   the instance's own MetadataService over the dubbo protocol
--           (WIRE.md §5, local mode)
-- @module disco.metadata.fetch

local instance_model = require "disco.instance"
local metadata_hessian = require "disco.metadata.hessian"
local service = require "disco.metadata.service"

local _M = {}

--- The metadata report path of (app, revision) under `group` ("dubbo").
function _M.report_path(group, app, revision)
    return "/" .. group .. "/metadata/" .. app .. "/" .. revision
end

--- A fetcher reading the metadata report through `registry`'s get_config.
function _M.remote(registry, group)
    return function(_, app, revision, cb)
        local path = _M.report_path(group, app, revision)
        registry.get_config(path, function(err, value)
            if err then
                return cb(err)
            end
            if value == nil or value == "" then
                return cb("ENOENT: no metadata at " .. path)
            end
            cb(nil, value)
        end)
    end
end

--- The port an instance serves its MetadataService on: the `port` of its
-- `dubbo.metadata-service.url-params`, else the instance port.
function _M.service_port(instance)
    local params = instance_model.url_params(instance)
    local port = params and tonumber(params.port)
    return port or instance.port
end

--- A fetcher calling the instance's MetadataService over the dubbo
-- protocol (`getMetadataInfo(revision)`, group = the application unless
-- the url-params name another), through `pool` (disco.metadata.client_pool).
-- `defer(fn)` runs fn on a later loop turn, so that no answer is
-- synchronous.
function _M.local_service(pool, defer)
    return function(instance, app, revision, cb)
        local params = instance_model.url_params(instance) or {}
        local port = _M.service_port(instance)
        local client, err = pool:get(instance.host, port)
        if not client then
            return defer(function() cb(err) end)
        end
        client:call({
            path = service.INTERFACE,
            version = params.version or service.VERSION,
            group = params.group or app,
            method = "getMetadataInfo",
            types = "Ljava/lang/String;",
            args = { revision },
            attachments = {},
        }, function(cerr, value)
            if cerr then
                return cb(cerr)
            end
            local info, why = metadata_hessian.from_reply(value)
            if not info then
                return cb(why)
            end
            cb(nil, info:to_json())
        end)
    end
end

return _M
