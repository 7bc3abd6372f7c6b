--- mapping/config_v27: the Dubbo 2.7.5 mapping layout.
--
-- 2.7.5 (and 2.7.9+ with the default `mapping-type=config`) publishes one
-- node per provider application, `/dubbo/config/mapping/{interface}/{app}`,
-- whose data is a millisecond timestamp; readers list the children
-- (WIRE.md §3). `resolve` lists them through the registry's `list_config`;
-- `watch` follows them when the registry has `watch_config_children`;
-- `map` writes this application's child as 2.7.5 does.
--
-- Configuration: `root` (default "/dubbo/config").
local mapping = require "disco.mapping"

local M = {
    name = "config_v27",
    version = "1.0.0",
    kind = "mapping",
}

local ctx
local root = "/dubbo/config"
local watches = {}

function M.check_config(conf)
    if conf.root ~= nil and (type(conf.root) ~= "string" or not conf.root:match("^/[^/]")
                             or conf.root:match("/$")) then
        return false, "root must be an absolute path such as /dubbo/config, got " .. tostring(conf.root)
    end
    return true
end

function M.init(c, conf)
    ctx = c
    root = conf.root or "/dubbo/config"
end

--- The parent of the application nodes of `interface`, or nil and an error.
function M.path(interface)
    return mapping.interface_path(root, interface)
end

local function later(fn)
    ctx:after(0, fn)
end

--- cb(err, apps): the children of the interface's node.
function M.resolve(req, cb)
    local path, err = M.path(req.interface)
    if not path then
        return later(function() cb(err) end)
    end
    local registry = req.registry
    if type(registry) ~= "table" or type(registry.list_config) ~= "function" then
        return later(function() cb(nil, nil) end)
    end
    registry.list_config(path, function(lerr, children)
        if lerr then
            return cb(lerr)
        end
        cb(nil, mapping.normalize(children or {}))
    end)
end

--- on_change(apps) when the children change; nil when the registry
-- cannot watch children.
function M.watch(req, on_change)
    local path = M.path(req.interface)
    local registry = req.registry
    if not path or type(registry) ~= "table"
        or type(registry.watch_config_children) ~= "function" then
        return nil
    end
    return mapping.track_watch(watches, registry.watch_config_children(path, function(children)
        on_change(mapping.normalize(children or {}))
    end))
end

--- Publishes `{root}/mapping/{interface}/{app}` with the time in ms, as
-- 2.7.5's `publishConfig` does; cb(err).
function M.map(req, cb)
    local path, registry = mapping.map_target(M.path, req, cb, later)
    if not path then
        return
    end
    local stamp = string.format("%d", os.time() * 1000)
    registry.cas_config(path .. "/" .. req.app, function() return stamp end, function(cerr)
        cb(cerr)
    end)
end

function M.destroy()
    mapping.cancel_watches(watches)
end

return M
