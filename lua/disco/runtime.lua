--- The runtime: one event loop and what a program schedules on it.
--
-- It owns the loop, the event dispatcher and the plugin host; later issues
-- add the registry sessions and the provider and consumer flows. This is
-- what `disco run` hands to a script.
-- @module disco.runtime

local core = require "disco.core"
local events = require "disco.events"
local log = require "disco.log"
local plugin = require "disco.plugin"
local registry_url = require "disco.registry.url"

local _M = {}
local runtime = {}
runtime.__index = runtime

local CONF_TYPES = {
    name = "string",
    log_level = "string",
    plugin_paths = "table",
    plugin_watch = "boolean",
    plugin_debounce_ms = "number",
}

local function check_conf(conf)
    if conf == nil then
        return {}
    end
    if type(conf) ~= "table" then
        error("runtime configuration must be a table, got " .. type(conf), 3)
    end
    for key, value in pairs(conf) do
        local expected = CONF_TYPES[key]
        if expected == nil then
            error("unknown runtime option '" .. tostring(key) .. "'", 3)
        end
        if type(value) ~= expected then
            error(string.format("runtime option '%s' must be a %s, got %s",
                                key, expected, type(value)), 3)
        end
    end
    if conf.log_level and not log.LEVELS[conf.log_level] then
        error("runtime option 'log_level' must be one of error, warn, info, "
              .. "debug, trace; got '" .. conf.log_level .. "'", 3)
    end
    return conf
end

--- Creates a runtime.
-- @tparam[opt] table conf
-- `name` (the log component, default "runtime"),
-- `log_level` ("error" .. "trace"; default from DISCO_LOG_LEVEL or "info"),
-- `plugin_paths` (directories holding `kind/name.lua`; default
-- `disco.plugin.default_paths()`), `plugin_watch` (reload a plugin when its
-- file changes; default true), `plugin_debounce_ms` (default 200)
-- @treturn disco.runtime
function _M.new(conf)
    conf = check_conf(conf)
    local loop, err = core.new_loop()
    if not loop then
        error("cannot create the event loop: " .. err, 2)
    end
    if conf.log_level then
        loop:set_log_level(conf.log_level)
    end
    local self = setmetatable({
        loop = loop,
        log = log.new(loop, conf.name or "runtime"),
        exit_code = nil,
    }, runtime)
    self.events = events.dispatcher({ loop = loop, log = self:logger("events") })
    self.plugins = plugin.new({
        loop = loop,
        events = self.events,
        log = self:logger("plugins"),
        logger = function(component) return self:logger(component) end,
        paths = conf.plugin_paths,
        watch = conf.plugin_watch,
        debounce_ms = conf.plugin_debounce_ms,
    })
    return self
end

--- A logger for another component (a plugin, an example).
function runtime:logger(component)
    return log.new(self.loop, component)
end

--- Calls `fn()` once after `ms` milliseconds.
-- @treturn disco.timer the timer (`:stop()`, `:close()`)
function runtime:after(ms, fn, name)
    local timer = assert(self.loop:timer(name or "after"))
    assert(timer:start(ms, 0, function(t)
        t:close()
        fn()
    end))
    return timer
end

--- Calls `fn()` every `ms` milliseconds until the timer is stopped.
-- @treturn disco.timer
function runtime:every(ms, fn, name)
    local timer = assert(self.loop:timer(name or "every"))
    assert(timer:start(ms, ms, function() fn() end))
    return timer
end

--- Calls `fn(signame)` on the loop when the process receives `signal`
-- ("SIGINT", "TERM", 15...). The watch does not keep the loop alive by
-- itself: a program with nothing else to do still ends.
-- @treturn disco.signal
function runtime:on_signal(signal, fn, name)
    local handle = assert(self.loop:signal(name or tostring(signal)))
    assert(handle:start(signal, function(_, signame) fn(signame) end))
    handle:unref()
    return handle
end

--- Subscribes `listener(event)` to an event type or "*"; see
-- `disco.events`. Returns the subscription (`:cancel()`).
function runtime:on(event_type, listener, opts)
    return self.events:on(event_type, listener, opts)
end

--- Fires an event; for a Pre* event returns false, reason when vetoed.
function runtime:emit(event_type, fields, opts)
    return self.events:emit(event_type, fields, opts)
end

--- Loads plugin "kind/name" with `conf`; returns its module or nil, err.
function runtime:load_plugin(name, conf)
    return self.plugins:load(name, conf)
end

--- Connects to the registry at `url` (`memory://NAME`,
-- `zookeeper://h:p,.../chroot?...`) by loading the registry plugin of its
-- scheme with the parsed URL as configuration (its `name`, `hosts`,
-- `chroot`, and each URL parameter). One registry per scheme per runtime.
-- @return the registry plugin's module, or nil and the reason
function runtime:registry(url)
    local parsed, err = registry_url.parse(url)
    if not parsed then
        return nil, err
    end
    local conf = { url = url, name = parsed.name, hosts = parsed.hosts, chroot = parsed.chroot }
    for key, value in pairs(parsed.params) do
        if conf[key] == nil then
            conf[key] = value
        end
    end
    local name = "registry/" .. parsed.scheme
    local loaded = self.plugins:get(name)
    if loaded then
        return nil, "a " .. parsed.scheme .. " registry is connected already"
    end
    return self.plugins:load(name, conf)
end

-- The registry plugin for `registry`: a plugin module already, or a URL
-- connected now (or earlier: the plugin of its scheme is shared).
function runtime:registry_of(registry)
    if type(registry) == "table" then
        return registry
    end
    if type(registry) ~= "string" then
        return nil, "registry must be a registry URL or plugin, got " .. type(registry)
    end
    local parsed, err = registry_url.parse(registry)
    if not parsed then
        return nil, err
    end
    local loaded = self.plugins:get("registry/" .. parsed.scheme)
    if loaded then
        return loaded
    end
    return self:registry(registry)
end

local function with_registry(self, conf, level)
    if type(conf) ~= "table" then
        error("configuration must be a table", level + 1)
    end
    local registry, err = self:registry_of(conf.registry)
    if not registry then
        error("cannot connect to the registry: " .. tostring(err), level + 1)
    end
    local copy = {}
    for k, v in pairs(conf) do
        copy[k] = v
    end
    copy.registry = registry
    return copy
end

--- Creates a provider of application `conf.app` on `conf.registry` (a URL
-- or a registry plugin); see `disco.provider`.
function runtime:provider(conf)
    conf = with_registry(self, conf, 2)
    if conf.mapping == nil then
        local chain, err = require("disco.mapping").new(self, { registry = conf.registry })
        if not chain then
            error("cannot set up the mapping chain: " .. tostring(err), 2)
        end
        conf.mapping = chain
    end
    return require("disco.provider").new(self, conf)
end

--- Creates a consumer on `conf.registry` (a URL or a registry plugin); see
-- `disco.consumer`.
function runtime:consumer(conf)
    conf = with_registry(self, conf, 2)
    return require("disco.consumer").new(self, conf)
end

--- Hot-reloads plugin "kind/name" (optionally with a new `conf`); on any
-- failure the old version keeps running and nil, reason is returned.
function runtime:reload(name, conf)
    return self.plugins:reload(name, conf)
end

--- Runs the loop until `stop()` or until nothing is left to do.
function runtime:run()
    return self.loop:run()
end

--- Runs one loop iteration without blocking (for hosts with their own
-- loop, such as nginx). Returns whether work remains.
function runtime:step()
    return self.loop:step()
end

--- Loop time in milliseconds.
function runtime:now()
    return self.loop:now()
end

--- Stops the loop; `run()` returns. `code` becomes the exit status of
-- `disco run`.
function runtime:stop(code)
    if code ~= nil then
        if type(code) ~= "number" or code % 1 ~= 0 or code < 0 or code > 255 then
            error("exit code must be an integer from 0 to 255, got " .. tostring(code), 2)
        end
        self.exit_code = code
    end
    self.loop:stop()
end

--- Unloads the plugins, then closes every handle and the loop. Idempotent.
function runtime:close()
    if not self.loop:is_closed() then
        self.plugins:close()
        self.events:close()
        return self.loop:close()
    end
    return true
end

return _M
