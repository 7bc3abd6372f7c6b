--- The `disco serve` daemon: one runtime running what a configuration
-- (`disco.serve.config`) asks for, the consumer's subscriptions, a
-- provider, plugins, and the admin endpoints (`disco.serve.admin`) that
-- report on them.
--
--    local d = assert(daemon.new(conf))     -- nothing started yet
--    assert(d:start())                      -- plugins, registry, flows, admin
--    d.rt:run()
--    d:shutdown(function(code) ... end)     -- provider unregistered, cache saved
--
-- The methods the admin endpoints call (`health`, `readiness`, `services`,
-- `service`, `plugins`, `reload_plugin`, `metrics`) only read state; a
-- reload through the API goes through the plugin host like any other, so a
-- failed one leaves the old version running.
-- @module disco.serve.daemon

local admin = require "disco.serve.admin"
local metrics = require "disco.serve.metrics"
local plugin = require "disco.plugin"
local registry_url = require "disco.registry.url"
local views = require "disco.serve.views"

local _M = {}
local daemon = {}
daemon.__index = daemon

--- How long a shutdown may wait for the provider to unregister.
_M.SHUTDOWN_TIMEOUT_MS = 5000

--- Creates the daemon and its runtime for the checked configuration
-- `conf`. `opts.http = false` skips the admin server (unit tests call the
-- handler directly).
function _M.new(conf, opts)
    opts = opts or {}
    local paths = {}
    for _, dir in ipairs(conf.plugins.paths or {}) do
        paths[#paths + 1] = dir
    end
    -- Configured directories come first; the shipped plugins stay reachable.
    for _, dir in ipairs(plugin.default_paths()) do
        paths[#paths + 1] = dir
    end
    local rt = require("disco").runtime({
        name = "serve",
        log_level = conf.runtime.log_level,
        plugin_paths = paths,
        plugin_watch = conf.plugins.watch ~= false,
        plugin_debounce_ms = conf.plugins.debounce_ms,
    })
    local self = setmetatable({
        conf = conf,
        rt = rt,
        log = rt:logger("serve"),
        http = opts.http ~= false,
        events = {},       -- type -> count
        plugin_errors = {}, -- name -> reason of the last failed load or reload
        admin_answers = {}, -- status -> count
        subs = {},          -- { id =, sub =, updates =, updated_at = }
        by_id = {},
        started_at = require("disco.core").time_ms(),
        stopping = false,
    }, daemon)
    rt:on("*", function(event)
        self.events[event.type] = (self.events[event.type] or 0) + 1
        if event.type == "PluginReloadFailed" or event.type == "PluginLoadFailed" then
            self.plugin_errors[event.name] = event.reason
        elseif event.type == "PluginReloaded" or event.type == "PluginLoaded" then
            self.plugin_errors[event.name] = nil
        end
    end, { name = "serve-counters", priority = 1000 })
    return self
end

-- A start-up failure: the caller reports it (disco serve on stderr).
local function fail(_, fmt, ...)
    return nil, string.format(fmt, ...)
end

function daemon:_load_plugins()
    for _, p in ipairs(self.conf.plugins.load) do
        local mod, err = self.rt:load_plugin(p.name, p.conf)
        if not mod then
            return fail(self, "%s", err)
        end
    end
    return true
end

function daemon:_consumer()
    local c = self.conf.consumer or {}
    local cache = {}
    for k, v in pairs(c.cache or {}) do
        cache[k] = v
    end
    cache.persist_path = c.cache_file
    local snapshot
    if c.snapshot_dir then
        snapshot = { dir = c.snapshot_dir, max_age_ms = c.snapshot_max_age_ms,
                     wait_ms = c.snapshot_wait_ms }
    end
    local ok, consumer = pcall(self.rt.consumer, self.rt, {
        registry = self.registry, validation = c.validation, cache = cache, snapshot = snapshot,
        metadata_group = c.metadata_group, metadata_timeout = c.metadata_timeout,
        subscribed_services = c.subscribed_services,
    })
    if not ok then
        return fail(self, "cannot start the consumer: %s", tostring(consumer))
    end
    self.consumer = consumer
    for _, s in ipairs(self.conf.subscriptions) do
        local rec = { id = s.id, updates = 0 }
        local sok, sub = pcall(consumer.subscribe, consumer, s.id, function(diff, list)
            rec.updates = rec.updates + 1
            rec.updated_at = require("disco.core").time_ms()
            self.log:info("%s: %d address(es) (+%d -%d)", s.id, #list, #diff.added, #diff.removed)
        end, { empty_protection = s.empty_protection, debounce_ms = s.debounce_ms,
               provided_by = s.provided_by })
        if not sok then
            return fail(self, "cannot subscribe to %s: %s", s.id, tostring(sub))
        end
        rec.sub = sub
        self.subs[#self.subs + 1] = rec
        self.by_id[s.id] = rec
    end
    return true
end

function daemon:_provider()
    local p = self.conf.provider
    local host = p.host or require("disco.cli.provide").default_host()
    if not host then
        return fail(self, "provider: no non-loopback IPv4 address found; set provider.host")
    end
    local ok, provider = pcall(self.rt.provider, self.rt, {
        registry = self.registry, app = p.app, host = host, port = p.port,
        storage = p.storage or "local", revision_port = p.revision_port,
        metadata_group = p.metadata_group, metadata_port = p.metadata_port,
    })
    if not ok then
        return fail(self, "cannot start the provider: %s", tostring(provider))
    end
    for _, service in ipairs(p.services) do
        local eok, eerr = pcall(provider.export, provider, service)
        if not eok then
            return fail(self, "provider: cannot export %s: %s", service.interface, tostring(eerr))
        end
    end
    self.provider = provider
    self.provider_state = "registering"
    provider:start(function(err)
        if err then
            self.provider_state, self.provider_error = "failed", err
            self.log:error("provider %s not registered: %s", p.app, err)
            return
        end
        self.provider_state = "registered"
        self.log:info("provider %s registered at %s:%d revision %s", p.app, host,
                      provider.instance.port, provider.revision)
    end)
    return true
end

--- Starts everything in order: plugins, the registry, the consumer and
-- its subscriptions, the provider, the admin server. Returns true, or nil
-- and the reason (the caller closes the daemon).
function daemon:start()
    local ok, err = self:_load_plugins()
    if not ok then
        return nil, err
    end
    local registry, rerr = self.rt:registry(self.conf.registry)
    if not registry then
        return fail(self, "cannot connect to %s: %s", self.conf.registry, tostring(rerr))
    end
    self.registry_plugin = "registry/" .. registry_url.parse(self.conf.registry).scheme
    self.registry = registry
    if #self.conf.subscriptions > 0 then
        ok, err = self:_consumer()
        if not ok then
            return nil, err
        end
    end
    if self.conf.provider then
        ok, err = self:_provider()
        if not ok then
            return nil, err
        end
    end
    if self.http then
        local handler = admin.handler(self, self.log, function(status)
            self.admin_answers[status] = (self.admin_answers[status] or 0) + 1
        end)
        local server, serr = admin.listen(self.rt.loop, self.conf.admin, handler)
        if not server then
            return fail(self, "cannot serve the admin endpoint on %s port %d: %s",
                        self.conf.admin.host, self.conf.admin.port, tostring(serr))
        end
        self.server = server
    end
    return true
end

--- The admin endpoint's URL ("http://127.0.0.1:9901"), once started.
function daemon:admin_url()
    if not self.server then
        return nil
    end
    local host = self.conf.admin.host
    if host:find(":", 1, true) then
        host = "[" .. host .. "]"
    end
    return "http://" .. host .. ":" .. self.server:port()
end

--- The registry plugin's session counters (`stats()` of registry/zookeeper
-- and registry/memory), or nil when the plugin has none.
function daemon:registry_stats()
    local mod = self.registry_plugin and self.rt.plugins:get(self.registry_plugin)
    if mod and type(mod.stats) == "function" then
        local ok, st = pcall(mod.stats)
        if ok and type(st) == "table" then
            return st
        end
    end
    return nil
end

-- Admin endpoint methods.

function daemon:health()
    return { status = "alive", pid = require("disco.core").getpid(),
             uptime_ms = require("disco.core").time_ms() - self.started_at }
end

--- Ready when the registry session is up and every subscription got its
-- first list, or when the lists are served from valid disk snapshots; and
-- when a configured provider is registered. Returns ready, body.
function daemon:readiness()
    local reasons = {}
    local any_stale = false
    for _, rec in ipairs(self.subs) do
        local st = rec.sub:status()
        if st.stale then
            any_stale = true
        elseif not st.live then
            local why = rec.id .. ": not resolved yet"
            if st.snapshot_error then
                why = why .. " (no snapshot served: " .. st.snapshot_error .. ")"
            end
            reasons[#reasons + 1] = why
        end
    end
    local reg = self:registry_stats()
    local session = reg and reg.state or "unknown"
    if reg and reg.state ~= "connected" and not any_stale then
        table.insert(reasons, 1, "registry session is " .. tostring(reg.state))
    end
    if self.provider and self.provider_state ~= "registered" then
        reasons[#reasons + 1] = "provider " .. self.conf.provider.app .. " is " .. self.provider_state
            .. (self.provider_error and (": " .. self.provider_error) or "")
    end
    if self.stopping then
        reasons[#reasons + 1] = "shutting down"
    end
    local ready = #reasons == 0
    local body = { ready = ready, registry_session = session }
    if not ready then
        body.reason = table.concat(reasons, "; ")
        body.reasons = reasons
    end
    return ready, body
end

function daemon:services()
    local list = {}
    for i, rec in ipairs(self.subs) do
        list[i] = views.service(rec)
    end
    return require("disco.serve.json").array(list)
end

function daemon:service(id)
    local rec = self.by_id[id]
    if not rec then
        -- Accept any spelling service_id.parse understands.
        local ok, sid = pcall(require("disco.service_id").parse, id)
        if ok and sid then
            rec = self.by_id[require("disco.service_id").format(sid)]
        end
    end
    return rec and views.service(rec) or nil
end

function daemon:plugins()
    return views.plugins(self.rt.plugins:list(), self.rt.plugins.stats, self.plugin_errors)
end

--- Reloads plugin `name`: 200 and the new version, 404 when it is not
-- loaded, 409 when the new version failed (the old one keeps running),
-- 500 when the reload itself raised.
function daemon:reload_plugin(name)
    local before = self.rt.plugins:get(name)
    if not before then
        return 404, { error = "plugin '" .. name .. "' is not loaded", name = name }
    end
    local old_version = before.version
    local called, ok, err = pcall(self.rt.plugins.reload, self.rt.plugins, name)
    if not called then
        self.log:error("reload of %s raised: %s", name, tostring(ok))
        return 500, { error = tostring(ok), name = name, running_version = old_version }
    end
    if not ok then
        return 409, { error = tostring(err), name = name, reloaded = false,
                      running_version = self.rt.plugins:get(name).version }
    end
    return 200, { name = name, reloaded = true, previous_version = old_version,
                  version = self.rt.plugins:get(name).version }
end

-- Per-application instance and revision counts of what the consumer
-- watches.
function daemon:_apps()
    return self.consumer and self.consumer:app_counts() or {}
end

--- The snapshot /metrics is rendered from (see disco.serve.metrics).
function daemon:metrics_snapshot()
    local subs = {}
    for i, rec in ipairs(self.subs) do
        local st = rec.sub:status()
        subs[i] = { id = rec.id, addresses = #rec.sub:list(), ready = st.live or st.stale,
                    stale = st.stale, protected = st.protected, age_ms = st.age_ms }
    end
    local running = #self.rt.plugins:list()
    return {
        start_time_ms = self.started_at,
        registry = self:registry_stats(),
        events = self.events,
        apps = self:_apps(),
        cache = self.consumer and self.consumer:counters() or nil,
        validation = self.consumer and self.consumer:validation_stats() or nil,
        plugins = { reloaded = self.events.PluginReloaded or 0,
                    failed = self.events.PluginReloadFailed or 0, running = running },
        subscriptions = subs,
        provider = self.provider and { registered = self.provider_state == "registered" } or nil,
        admin = self.admin_answers,
        max_apps = self.conf.metrics.max_apps,
    }
end

function daemon:metrics()
    return metrics.render(self:metrics_snapshot())
end

--- SIGHUP: reloads every plugin; each failure is logged and counted, and
-- that plugin's old version keeps running.
function daemon:reload_all()
    local ok, failures = self.rt.plugins:reload_all()
    if ok then
        self.log:info("SIGHUP: every plugin reloaded")
    else
        for name, reason in pairs(failures) do
            self.log:warn("SIGHUP: %s kept its old version: %s", name, reason)
        end
    end
    return ok, failures
end

--- Stops cleanly: the admin server closes, the provider unregisters
-- (bounded by SHUTDOWN_TIMEOUT_MS), the consumer saves its cache; then
-- `done(exit_code)`: 0, or 1 when unregistering failed or timed out.
function daemon:shutdown(done)
    if self.stopping then
        return
    end
    self.stopping = true
    if self.server then
        self.server:close()
        self.server = nil
    end
    local finished = false
    local function finish(code)
        if finished then
            return
        end
        finished = true
        if self.consumer then
            self.consumer:close()
        end
        done(code)
    end
    if not self.provider or self.provider_state ~= "registered" then
        return finish(0)
    end
    local guard = self.rt:after(_M.SHUTDOWN_TIMEOUT_MS, function()
        self.log:error("the provider did not unregister within %d ms", _M.SHUTDOWN_TIMEOUT_MS)
        finish(1)
    end, "serve-shutdown")
    self.provider:stop(function(err)
        if not guard:is_closed() then
            guard:close()
        end
        if err then
            self.log:error("unregistering failed: %s", err)
            return finish(1)
        end
        self.provider_state = "unregistered"
        finish(0)
    end)
end

--- Closes the admin server, the consumer and the runtime. Idempotent.
function daemon:close()
    if self.server then
        self.server:close()
        self.server = nil
    end
    if self.consumer then
        self.consumer:close()
    end
    self.rt:close()
end

return _M
