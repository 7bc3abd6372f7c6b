--- The service-name mapping chain: Dubbo service -> application names.
--
-- A consumer asks the chain, never a mapping plugin directly. The chain
-- asks its policies (mapping plugins) in order and takes the first
-- non-empty answer (DESIGN.md §1, WIRE.md §3): by default the static
-- mapping (`provided-by`, a properties file), then Dubbo 3's mapping node
-- in the registry, then the `subscribed-services` list. A policy that
-- raises, answers with an error, answers garbage or does not answer within
-- `timeout_ms` is logged and skipped: it never breaks the chain. Policies
-- are looked up by name on every call, so a hot reload of one is picked up;
-- a reload also re-arms the live subscriptions' watches on the new version
-- and re-resolves them.
--
--   local mapping = require "disco.mapping"
--   local chain = assert(mapping.new(rt, { registry = reg }))
--   local sub = chain:subscribe("com.acme.Foo", nil, function(apps) end)
--   chain:resolve({ protocol = "dubbo", interface = "com.acme.Foo" }, nil, cb)
--   chain:map("com.acme.Foo", "shop", cb)     -- provider step p3
--
-- The hooks a mapping plugin may define are in docs/plugins.md ("The
-- mapping contract").
-- @module disco.mapping

local plugin_chain = require "disco.plugin_chain"
local registry_url = require "disco.registry.url"

local _M = {}

--- The policies of a chain built without `policies`.
_M.DEFAULT_POLICIES = { "mapping/static", "mapping/zookeeper", "mapping/subscribed_services" }

--- How long one policy may take to answer before it is skipped.
_M.DEFAULT_TIMEOUT_MS = 5000

--- After a failed resolution a subscription tries again, on a timer: the
-- first retry after `RETRY_MIN_MS`, doubling up to `RETRY_MAX_MS` (each
-- ±20 % jitter), until one succeeds. Without it, a consumer started while
-- the registry was unreachable would keep its empty list: the policies'
-- watches may never have been set, so nothing else would ask again.
_M.RETRY_MIN_MS = 1000
_M.RETRY_MAX_MS = 10000

--- Dubbo never maps its own MetadataService.
_M.METADATA_SERVICE = "org.apache.dubbo.metadata.MetadataService"

--- For policies: the node path under `base` of `interface`
-- (`base .. "/mapping/" .. interface`), or nil and an error for a name that
-- cannot be a path segment.
function _M.interface_path(base, interface)
    if type(interface) ~= "string" or interface == "" or interface:find("/", 1, true) then
        return nil, "EINVAL: bad interface name '" .. tostring(interface) .. "'"
    end
    return base .. "/mapping/" .. interface
end

--- For policies: keeps a registry watch `handle` in `watches` (the
-- policy's set of live watches, which its `destroy` cancels) and returns
-- the handle to give the chain; its `cancel()` is idempotent.
function _M.track_watch(watches, handle)
    local record = {}
    record.cancel = function()
        if watches[record] then
            watches[record] = nil
            handle.cancel()
        end
    end
    watches[record] = true
    return record
end

--- For policies: cancels every watch kept by `track_watch`.
function _M.cancel_watches(watches)
    for record in pairs(watches) do
        record.cancel()
    end
end

--- For policies' `map`: the node path and the registry to write it
-- through, or nil after answering `cb` itself (through `later`): nothing
-- to do for the MetadataService, an error for a bad interface or a
-- registry without `cas_config`.
function _M.map_target(path_of, req, cb, later)
    if req.interface == _M.METADATA_SERVICE then
        later(function() cb(nil) end)
        return nil
    end
    local path, err = path_of(req.interface)
    if not path then
        later(function() cb(err) end)
        return nil
    end
    local registry = req.registry
    if type(registry) ~= "table" or type(registry.cas_config) ~= "function" then
        later(function() cb("ENOTSUP: the registry cannot store the mapping") end)
        return nil
    end
    return path, registry
end

--- A sorted, de-duplicated copy of `list` with each name trimmed and
-- empty or non-string entries dropped.
function _M.normalize(list)
    local out, seen = {}, {}
    for _, item in ipairs(list) do
        if type(item) == "string" then
            item = item:match("^%s*(.-)%s*$")
            if item ~= "" and not seen[item] then
                seen[item] = true
                out[#out + 1] = item
            end
        end
    end
    table.sort(out)
    return out
end

--- Splits a comma-separated list of application names as Dubbo does
-- (`splitToSet(value, ',', true)`: trimmed, empty items dropped), sorted
-- and de-duplicated. A table is normalized; anything else gives `{}`.
function _M.split_apps(value)
    if type(value) == "table" then
        return _M.normalize(value)
    end
    local list = {}
    if type(value) == "string" then
        for item in value:gmatch("[^,]+") do
            list[#list + 1] = item
        end
    end
    return _M.normalize(list)
end

--- A service ID as a table `{ protocol=, interface=, version=, group= }`
-- from a table (copied) or a string: `"com.acme.Foo"` (an interface) or
-- `"protocol:interface[:version][:group]"`.
-- @return the table, or nil and an error
function _M.service_id(value)
    if type(value) == "table" then
        if type(value.interface) ~= "string" or value.interface == "" then
            return nil, "EINVAL: a service ID needs an interface"
        end
        return { protocol = value.protocol, interface = value.interface,
                 version = value.version, group = value.group }
    end
    if type(value) ~= "string" or value == "" then
        return nil, "EINVAL: a service ID is a table or a string, got " .. type(value)
    end
    if not value:find(":", 1, true) then
        return { interface = value }
    end
    local parts = {}
    for part in (value .. ":"):gmatch("([^:]*):") do
        parts[#parts + 1] = part
    end
    if parts[2] == nil or parts[2] == "" then
        return nil, "EINVAL: bad service ID '" .. value .. "' (protocol:interface[:version][:group])"
    end
    local function opt(s) return s ~= "" and s or nil end
    return { protocol = opt(parts[1]), interface = parts[2], version = opt(parts[3]),
             group = opt(parts[4]) }
end

local chain_mt = {}
chain_mt.__index = chain_mt

local function same(a, b)
    if #a ~= #b then
        return false
    end
    for i = 1, #a do
        if a[i] ~= b[i] then
            return false
        end
    end
    return true
end

--- Creates a chain and loads its policies that are not loaded yet.
-- @tparam disco.runtime rt
-- @tparam table opts `registry` (the registry plugin's module, or its
-- plugin name such as "registry/zookeeper"; looked up again on each call,
-- so a reload of the registry is followed), `policies` (plugin names in
-- order; default `DEFAULT_POLICIES`), `conf` (plugin name -> configuration
-- for the policies this call loads), `subscribed_services` (a list or a
-- comma-separated string; the configuration of mapping/subscribed_services
-- unless `conf` gives one), `registry_url` (its `subscribed-services`
-- parameter is used when `subscribed_services` is not given), `timeout_ms`
-- @return the chain, or nil and the reason a policy could not be loaded
function _M.new(rt, opts)
    opts = opts or {}
    if type(opts) ~= "table" then
        error("mapping chain options must be a table", 2)
    end
    local policies = opts.policies or _M.DEFAULT_POLICIES
    if type(policies) ~= "table" then
        error("policies must be a list of plugin names", 2)
    end
    local subscribed = opts.subscribed_services
    if subscribed == nil and opts.registry_url then
        local parsed = registry_url.parse(opts.registry_url)
        subscribed = parsed and parsed.params["subscribed-services"]
    end
    local self = setmetatable({
        rt = rt,
        log = rt:logger("mapping"),
        policies = plugin_chain.copy(policies),
        registry_fallback = type(opts.registry) == "table" and opts.registry or nil,
        registry_name = plugin_chain.registry_name(opts.registry),
        timeout_ms = opts.timeout_ms or _M.DEFAULT_TIMEOUT_MS,
        subs = {},
        closed = false,
    }, chain_mt)
    local confs = opts.conf or {}
    local loaded, err = plugin_chain.load(rt, self.policies, function(name)
        if confs[name] == nil and name == "mapping/subscribed_services" then
            return { services = subscribed }
        end
        return confs[name]
    end)
    if not loaded then
        return nil, err
    end
    -- A reloaded (or newly loaded) policy gets the live subscriptions'
    -- watches re-armed on its new version; an unloaded one loses them.
    self.listeners = {}
    for _, etype in ipairs({ "PluginReloaded", "PluginLoaded", "PluginUnloaded" }) do
        self.listeners[#self.listeners + 1] = rt:on(etype, function(event)
            self:_policy_changed(event.name)
        end, { name = "mapping chain" })
    end
    return self
end

function chain_mt:_registry()
    return plugin_chain.registry(self.rt, self.registry_name, self.registry_fallback)
end

function chain_mt:_request(service_id, params)
    local sid, err = _M.service_id(service_id)
    if not sid then
        return nil, err
    end
    return { interface = sid.interface, service_id = sid, registry = self:_registry(),
             params = params or {} }
end

--- Calls `hook` of policy `name` with `req`; `cb(err, apps)` runs exactly
-- once: with the policy's answer (normalized), or with an error when the
-- policy is missing, raises, answers an error or garbage, or times out.
function chain_mt:_ask(name, hook, req, cb)
    local mod = self.rt.plugins:get(name)
    if not mod then
        return cb("ENOPLUGIN: mapping policy " .. name .. " is not loaded")
    end
    if type(mod[hook]) ~= "function" then
        return cb(nil, nil)
    end
    plugin_chain.ask(self.rt, {
        timeout_ms = self.timeout_ms,
        label = "mapping " .. name,
        log = self.log,
        who = "policy " .. name .. ": " .. hook,
        failed = function(message)
            if message:match("^no answer") then
                return "ETIMEDOUT: " .. message
            end
            return (message:gsub("^raised: ", ""))
        end,
    }, mod[hook], req, function(err, apps)
        if err == nil and apps ~= nil and type(apps) ~= "table" then
            err = "EINVAL: answered a " .. type(apps) .. " instead of a list of names"
        end
        if err ~= nil then
            err = tostring(err)
            self.log:warn("policy %s: %s failed, skipped: %s", name, hook, err)
            return cb(err)
        end
        cb(nil, apps and _M.normalize(apps) or nil)
    end)
end

-- `params` may be left out before the callback: (id, cb) or (id, params,
-- cb). Raises, naming `method`, when no callback is given.
local function params_and_callback(method, params, fn)
    if type(params) == "function" and fn == nil then
        params, fn = nil, params
    end
    if type(fn) ~= "function" then
        error(method .. " needs a callback", 3)
    end
    return params, fn
end

--- Resolves `service_id` (a table or string, see `service_id`) to the
-- first non-empty answer of the policies, in order.
-- @tparam[opt] table params `provided_by`, `subscribed_services` (lists
-- or comma-separated strings), handed to the policies
-- @tparam function cb `cb(err, apps)`: `apps` sorted and de-duplicated,
-- `{}` when every policy answered empty; `err` ("EMAPPING: ...") only
-- when no policy gave names and at least one failed
function chain_mt:resolve(service_id, params, cb)
    params, cb = params_and_callback("resolve", params, cb)
    local req, err = self:_request(service_id, params)
    if not req then
        return self.rt:after(0, function() cb(err) end)
    end
    local failures = {}
    local i = 0
    local step
    step = function()
        i = i + 1
        local name = self.policies[i]
        if not name then
            if #failures > 0 then
                return cb("EMAPPING: no policy gave application names; " .. table.concat(failures, "; "))
            end
            return cb(nil, {})
        end
        self:_ask(name, "resolve", req, function(perr, apps)
            if perr then
                failures[#failures + 1] = name .. ": " .. perr
            elseif apps and #apps > 0 then
                return cb(nil, apps)
            end
            step()
        end)
    end
    step()
end

-- Re-resolves `sub`, at most one resolution at a time (a change during
-- one runs another after it), and delivers the list if it moved.
function chain_mt:_refresh(sub)
    if sub.cancelled then
        return
    end
    if sub.running then
        sub.dirty = true
        return
    end
    sub.running = true
    self:resolve(sub.service_id, sub.params, function(err, apps)
        sub.running = false
        if sub.cancelled then
            return
        end
        if err then
            -- A failed lookup never empties a list we had: keep it.
            self.log:warn("mapping of %s: %s", sub.interface, err)
            if sub.apps then
                apps = nil
            else
                apps = {}
            end
            self:_retry_later(sub)
        else
            sub.retry_ms = nil
        end
        if apps and (sub.apps == nil or not same(apps, sub.apps)) then
            sub.apps = apps
            local ok, cb_err = xpcall(sub.on_change, debug.traceback, plugin_chain.copy(apps))
            if not ok then
                self.log:error("mapping subscriber of %s failed: %s", sub.interface, cb_err)
            end
        end
        if sub.dirty then
            sub.dirty = false
            self:_refresh(sub)
        end
    end)
end

-- Schedules one more resolution of `sub` after a failed one (see
-- RETRY_MIN_MS); a retry already scheduled stands.
function chain_mt:_retry_later(sub)
    if sub.retry_timer or sub.cancelled or self.closed then
        return
    end
    local delay = sub.retry_ms and math.min(sub.retry_ms * 2, _M.RETRY_MAX_MS) or _M.RETRY_MIN_MS
    sub.retry_ms = delay
    local jittered = math.floor(delay * (0.8 + 0.4 * math.random()))
    sub.retry_timer = self.rt:after(jittered, function()
        sub.retry_timer = nil
        if not sub.cancelled and not self.closed then
            self:_refresh(sub)
        end
    end, "mapping retry")
end

local function cancel_retry(sub)
    local t = sub.retry_timer
    sub.retry_timer = nil
    if t and not t:is_closed() then
        t:close()
    end
end

-- Arms the watch of policy `name` for `sub` (if it has one), replacing
-- any watch of an older version of that policy.
function chain_mt:_arm(sub, name)
    local old = sub.watches[name]
    sub.watches[name] = nil
    if old then
        pcall(old.cancel)
    end
    local mod = self.rt.plugins:get(name)
    if not mod or type(mod.watch) ~= "function" or sub.cancelled then
        return
    end
    local req = self:_request(sub.service_id, sub.params)
    local record = {}
    local ok, handle = xpcall(mod.watch, debug.traceback, req, function()
        if sub.watches[name] == record then
            self:_refresh(sub)
        end
    end)
    if not ok then
        self.log:error("policy %s: watch raised, no live updates from it: %s", name, tostring(handle))
        return
    end
    if type(handle) == "table" and type(handle.cancel) == "function" then
        record.cancel = function() handle.cancel() end
    else
        record.cancel = function() end
    end
    sub.watches[name] = record
end

function chain_mt:_policy_changed(name)
    local known = false
    for _, p in ipairs(self.policies) do
        if p == name then
            known = true
        end
    end
    if not known or self.closed then
        return
    end
    for sub in pairs(self.subs) do
        self:_arm(sub, name)
        self:_refresh(sub)
    end
end

--- Subscribes to the mapping of `service_id`: `on_change(apps)` once with
-- the current list (even `{}`), then whenever the resolved list changes
-- (a policy's watch fired and the re-resolved list differs, or a policy
-- was reloaded). A failed re-resolution keeps the last list.
-- @return a handle: `cancel()`, `apps()` (the last list delivered)
function chain_mt:subscribe(service_id, params, on_change)
    params, on_change = params_and_callback("subscribe", params, on_change)
    local sid, err = _M.service_id(service_id)
    if not sid then
        error(err, 2)
    end
    local sub = { service_id = sid, interface = sid.interface, params = params,
                  on_change = on_change, watches = {} }
    self.subs[sub] = true
    -- Watches first: a change between them and the first read is then
    -- seen by both, never by neither.
    for _, name in ipairs(self.policies) do
        self:_arm(sub, name)
    end
    self:_refresh(sub)
    return {
        cancel = function()
            if sub.cancelled then
                return
            end
            sub.cancelled = true
            self.subs[sub] = nil
            cancel_retry(sub)
            for name, w in pairs(sub.watches) do
                sub.watches[name] = nil
                pcall(w.cancel)
            end
        end,
        apps = function() return sub.apps and plugin_chain.copy(sub.apps) end,
    }
end

--- Publishes `interface` -> `app` (provider step p3) through every policy
-- with a `map` hook, in order. The MetadataService is never mapped.
-- @tparam function cb `cb(err)`: the first error, after every policy ran
function chain_mt:map(interface, app, cb)
    if type(interface) ~= "string" or interface == "" or type(app) ~= "string" or app == "" then
        error("map needs an interface and an application name", 2)
    end
    if interface == _M.METADATA_SERVICE then
        return self.rt:after(0, function() cb(nil) end)
    end
    local req = { interface = interface, app = app, registry = self:_registry() }
    local first_err
    local i = 0
    local step
    step = function()
        i = i + 1
        local name = self.policies[i]
        if not name then
            return cb(first_err)
        end
        local mod = self.rt.plugins:get(name)
        if not mod or type(mod.map) ~= "function" then
            return step()
        end
        self:_ask(name, "map", req, function(err)
            if err and not first_err then
                first_err = name .. ": " .. err
            end
            step()
        end)
    end
    step()
end

--- Cancels every subscription and stops following plugin reloads. The
-- policies stay loaded (the runtime owns them).
function chain_mt:close()
    if self.closed then
        return
    end
    for sub in pairs(self.subs) do
        sub.cancelled = true
        cancel_retry(sub)
        for _, w in pairs(sub.watches) do
            pcall(w.cancel)
        end
    end
    self.subs = {}
    for _, l in ipairs(self.listeners) do
        l:cancel()
    end
    self.closed = true
end

return _M
