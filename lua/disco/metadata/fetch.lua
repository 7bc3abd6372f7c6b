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
--   local   the instance's own MetadataService (WIRE.md §5, local mode)
-- @module disco.metadata.fetch

local instance_model = require "disco.instance"
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

--- A fetcher calling the instance's MetadataService. `defer(fn)` runs fn on
-- a later loop turn, so the answer is never synchronous.
function _M.local_service(defer)
    return function(instance, app, revision, cb)
        local json, err = service.lookup(instance.host, _M.service_port(instance), app, revision)
        defer(function() cb(err, json) end)
    end
end

return _M
