--- The provider flow: publish an application's services (DESIGN.md §2).
--
--    p0 export     record each service (its URL and ServiceInfo)
--    p1 expose     make the MetadataInfo readable: serve it (local storage)
--                  or write it to the metadata report (remote storage)
--    p2 register   compute the revision, fire ServiceInstancePreRegistered
--                  (listeners may add metadata or veto), register the
--                  instance, fire ServiceInstanceRegistered
--    p3 map        publish interface -> application through the mapping chain
--
-- The flow fails fast: a failed step stops the steps after it, fires
-- ServiceDiscoveryException and hands the error to the caller. Operations
-- run one at a time in call order, so `start` then `update` then `stop`
-- issued together do what they say.
--
--    local p = rt:provider{ app = "shop", registry = "zookeeper://127.0.0.1:2181",
--                           host = "127.0.0.1", storage = "remote" }
--    p:export{ interface = "com.acme.Cart", version = "1.0.0", port = 20880,
--              methods = { "add", "remove" } }
--    p:start(function(err) ... end)
-- @module disco.provider

local core = require "disco.core"
local fetch = require "disco.metadata.fetch"
local instance_model = require "disco.instance"
local metadata_info = require "disco.metadata_info"
local metadata_service = require "disco.metadata.service"
local url = require "disco.url"

local _M = {}
local provider = {}
provider.__index = provider

--- The Dubbo protocol version disco speaks (the `dubbo` URL parameter).
_M.DUBBO_PROTOCOL_VERSION = "2.0.2"
--- MetadataService is never mapped (WIRE.md §3).
_M.METADATA_SERVICE = "org.apache.dubbo.metadata.MetadataService"

local STORAGE = { ["local"] = true, remote = true }

local function check_port(value, what)
    if type(value) ~= "number" or value % 1 ~= 0 or value < 1 or value > 65535 then
        error(what .. " must be an integer from 1 to 65535, got " .. tostring(value), 3)
    end
end

--- Creates a provider (use `rt:provider(conf)`).
-- @tparam disco.runtime rt
-- @tparam table conf `app` (required), `registry` (the registry plugin),
-- `host` (required: the address consumers reach), `port` (the instance
-- port; default the first export's), `storage` ("local" or "remote",
-- default "local"), `metadata` (extra instance metadata), `metadata_group`
-- ("dubbo"), `mapping` (a `disco.mapping` chain; false to skip p3),
-- `params` (URL parameters added to every export), `revision_port`
-- (default true: each service's port is in its ServiceInfo and so in the
-- revision, as in Dubbo >= 3.1.1; false leaves it out (-1), so instances
-- of one application on different ports of one host share a revision, and
-- consumers take each instance's port from its `dubbo.endpoints`),
-- `metadata_port` (local storage: the MetadataService's port; default the
-- application's dubbo port, else an automatic one), `bind_host` (the
-- address the MetadataService listens on; default `host`)
function _M.new(rt, conf)
    if type(conf) ~= "table" then
        error("provider configuration must be a table", 2)
    end
    if type(conf.app) ~= "string" or not conf.app:match("^[^/,]+$") then
        error("provider 'app' must be an application name without '/' or ','", 2)
    end
    if type(conf.host) ~= "string" or conf.host == "" then
        error("provider 'host' must be the address consumers reach (such as 127.0.0.1)", 2)
    end
    if conf.port ~= nil then
        check_port(conf.port, "provider 'port'")
    end
    local storage = conf.storage or "local"
    if not STORAGE[storage] then
        error("provider 'storage' must be \"local\" or \"remote\", got " .. tostring(storage), 2)
    end
    if type(conf.registry) ~= "table" or type(conf.registry.register) ~= "function" then
        error("provider 'registry' must be a registry plugin (rt:registry(url))", 2)
    end
    return setmetatable({
        rt = rt,
        app = conf.app,
        host = conf.host,
        port = conf.port,
        storage = storage,
        registry = conf.registry,
        mapping = conf.mapping,
        group = conf.metadata_group or "dubbo",
        extra_metadata = conf.metadata or {},
        extra_params = conf.params or {},
        revision_port = conf.revision_port ~= false,
        metadata_port = conf.metadata_port,
        bind_host = conf.bind_host or conf.host,
        log = rt:logger("provider"),
        exports = {}, -- matchKey -> { service = ServiceInfo, url = disco.url }
        state = "new", -- new, started, stopped, failed
        instance = nil,
        revision = nil,
        mapped = {}, -- interfaces already mapped
        queue = {},
        busy = false,
        started_at = nil,
    }, provider)
end

-- Runs `op(done)` after the operations queued before it; `done(err)` ends
-- it and calls `cb(err)`.
function provider:enqueue(op, cb)
    self.queue[#self.queue + 1] = { op = op, cb = cb }
    if not self.busy then
        self:next_op()
    end
end

function provider:next_op()
    local item = table.remove(self.queue, 1)
    if not item then
        self.busy = false
        return
    end
    self.busy = true
    item.op(function(err)
        if item.cb then
            -- A raising callback must not leave the operations after it
            -- waiting forever.
            local ok, cb_err = pcall(item.cb, err)
            if not ok then
                self.log:error("%s: callback failed: %s", self.app, tostring(cb_err))
            end
        end
        self:next_op()
    end)
end

-- A failed step: the flow stops here and says why.
function provider:fail(step, err, done)
    err = tostring(err)
    self.log:error("%s: %s failed: %s", self.app, step, err)
    self.rt:emit("ServiceDiscoveryException", { error = err, step = step, app = self.app })
    done(err)
end

local function sorted_copy(list)
    local copy = {}
    for i, v in ipairs(list) do
        copy[i] = tostring(v)
    end
    table.sort(copy)
    return copy
end

--- p0: records a service. `spec`: `interface` (required), `version`,
-- `group`, `protocol` ("dubbo"), `port` (required unless the provider has
-- one), `path` (default the interface), `methods` (names), `params` (more
-- URL parameters). Fires ServiceConfigExported. After `start`, call
-- `update` to publish the change.
-- @treturn table the ServiceInfo
-- @treturn string its matchKey (for `unexport`)
function provider:export(spec)
    if type(spec) ~= "table" or type(spec.interface) ~= "string" or spec.interface == "" then
        error("export needs a table with an 'interface'", 2)
    end
    local port = spec.port or self.port
    check_port(port, "export 'port'")
    local protocol = spec.protocol or "dubbo"
    local params = {}
    for k, v in pairs(self.extra_params) do
        params[k] = tostring(v)
    end
    params.application = self.app
    params.interface = spec.interface
    params.side = "provider"
    params.dubbo = _M.DUBBO_PROTOCOL_VERSION
    params["service-name-mapping"] = "true"
    params.deprecated = "false"
    params.dynamic = "true"
    params.generic = "false"
    if spec.methods and #spec.methods > 0 then
        params.methods = table.concat(sorted_copy(spec.methods), ",")
    end
    if spec.version and spec.version ~= "" then
        params.version = spec.version
    end
    if spec.group and spec.group ~= "" then
        params.group = spec.group
    end
    for k, v in pairs(spec.params or {}) do
        params[k] = tostring(v)
    end
    -- The provider URL keeps every parameter (timestamp and pid included);
    -- the ServiceInfo keeps the ones the revision counts.
    params.timestamp = params.timestamp or tostring(self:start_time())
    local service = metadata_info.service({
        name = spec.interface,
        group = spec.group,
        version = spec.version,
        protocol = protocol,
        port = self.revision_port and port or -1,
        path = spec.path or spec.interface,
        params = params,
    })
    local key = metadata_info.match_key(service)
    self.exports[key] = {
        service = service,
        port = port,
        url = url.new({ protocol = protocol, host = self.host, port = port,
                        path = spec.path or spec.interface, params = params }),
    }
    self.rt:emit("ServiceConfigExported", { service = service, app = self.app })
    return service, key
end

--- Removes the service with `match_key` (as `export` returned it);
-- fires ServiceConfigUnexported. Call `update` to publish the change.
-- @treturn boolean whether it was exported
function provider:unexport(match_key)
    local entry = self.exports[match_key]
    if not entry then
        return false
    end
    self.exports[match_key] = nil
    self.rt:emit("ServiceConfigUnexported", { service = entry.service, app = self.app })
    return true
end

--- The exported services' URLs (disco.url objects), sorted by their text.
function provider:urls()
    local list, text = {}, {}
    for _, entry in pairs(self.exports) do
        list[#list + 1] = entry.url
        text[entry.url] = entry.url:to_string()
    end
    table.sort(list, function(a, b) return text[a] < text[b] end)
    return list
end

-- Milliseconds since the epoch when this provider first started (the
-- `timestamp` Dubbo puts in its URLs and instance metadata): a new process
-- at the same address gets a new one, which tells registrations apart.
function provider:start_time()
    if not self.started_at then
        self.started_at = core.time_ms()
    end
    return self.started_at
end

-- The current MetadataInfo with its revision.
function provider:metadata()
    local info = metadata_info.new(self.app)
    for _, entry in pairs(self.exports) do
        info:add(entry.service)
    end
    metadata_info.revision_of(info)
    return info
end

-- The port the instance is registered with, and the MetadataService's.
function provider:instance_port()
    if self.port then
        return self.port
    end
    local best
    for key in pairs(self.exports) do
        if not best or key < best then
            best = key
        end
    end
    return best and self.exports[best].port
end

-- The MetadataService's port: the one it listens on once started; before,
-- the configured one, else the application's dubbo port (Dubbo exposes it
-- on its protocol server), else 0 (an automatic one).
function provider:metadata_service_port()
    if self.metadata_server then
        return self.metadata_server:port()
    end
    if self.metadata_port then
        return self.metadata_port
    end
    local best
    for key, entry in pairs(self.exports) do
        if entry.service.protocol == "dubbo" and (not best or key < best) then
            best = key
        end
    end
    return best and self.exports[best].port or 0
end

-- dubbo.endpoints: one {port, protocol} per protocol, the lowest matchKey's.
function provider:endpoints()
    local keys = {}
    for key in pairs(self.exports) do
        keys[#keys + 1] = key
    end
    table.sort(keys)
    local seen, list = {}, {}
    for _, key in ipairs(keys) do
        local entry = self.exports[key]
        local protocol = entry.service.protocol
        if not seen[protocol] then
            seen[protocol] = true
            list[#list + 1] = { port = entry.port, protocol = protocol }
        end
    end
    return list
end

-- The instance as it will be registered for `info`.
function provider:build_instance(info)
    local metadata = {}
    for k, v in pairs(self.extra_metadata) do
        metadata[k] = tostring(v)
    end
    metadata.timestamp = tostring(self:start_time())
    local inst = instance_model.new({
        name = self.app,
        host = self.host,
        port = self:instance_port(),
        metadata = metadata,
    })
    instance_model.set_revision(inst, info.revision)
    instance_model.set_storage_type(inst, self.storage)
    instance_model.set_endpoints(inst, self:endpoints())
    if self.storage == "local" then
        -- What a consumer needs to call this instance's MetadataService (the
        -- 3.x flat form; group = the application, WIRE.md §5).
        instance_model.set_url_params(inst, {
            connections = "1",
            version = "1.0.0",
            dubbo = _M.DUBBO_PROTOCOL_VERSION,
            side = "provider",
            port = tostring(self:metadata_service_port()),
            protocol = "dubbo",
            serialization = "hessian2",
        })
        inst.metadata[instance_model.META_V] = metadata_service.VERSION
    end
    return inst
end

-- p1: makes `info` readable by consumers; done(err).
function provider:expose(info, done)
    local json = info:to_json()
    if self.storage == "local" then
            if not self.metadata_server then
            local server, err = metadata_service.start(self.rt, {
                app = self.app, host = self.bind_host, port = self:metadata_service_port(),
            })
            if not server then
                return self.rt:after(0, function() done(err) end)
            end
            self.metadata_server = server
        end
        self.metadata_server:publish(info)
        local urls = {}
        for i, u in ipairs(self:urls()) do
            urls[i] = u:to_string()
        end
        self.metadata_server:set_urls(urls)
        return self.rt:after(0, function() done(nil) end)
    end
    -- Remote: written once per revision, never overwritten (another
    -- instance of the same revision wrote the same bytes).
    local path = fetch.report_path(self.group, self.app, info.revision)
    self.registry.cas_config(path, function(old)
        if old == nil or old == "" then
            return json
        end
    end, function(err) done(err) end)
end

-- p3: maps every interface not mapped yet; done(err).
function provider:map_interfaces(done)
    if self.mapping == false or not self.mapping then
        return done(nil)
    end
    local todo = {}
    for _, entry in pairs(self.exports) do
        local iface = entry.service.name
        if iface ~= _M.METADATA_SERVICE and not self.mapped[iface] then
            todo[iface] = true
        end
    end
    local list = {}
    for iface in pairs(todo) do
        list[#list + 1] = iface
    end
    table.sort(list)
    local i = 0
    local function step(err)
        if err then
            return done(err)
        end
        if i > 0 then
            self.mapped[list[i]] = true
        end
        i = i + 1
        if i > #list then
            return done(nil)
        end
        self.mapping:map(list[i], self.app, step)
    end
    step(nil)
end

-- p1 to p3 for the current exports; `update` says whether the instance is
-- registered already (then it is updated in place).
function provider:publish(update, done)
    if next(self.exports) == nil and not self:instance_port() then
        return self:fail("export", "EINVAL: nothing exported and no provider port", done)
    end
    local info = self:metadata()
    self:expose(info, function(err)
        if err then
            return self:fail("expose", err, done)
        end
        local inst = self:build_instance(info)
        local ok, reason = self.rt:emit("ServiceInstancePreRegistered",
                                        { instance = inst, update = update or nil })
        if ok == false then
            return self:fail("register", "EVETOED: " .. tostring(reason), done)
        end
        local hook = update and self.registry.update or self.registry.register
        hook(inst, function(rerr)
            if rerr then
                return self:fail("register", rerr, done)
            end
            self.instance, self.revision = inst, info.revision
            self.state = "started"
            self.rt:emit("ServiceInstanceRegistered", { instance = inst, update = update or nil })
            self.log:info("%s registered at %s:%d, revision %s", self.app, inst.host, inst.port,
                          info.revision)
            self:map_interfaces(function(merr)
                if merr then
                    return self:fail("map", merr, done)
                end
                done(nil)
            end)
        end)
    end)
end

--- p1–p3: publishes the exports and registers the instance; cb(err).
function provider:start(cb)
    self:enqueue(function(done)
        if self.state == "started" then
            return done("EALREADY: " .. self.app .. " is started")
        end
        self:publish(false, done)
    end, cb)
end

--- Publishes a change of the exports: a new revision, the instance
-- updated in place, new interfaces mapped; cb(err).
function provider:update(cb)
    self:enqueue(function(done)
        if self.state ~= "started" then
            return done("EINVAL: " .. self.app .. " is not started")
        end
        local old = self.revision
        local info = self:metadata()
        if info.revision == old then
            -- Nothing a consumer would see changed; still map new interfaces.
            return self:map_interfaces(done)
        end
        self:publish(true, done)
    end, cb)
end

--- Unregisters the instance (PreUnregistered may veto) and stops serving
-- the metadata; cb(err).
function provider:stop(cb)
    self:enqueue(function(done)
        if self.state ~= "started" then
            return done(nil)
        end
        local inst = self.instance
        local ok, reason = self.rt:emit("ServiceInstancePreUnregistered", { instance = inst })
        if ok == false then
            return done("EVETOED: " .. tostring(reason))
        end
        self.registry.unregister(inst, function(err)
            if err and (err:match("^ENOTOWNER") or err:match("^ENONODE")) then
                -- A newer registration at this address is not ours to remove.
                self.log:warn("%s: %s", self.app, err)
                err = nil
            end
            if err then
                return self:fail("unregister", err, done)
            end
            if self.metadata_server then
                self.metadata_server:close()
                self.metadata_server = nil
            end
            self.state = "stopped"
            self.rt:emit("ServiceInstanceUnregistered", { instance = inst })
            self.log:info("%s unregistered from %s:%d", self.app, inst.host, inst.port)
            done(nil)
        end)
    end, cb)
end

return _M
