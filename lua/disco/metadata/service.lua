--- The MetadataService a provider serves in local storage mode (WIRE.md §5).
--
-- In Dubbo's default storage mode every instance serves its own
-- MetadataInfo as a regular Dubbo service, and consumers call it once per
-- revision: `org.apache.dubbo.metadata.MetadataService`, version `1.0.0`,
-- group = the application name, over the dubbo protocol with Hessian 2.
-- This module is that service on a `loop:dubbo_server`: it answers
--
--   getMetadataInfo(revision)   the MetadataInfo object, null if unknown
--   getMetadataInfos()          every revision it keeps
--   getExportedURLs(...)        the provider's URLs (filtered, sorted)
--   serviceName(), version()    the application, "1.0.0"
--
-- and, as Dubbo, keeps its last revisions servable (16, for 10 minutes
-- after they were replaced) so that a consumer that saw an older revision a
-- moment ago can still read it. A call for another service, version or
-- group gets the dubbo "service not found" status with a message. The
-- server answers dubbo heartbeats on the same port (the health probe uses
-- them).
--
--    local svc = assert(service.start(rt, { app = "shop", host = "127.0.0.1", port = 20880 }))
--    svc:publish(info)       -- a disco.metadata_info with its revision
--    svc:set_urls(urls)      -- the exported URLs, strings
-- @module disco.metadata.service

local metadata_hessian = require "disco.metadata.hessian"
local metadata_info = require "disco.metadata_info"
local url = require "disco.url"

local _M = {}
local service = {}
service.__index = service

_M.INTERFACE = "org.apache.dubbo.metadata.MetadataService"
_M.VERSION = "1.0.0"
--- How many revisions stay servable, and for how long after they were
-- replaced (Dubbo: 16, 10 minutes).
_M.KEEP_REVISIONS = 16
_M.KEEP_MS = 10 * 60 * 1000

--- Starts the server: `conf.app`, `conf.host` (the address to listen on),
-- `conf.port` (0 for an automatic one). Returns the service, or nil and
-- the error (`EADDRINUSE: ...`).
function _M.start(rt, conf)
    local self = setmetatable({
        rt = rt,
        app = conf.app,
        log = rt:logger("metadata-service"),
        infos = {}, -- revision -> { info =, object =, replaced_at = }
        order = {}, -- revisions, oldest first
        current = nil,
        urls = {},
        calls = 0,
    }, service)
    local server, err = rt.loop:dubbo_server({
        host = conf.host,
        port = conf.port or 0,
        on_request = function(req) self:handle(req) end,
    })
    if not server then
        return nil, err
    end
    self.server = server
    return self
end

--- The port it listens on.
function service:port()
    return self.server:port()
end

-- Forgets revisions beyond KEEP_REVISIONS and those replaced too long ago.
function service:prune()
    local now = self.rt:now()
    local kept = {}
    for i, revision in ipairs(self.order) do
        local entry = self.infos[revision]
        local too_many = #self.order - i >= _M.KEEP_REVISIONS
        local too_old = entry.replaced_at and now - entry.replaced_at > _M.KEEP_MS
        if revision ~= self.current and (too_many or too_old) then
            self.infos[revision] = nil
        else
            kept[#kept + 1] = revision
        end
    end
    self.order = kept
end

--- Serves `info` (a disco.metadata_info) as the current revision.
function service:publish(info)
    local revision = metadata_info.revision_of(info)
    local old = self.current and self.infos[self.current]
    if old and self.current ~= revision then
        old.replaced_at = self.rt:now()
    end
    if not self.infos[revision] then
        self.order[#self.order + 1] = revision
    end
    self.infos[revision] = { info = info, object = metadata_hessian.to_object(info) }
    self.current = revision
    self:prune()
end

--- The provider's exported URLs (strings), for getExportedURLs.
function service:set_urls(urls)
    self.urls = urls
end

-- `value` matches a getExportedURLs filter argument: nil, "" and "*" match
-- everything.
local function matches(filter, value)
    return filter == nil or type(filter) ~= "string" or filter == "" or filter == "*"
        or filter == value
end

function service:exported_urls(iface, group, version, protocol)
    local list = { ["@list"] = "java.util.TreeSet" }
    for _, text in ipairs(self.urls) do
        local u = url.parse(text)
        if u and matches(iface, u.params.interface or u.path) and matches(group, u.params.group)
            and matches(version, u.params.version) and matches(protocol, u.protocol) then
            list[#list + 1] = text
        end
    end
    table.sort(list)
    return list
end

local function arg_string(req, i)
    local v = req.args and req.args[i]
    return type(v) == "string" and v or nil
end

-- One call.
function service:handle(req)
    self.calls = self.calls + 1
    if req.path ~= _M.INTERFACE or (req.version or "") ~= _M.VERSION or req.group ~= self.app then
        local asked = string.format("%s/%s:%s", tostring(req.group), tostring(req.path),
                                    tostring(req.version))
        return req.fail("service_not_found", "no exporter for " .. asked .. " here: this is "
                        .. self.app .. "/" .. _M.INTERFACE .. ":" .. _M.VERSION)
    end
    local method = req.method
    if method == "getMetadataInfo" then
        local entry = self.infos[arg_string(req, 1) or ""]
        self:prune()
        return req.reply(entry and entry.object or nil)
    elseif method == "getMetadataInfos" then
        local list = { ["@list"] = "java.util.ArrayList" }
        for _, revision in ipairs(self.order) do
            list[#list + 1] = self.infos[revision].object
        end
        return req.reply(list)
    elseif method == "getExportedURLs" then
        return req.reply(self:exported_urls(arg_string(req, 1), arg_string(req, 2), arg_string(req, 3),
                                            arg_string(req, 4)))
    elseif method == "serviceName" then
        return req.reply(self.app)
    elseif method == "version" then
        return req.reply(_M.VERSION)
    elseif method == "getMetadataURL" or method == "getServiceDefinition" then
        return req.reply(nil)
    end
    req.fail("service_error", "MetadataService has no method " .. tostring(method)
             .. " in disco (it serves getMetadataInfo, getMetadataInfos, getExportedURLs,"
             .. " serviceName, version)")
end

--- Stops serving; idempotent.
function service:close()
    if self.server then
        self.server:close()
        self.server = nil
    end
end

return _M
