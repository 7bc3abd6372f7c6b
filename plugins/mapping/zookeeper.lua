--- mapping/zookeeper: Dubbo 3's mapping node in the registry.
--
-- `/{group}/mapping/{interface}` (group `dubbo` unless configured) holds
-- the comma-separated names of the applications that provide the
-- interface, whatever its group, version or protocol (WIRE.md §3). Readers
-- split on commas, trim, drop empties, sort and de-duplicate. A provider
-- appends itself with a compare-and-set through the registry's
-- `cas_config` (created when missing; bounded jittered retries, as Dubbo's
-- `MetadataServiceNameMapping.map`), and does nothing when its name is
-- already there (compared as whole names, never substrings). The
-- MetadataService is never mapped. `watch` follows the node through the
-- registry's `watch_config`, including its creation after the watch.
--
-- Configuration: `group` (default "dubbo").
local mapping = require "disco.mapping"

local M = {
    name = "zookeeper",
    version = "1.0.0",
    kind = "mapping",
}

local ctx
local group = "dubbo"
local watches = {} -- live watch handles, cancelled when this version goes

function M.check_config(conf)
    if conf.group ~= nil and (type(conf.group) ~= "string" or not conf.group:match("^[^/]+$")) then
        return false, "group must be a plain name such as dubbo, got " .. tostring(conf.group)
    end
    return true
end

function M.init(c, conf)
    ctx = c
    group = conf.group or "dubbo"
end

--- The mapping node of `interface`, or nil and an error.
function M.path(interface)
    return mapping.interface_path("/" .. group, interface)
end

local function later(fn)
    ctx:after(0, fn)
end

local function has_config(registry)
    return type(registry) == "table" and type(registry.get_config) == "function"
end

--- cb(err, apps) from the mapping node; no opinion without a registry.
function M.resolve(req, cb)
    local path, err = M.path(req.interface)
    if not path then
        return later(function() cb(err) end)
    end
    if not has_config(req.registry) then
        return later(function() cb(nil, nil) end)
    end
    req.registry.get_config(path, function(gerr, value)
        if gerr then
            return cb(gerr)
        end
        cb(nil, mapping.split_apps(value))
    end)
end

--- on_change(apps) after each change of the mapping node (its creation
-- included). Returns a handle with `cancel()`, or nil without a registry.
function M.watch(req, on_change)
    local path = M.path(req.interface)
    if not path or not has_config(req.registry) or type(req.registry.watch_config) ~= "function" then
        return nil
    end
    return mapping.track_watch(watches, req.registry.watch_config(path, function(value)
        on_change(mapping.split_apps(value))
    end))
end

--- Appends `req.app` to the mapping node of `req.interface`; cb(err).
function M.map(req, cb)
    local path, registry = mapping.map_target(M.path, req, cb, later)
    if not path then
        return
    end
    local app = req.app
    registry.cas_config(path, function(old)
        for _, name in ipairs(mapping.split_apps(old)) do
            if name == app then
                return nil -- already there: leave the node alone
            end
        end
        if old == nil or not old:match("%S") then
            return app
        end
        return old .. "," .. app
    end, function(cerr)
        cb(cerr)
    end)
end

-- The watches are the registry's: they would keep calling this version's
-- closures, so they go with it (the chain re-arms them on the new one).
function M.destroy()
    mapping.cancel_watches(watches)
end

return M
