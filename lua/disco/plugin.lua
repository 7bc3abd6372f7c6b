--- The plugin host: loads policy plugins into sandboxes and hot-reloads them.
--
-- A reload never leaves the runtime worse off: the new code is compiled in a
-- fresh environment, checked against the contract and its configuration and
-- initialised, and only then does the old instance hand over its state
-- (`save`) and the host swap the two; a failure at any step keeps the old
-- instance running untouched. The host owns every handle an instance took
-- from its context and releases them when the instance goes. Events that
-- reach a plugin while it is being swapped are held and delivered once,
-- to whichever instance runs after the swap. The contract is in
-- docs/plugins.md.
-- @module disco.plugin

local plugin_ctx = require "disco.plugin_ctx"
local read_file = require("disco.file_replace").read
local sandbox = require "disco.sandbox"

local _M = {}

--- Plugin kinds and the hooks each must define. The flows that call these
-- hooks define their arguments (docs/plugins.md).
_M.KINDS = {
    registry = { "register", "update", "unregister", "watch_instances", "list_apps",
                 "get_config", "watch_config", "cas_config" },
    mapping = { "resolve" },
    validation = { "validate" },
    health = { "check" },
    listener = {},
}

local LIFECYCLE = { "check_config", "init", "save", "restore", "destroy" }

--- How long a file must be quiet before a change to it triggers a reload:
-- editors write in several steps.
_M.DEFAULT_DEBOUNCE_MS = 200

local host_mt = {}
host_mt.__index = host_mt

--- The directories searched for `kind/name.lua`, first match wins: the
-- entries of DISCO_PLUGIN_PATH (colon-separated), the plugins directory of
-- the `disco` binary (build tree or installed prefix), then ./plugins.
function _M.default_paths()
    local paths = {}
    local from_env = os.getenv("DISCO_PLUGIN_PATH")
    if from_env then
        for dir in from_env:gmatch("[^:]+") do
            paths[#paths + 1] = dir
        end
    end
    local host = package.loaded["disco.host"]
    if type(host) == "table" and host.plugin_dir then
        paths[#paths + 1] = host.plugin_dir
    end
    paths[#paths + 1] = "./plugins"
    return paths
end

--- Creates a plugin host.
-- @tparam table opts `loop` (disco.core loop), `events` (dispatcher),
-- `log` (logger for the host), `logger(component)` (makes a plugin's
-- logger), optional `paths` (default `default_paths()`), `watch` (reload on
-- file change; default true) and `debounce_ms`
function _M.new(opts)
    return setmetatable({
        loop = opts.loop,
        events = opts.events,
        log = opts.log,
        logger = opts.logger,
        paths = opts.paths or _M.default_paths(),
        watch = opts.watch ~= false,
        debounce_ms = opts.debounce_ms or _M.DEFAULT_DEBOUNCE_MS,
        plugins = {},
        order = {},
        owners = setmetatable({}, { __mode = "k" }),
        dir_watches = {},
        stats = { loaded = 0, reloaded = 0, failed = 0, unloaded = 0 },
        closed = false,
    }, host_mt)
end

--- Searches `dir` before the other plugin directories.
function host_mt:add_path(dir)
    if type(dir) ~= "string" or dir == "" then
        error("a plugin directory must be a non-empty string", 2)
    end
    table.insert(self.paths, 1, dir)
end

local function file_exists(path)
    local f = io.open(path, "r")
    if f then
        f:close()
        return true
    end
    return false
end

--- Splits "kind/name" and checks both parts.
local function parse_spec(spec)
    if type(spec) ~= "string" then
        return nil, "a plugin is named as \"kind/name\", got " .. type(spec)
    end
    local kind, name = spec:match("^([%a_]+)/([%w_%-]+)$")
    if not kind then
        return nil, "a plugin is named as \"kind/name\", got \"" .. spec .. "\""
    end
    if not _M.KINDS[kind] then
        return nil, "unknown plugin kind '" .. kind .. "' in \"" .. spec .. "\""
    end
    return kind, name
end

--- Checks what a plugin file returned against the contract; returns an
-- error message or nil.
local function contract_error(rec, mod)
    if type(mod) ~= "table" then
        return "the plugin file must return a table, got " .. type(mod)
    end
    if type(mod.name) ~= "string" then
        return "field 'name' must be a string"
    end
    if mod.name ~= rec.short then
        return string.format("field 'name' is '%s' but the file is %s/%s.lua",
                             mod.name, rec.kind, rec.short)
    end
    if type(mod.version) ~= "string" or not mod.version:match("^%d+%.%d+%.%d+$") then
        return "field 'version' must be a string \"x.y.z\", got " .. tostring(mod.version)
    end
    if mod.kind ~= rec.kind then
        return string.format("field 'kind' is '%s' but the file is under %s/",
                             tostring(mod.kind), rec.kind)
    end
    if mod.priority ~= nil and type(mod.priority) ~= "number" then
        return "field 'priority' must be a number"
    end
    if type(mod.init) ~= "function" then
        return "function 'init' is missing"
    end
    for _, hook in ipairs(LIFECYCLE) do
        if mod[hook] ~= nil and type(mod[hook]) ~= "function" then
            return "'" .. hook .. "' must be a function"
        end
    end
    for _, hook in ipairs(_M.KINDS[rec.kind]) do
        if type(mod[hook]) ~= "function" then
            return string.format("a %s plugin must define the function '%s'", rec.kind, hook)
        end
    end
    return nil
end

function host_mt:_find(kind, short)
    for _, dir in ipairs(self.paths) do
        local path = dir .. "/" .. kind .. "/" .. short .. ".lua"
        if file_exists(path) then
            return dir, path
        end
    end
    return nil
end

--- Holds `event` for `rec` during a swap, once however many of its
-- subscriptions (old and new instance) it reached.
local function hold(rec, event)
    if not rec.held_set[event] then
        rec.held_set[event] = true
        rec.held[#rec.held + 1] = event
    end
end

--- Wraps a callback of instance `inst` so that it runs only while `inst`
-- is the current instance and no swap is in progress.
local function guarded(rec, inst, fn)
    return function(event)
        if rec.swapping then
            hold(rec, event)
            return nil
        end
        if rec.current ~= inst then
            return nil
        end
        return fn(event)
    end
end

--- Delivers the events held during a swap to the instance now running.
local function drain(rec)
    local held = rec.held
    rec.held, rec.held_set = {}, {}
    local inst = rec.current
    for _, event in ipairs(held) do
        if inst then
            inst.ctx:_deliver(event)
        end
    end
end

--- The restricted `require` of one plugin instance: disco's public modules,
-- and the plugin's own submodules (`kind.name.sub` from
-- `<root>/kind/name/sub.lua`), compiled into the instance's environment.
local function make_require(rec, modules, get_env)
    local prefix = rec.kind .. "." .. rec.short .. "."
    return function(modname)
        if type(modname) ~= "string" then
            error("require expects a module name", 2)
        end
        if sandbox.disco_module_allowed(modname) then
            return require(modname)
        end
        if modname:sub(1, #prefix) ~= prefix then
            error(string.format("plugin '%s' may not require '%s': plugins may require "
                                .. "disco.* modules and their own submodules (%s*)",
                                rec.name, modname, prefix), 2)
        end
        if modules[modname] ~= nil then
            return modules[modname]
        end
        local file = rec.root .. "/" .. rec.kind .. "/" .. rec.short .. "/"
            .. modname:sub(#prefix + 1):gsub("%.", "/") .. ".lua"
        local code, err = read_file(file)
        if not code then
            error("plugin '" .. rec.name .. "': cannot load '" .. modname .. "': " .. err, 2)
        end
        local chunk, cerr = loadstring(code, "@" .. file)
        if not chunk then
            error(cerr, 2)
        end
        setfenv(chunk, get_env())
        local value = chunk(modname)
        if value == nil then
            value = true
        end
        modules[modname] = value
        return value
    end
end

--- Compiles, checks and initialises a new instance of `rec` with `conf`.
-- @return the instance, or nil, the stage that failed, and the error
function host_mt:_instantiate(rec, conf)
    local code, read_err = read_file(rec.path)
    if not code then
        return nil, "read", read_err
    end
    local modules, env = {}, nil
    env = sandbox.new({
        name = rec.name,
        require = make_require(rec, modules, function() return env end),
    })
    local chunk, compile_err = loadstring(code, "@" .. rec.path)
    if not chunk then
        return nil, "compile", compile_err
    end
    setfenv(chunk, env)
    local ok, mod = xpcall(chunk, debug.traceback, rec.name)
    if not ok then
        return nil, "load", mod
    end
    local contract = contract_error(rec, mod)
    if contract then
        return nil, "contract", contract
    end
    if mod.check_config then
        local called, valid, why = xpcall(mod.check_config, debug.traceback, conf)
        if not called then
            return nil, "config", valid
        end
        if not valid then
            return nil, "config", why or "check_config refused the configuration"
        end
    end
    local inst = { mod = mod, modules = modules, version = mod.version }
    inst.ctx = plugin_ctx.new({
        name = rec.name,
        kind = rec.kind,
        conf = conf,
        loop = self.loop,
        events = self.events,
        log = self.logger("plugin " .. rec.name),
        owners = self.owners,
        guard = function(fn) return guarded(rec, inst, fn) end,
    })
    local initialised, init_err = xpcall(mod.init, debug.traceback, inst.ctx, conf)
    if not initialised then
        inst.ctx:_release()
        return nil, "init", init_err
    end
    return inst
end

--- Takes an instance down: its `destroy()` (an error there is logged, not
-- fatal: the handles go regardless), then every handle it held.
function host_mt:_discard(rec, inst)
    if inst.mod.destroy then
        local ok, err = xpcall(inst.mod.destroy, debug.traceback)
        if not ok then
            self.log:error("plugin %s %s: destroy failed: %s", rec.name, inst.version, err)
        end
    end
    inst.ctx:_release()
end

local function module_key(rec)
    return "disco.plugins." .. rec.kind .. "." .. rec.short
end

--- Makes `inst` what `require "disco.plugins.kind.name"` (and its
-- submodules under the same prefix) return, dropping `old`'s entries.
local function publish_modules(rec, inst, old)
    local base = module_key(rec)
    if old then
        for modname in pairs(old.modules) do
            package.loaded["disco.plugins." .. modname] = nil
        end
    end
    package.loaded[base] = inst and inst.mod or nil
    if inst then
        for modname, value in pairs(inst.modules) do
            package.loaded["disco.plugins." .. modname] = value
        end
    end
end

function host_mt:_emit(event_type, fields)
    if not self.events.closed then
        self.events:emit(event_type, fields)
    end
end

--- Records a failed load or reload and builds the error returned for it.
function host_mt:_failed(rec, stage, err, kept)
    self.stats.failed = self.stats.failed + 1
    rec.stats.failed = rec.stats.failed + 1
    -- The caller gets the error itself; the log line keeps the traceback.
    err = tostring(err)
    local reason = err:match("^(.-)\nstack traceback:") or err
    local message
    if kept then
        message = string.format("plugin '%s' not reloaded: %s failed; version %s keeps running: %s",
                                rec.name, stage, kept.version, reason)
        self:_emit("PluginReloadFailed", { name = rec.name, reason = reason, stage = stage })
    else
        message = string.format("plugin '%s' not loaded: %s failed: %s", rec.name, stage, reason)
        self:_emit("PluginLoadFailed", { name = rec.name, reason = reason, stage = stage })
    end
    self.log:error("%s%s", message, reason ~= err and err:sub(#reason + 1) or "")
    return nil, message
end

--- Loads the plugin `spec` ("kind/name") with configuration `conf`.
-- @return the plugin's module table, or nil and the reason
function host_mt:load(spec, conf)
    if self.closed then
        error("the plugin host is closed", 2)
    end
    local kind, short = parse_spec(spec)
    if not kind then
        return nil, short
    end
    if self.plugins[spec] then
        return nil, "plugin '" .. spec .. "' is loaded already"
    end
    local root, path = self:_find(kind, short)
    if not root then
        return nil, string.format("plugin '%s' not found (looked for %s/%s.lua in %s)",
                                  spec, kind, short, table.concat(self.paths, ", "))
    end
    local rec = {
        name = spec, kind = kind, short = short, root = root, path = path,
        conf = conf or {}, current = nil,
        -- Held while the first instance initialises, like during a swap.
        swapping = true, held = {}, held_set = {},
        stats = { reloaded = 0, failed = 0 },
    }
    local inst, stage, err = self:_instantiate(rec, rec.conf)
    if not inst then
        return self:_failed(rec, stage, err, nil)
    end
    rec.current = inst
    self.plugins[spec] = rec
    self.order[#self.order + 1] = spec
    rec.swapping = false
    drain(rec)
    publish_modules(rec, inst, nil)
    self:_watch(rec)
    self.stats.loaded = self.stats.loaded + 1
    self:_emit("PluginLoaded", { name = spec, version = inst.version })
    self.log:info("plugin %s %s loaded from %s", spec, inst.version, path)
    return inst.mod
end

--- Replaces the running instance of `name` with a fresh load of its file.
-- @tparam string name "kind/name"
-- @tparam[opt] table conf a new configuration (default: the current one)
-- @return true, or nil and the reason (the old instance keeps running)
function host_mt:reload(name, conf)
    local rec = self.plugins[name]
    if not rec then
        return nil, "plugin '" .. tostring(name) .. "' is not loaded"
    end
    if rec.swapping then
        return nil, "plugin '" .. name .. "' is being reloaded already"
    end
    conf = conf or rec.conf
    local old = rec.current
    rec.swapping = true

    local new, stage, err = self:_instantiate(rec, conf)
    local state
    if new and old.mod.save then
        local saved, result = xpcall(old.mod.save, debug.traceback)
        if saved then
            state = result
        else
            self:_discard(rec, new)
            new, stage, err = nil, "save", result
        end
    end
    if new then
        rec.current = new
        if new.mod.restore then
            local restored, restore_err = xpcall(new.mod.restore, debug.traceback, state)
            if not restored then
                rec.current = old
                new.ctx:_return_adopted()
                self:_discard(rec, new)
                new, stage, err = nil, "restore", restore_err
            end
        end
    end
    if not new then
        rec.swapping = false
        drain(rec)
        return self:_failed(rec, stage, err, old)
    end

    rec.conf = conf
    new.ctx:_keep_adopted()
    self:_discard(rec, old)
    publish_modules(rec, new, old)
    rec.swapping = false
    drain(rec)
    self.stats.reloaded = self.stats.reloaded + 1
    rec.stats.reloaded = rec.stats.reloaded + 1
    self:_emit("PluginReloaded", { name = name, version = new.version, old_version = old.version })
    self.log:info("plugin %s reloaded: %s -> %s", name, old.version, new.version)
    return true
end

--- Reloads every loaded plugin (SIGHUP). Returns true, or nil and a table
-- of name -> reason for those that kept their old version.
function host_mt:reload_all()
    local failures
    for _, name in ipairs(self.order) do
        local ok, err = self:reload(name)
        if not ok then
            failures = failures or {}
            failures[name] = err
        end
    end
    if failures then
        return nil, failures
    end
    return true
end

--- Unloads `name`: destroy(), then every handle it held.
function host_mt:unload(name)
    local rec = self.plugins[name]
    if not rec then
        return nil, "plugin '" .. tostring(name) .. "' is not loaded"
    end
    self:_unwatch(rec)
    self:_discard(rec, rec.current)
    publish_modules(rec, nil, rec.current)
    rec.current = nil
    self.plugins[name] = nil
    for i, n in ipairs(self.order) do
        if n == name then
            table.remove(self.order, i)
            break
        end
    end
    self.stats.unloaded = self.stats.unloaded + 1
    self:_emit("PluginUnloaded", { name = name })
    return true
end

--- The module table of the running instance of `name`, or nil.
function host_mt:get(name)
    local rec = self.plugins[name]
    return rec and rec.current.mod
end

--- Calls hook `hook` of plugin `name` in protected mode.
-- @return true and the hook's results, or nil and the error
function host_mt:call(name, hook, ...)
    local rec = self.plugins[name]
    if not rec then
        return nil, "plugin '" .. tostring(name) .. "' is not loaded"
    end
    local fn = rec.current.mod[hook]
    if type(fn) ~= "function" then
        return nil, "plugin '" .. name .. "' has no hook '" .. tostring(hook) .. "'"
    end
    return (function(ok, ...)
        if ok then
            return true, ...
        end
        local err = tostring((...))
        self.log:error("plugin %s: %s failed: %s", name, hook, err)
        return nil, err:match("^(.-)\nstack traceback:") or err
    end)(xpcall(fn, debug.traceback, ...))
end

--- A summary of every loaded plugin, in load order.
function host_mt:list()
    local list = {}
    for _, name in ipairs(self.order) do
        local rec = self.plugins[name]
        list[#list + 1] = {
            name = name, kind = rec.kind, version = rec.current.version, path = rec.path,
            reloaded = rec.stats.reloaded, failed = rec.stats.failed,
            resources = rec.current.ctx:_resource_count(),
        }
    end
    return list
end

--- Unloads every plugin, newest first, and stops watching files.
function host_mt:close()
    if self.closed then
        return
    end
    for i = #self.order, 1, -1 do
        self:unload(self.order[i])
    end
    for _, watch in pairs(self.dir_watches) do
        watch.handle:close()
    end
    self.dir_watches = {}
    self.closed = true
end

-- File watching. One watch per directory, since editors often replace a
-- file (write a temporary, rename it over) and a watch on the file itself
-- would follow the old inode. A plugin's submodule directory is watched
-- too. The watches do not keep the loop alive by themselves.

function host_mt:_watch_dir(dir, key, name)
    local watch = self.dir_watches[dir]
    if not watch then
        local handle = assert(self.loop:fs_event("plugin-watch"))
        local ok, err = handle:start(dir, function(_, filename, _, watch_err)
            self:_on_file_event(dir, filename, watch_err)
        end)
        if not ok then
            handle:close()
            self.log:warn("cannot watch %s for plugin changes: %s", dir, err)
            return
        end
        handle:unref()
        watch = { handle = handle, entries = {} }
        self.dir_watches[dir] = watch
    end
    watch.entries[key] = name
end

function host_mt:_watch(rec)
    if not self.watch then
        return
    end
    self:_watch_dir(rec.root .. "/" .. rec.kind, rec.short .. ".lua", rec.name)
    local subdir = rec.root .. "/" .. rec.kind .. "/" .. rec.short
    if os.rename(subdir, subdir) then
        self:_watch_dir(subdir, "*", rec.name)
    end
end

function host_mt:_unwatch(rec)
    for dir, watch in pairs(self.dir_watches) do
        for key, name in pairs(watch.entries) do
            if name == rec.name then
                watch.entries[key] = nil
            end
        end
        if next(watch.entries) == nil then
            watch.handle:close()
            self.dir_watches[dir] = nil
        end
    end
    if rec.debounce then
        rec.debounce:close()
        rec.debounce = nil
    end
end

function host_mt:_on_file_event(dir, filename, err)
    local watch = self.dir_watches[dir]
    if err or not watch or not filename then
        if err then
            self.log:warn("plugin watch on %s: %s", dir, err)
        end
        return
    end
    local name = watch.entries[filename]
    if not name and watch.entries["*"] and filename:match("%.lua$") then
        name = watch.entries["*"]
    end
    local rec = name and self.plugins[name]
    if not rec then
        return
    end
    -- Restarting the timer on every event waits for the file to be quiet.
    if not rec.debounce then
        rec.debounce = assert(self.loop:timer("plugin-reload " .. name))
    end
    rec.debounce:start(self.debounce_ms, 0, function()
        -- A failure is logged and counted by reload itself.
        self:reload(name)
    end)
end

return _M
