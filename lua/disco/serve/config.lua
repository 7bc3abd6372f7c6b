--- The configuration of `disco serve`: a Lua file returning a table,
-- checked key by key before anything starts (docs/serve.md).
--
--    local conf, err = config.load("/etc/disco/serve.conf.lua")
--    -- err: "serve.conf.lua: unknown key 'consumer.snapshot_dirr'"
--
-- Every key is known to the schema below: a misspelt key is an error that
-- names it, never a silently ignored setting. The result is a normalised
-- copy (defaults filled in, subscriptions and services as tables).
-- @module disco.serve.config

local log = require "disco.log"
local registry_url = require "disco.registry.url"
local service_id = require "disco.service_id"

local _M = {}

--- The admin endpoint's defaults: loopback only, unless asked otherwise.
_M.DEFAULT_ADMIN_HOST = "127.0.0.1"
_M.DEFAULT_ADMIN_PORT = 9901

--- How many applications get a label of their own in /metrics; the rest
-- are summed under app="_other_".
_M.DEFAULT_MAX_APPS = 1000

-- A failed check raises this table, so that validate can tell a
-- configuration error from a bug.
local Invalid = {}

local function fail(path, fmt, ...)
    error(setmetatable({ message = "'" .. path .. "' " .. string.format(fmt, ...) }, Invalid), 0)
end

local function unknown(path, known)
    error(setmetatable({ message = "unknown key '" .. path .. "' (known here: "
                         .. table.concat(known, ", ") .. ")" }, Invalid), 0)
end

local function join(path, key)
    if path == "" then
        return tostring(key)
    end
    if type(key) == "number" then
        return path .. "[" .. key .. "]"
    end
    return path .. "." .. tostring(key)
end

-- Checkers: each takes (value, path) and returns the normalised value or
-- raises through fail().

local function typed(expected)
    return function(v, path)
        if type(v) ~= expected then
            fail(path, "must be a %s, got %s", expected, type(v))
        end
        return v
    end
end

local string_ = typed("string")
local boolean_ = typed("boolean")
local table_ = typed("table")

local function nonempty(v, path)
    string_(v, path)
    if v == "" then
        fail(path, "must not be empty")
    end
    return v
end

local function integer(min, max)
    return function(v, path)
        if type(v) ~= "number" or v % 1 ~= 0 or v < min or (max and v > max) then
            fail(path, "must be an integer from %d%s, got %s", min,
                 max and (" to " .. max) or " up", tostring(v))
        end
        return v
    end
end

local port_ = integer(1, 65535)
local port_or_zero = integer(0, 65535)
local ms_ = integer(0)
local positive = integer(1)

local function list_of(item)
    return function(v, path)
        table_(v, path)
        local n = #v
        for k in pairs(v) do
            if type(k) ~= "number" or k % 1 ~= 0 or k < 1 or k > n then
                fail(join(path, k), "is not a list entry (%s must be a list)", path)
            end
        end
        local out = {}
        for i = 1, n do
            out[i] = item(v[i], join(path, i))
        end
        return out
    end
end

local function one_of(...)
    local allowed = { ... }
    return function(v, path)
        for _, a in ipairs(allowed) do
            if v == a then
                return v
            end
        end
        fail(path, "must be one of %s, got %s", table.concat(allowed, ", "), tostring(v))
    end
end

-- A table whose keys are all in `fields` (key -> checker); `required`
-- lists the keys that must be there.
local function record(fields, required)
    return function(v, path)
        table_(v, path)
        for k in pairs(v) do
            if fields[k] == nil then
                local known = {}
                for name in pairs(fields) do
                    known[#known + 1] = name
                end
                table.sort(known)
                unknown(join(path, k), known)
            end
        end
        for _, k in ipairs(required or {}) do
            if v[k] == nil then
                fail(join(path, k), "is required")
            end
        end
        local out = {}
        for k, check in pairs(fields) do
            if v[k] ~= nil then
                out[k] = check(v[k], join(path, k))
            end
        end
        return out
    end
end

-- A table of name -> configuration table (plugin configurations).
local function map_of_tables(v, path)
    table_(v, path)
    for k, c in pairs(v) do
        if type(k) ~= "string" then
            fail(join(path, k), "must be keyed by a plugin name")
        end
        table_(c, join(path, k))
    end
    return v
end

local function registry_(v, path)
    nonempty(v, path)
    local parsed, err = registry_url.parse(v)
    if not parsed then
        fail(path, "is not a registry URL: %s", tostring(err))
    end
    return v
end

local function service_id_(v, path)
    nonempty(v, path)
    local sid, err = service_id.parse(v)
    if not sid then
        fail(path, "is not a service ID: %s", tostring(err))
    end
    return service_id.format(sid)
end

local function strings_or_csv(v, path)
    if type(v) == "string" then
        return v
    end
    return list_of(nonempty)(v, path)
end

local subscription_record = record({
    id = service_id_,
    empty_protection = boolean_,
    debounce_ms = ms_,
    provided_by = strings_or_csv,
}, { "id" })

local function subscription_(v, path)
    if type(v) == "string" then
        return { id = service_id_(v, path) }
    end
    return subscription_record(v, path)
end

local function unique_subscriptions(v, path)
    local list = list_of(subscription_)(v, path)
    local seen = {}
    for i, sub in ipairs(list) do
        if seen[sub.id] then
            fail(join(path, i), "subscribes to %s a second time", sub.id)
        end
        seen[sub.id] = true
    end
    return list
end

local validation_record = record({
    rules = list_of(nonempty),
    conf = map_of_tables,
    timeout_ms = positive,
    period_ms = positive,
})

local function validation_(v, path)
    if v == false then
        return false
    end
    return validation_record(v, path)
end

local consumer_ = record({
    validation = validation_,
    cache_file = nonempty,
    cache = record({ max_entries = positive, max_bytes = positive, fast_retries = integer(0),
                     fast_retry_ms = positive, slow_retry_ms = positive, jitter = typed("number") }),
    snapshot_dir = nonempty,
    snapshot_max_age_ms = ms_,
    snapshot_wait_ms = ms_,
    metadata_group = nonempty,
    metadata_timeout = positive,
    subscribed_services = strings_or_csv,
})

local service_record = record({
    interface = nonempty, version = string_, group = string_, protocol = nonempty,
    port = port_, path = nonempty, methods = list_of(nonempty),
    params = table_,
}, { "interface" })

-- "IFACE[:version[:group]]", as `disco provide --service` takes it.
local function service_(v, path)
    if type(v) == "string" then
        local iface, version, group = v:match("^([^:]+):?([^:]*):?([^:]*)$")
        if not iface then
            fail(path, "must be IFACE[:version[:group]], got '%s'", v)
        end
        return { interface = iface, version = version ~= "" and version or nil,
                 group = group ~= "" and group or nil }
    end
    return service_record(v, path)
end

local provider_record = record({
    app = nonempty,
    host = nonempty,
    port = port_,
    storage = one_of("local", "remote"),
    revision_port = boolean_,
    metadata_group = nonempty,
    metadata_port = port_,
    services = list_of(service_),
}, { "app", "port", "services" })

local function provider_(v, path)
    local p = provider_record(v, path)
    if #p.services == 0 then
        fail(join(path, "services"), "must list at least one service")
    end
    return p
end

local function plugin_load(v, path)
    if type(v) == "string" then
        return { name = nonempty(v, path) }
    end
    return record({ name = nonempty, conf = table_ }, { "name" })(v, path)
end

local function log_level(v, path)
    string_(v, path)
    if not log.LEVELS[v] then
        fail(path, "must be one of error, warn, info, debug, trace; got '%s'", v)
    end
    return v
end

local top = record({
    registry = registry_,
    admin = record({ host = nonempty, port = port_or_zero, max_connections = positive,
                     request_timeout_ms = positive, idle_timeout_ms = positive }),
    subscriptions = unique_subscriptions,
    consumer = consumer_,
    provider = provider_,
    plugins = record({ paths = list_of(nonempty), load = list_of(plugin_load), watch = boolean_,
                       debounce_ms = ms_ }),
    runtime = record({ log_level = log_level }),
    metrics = record({ max_apps = positive }),
}, { "registry" })

--- Checks a configuration table; returns the normalised copy, or nil and
-- a message naming the offending key.
function _M.validate(t)
    if type(t) ~= "table" then
        return nil, "the configuration must be a table, got " .. type(t)
    end
    local ok, conf = pcall(top, t, "")
    if not ok then
        if getmetatable(conf) == Invalid then
            return nil, conf.message
        end
        error(conf, 0)
    end
    conf.admin = conf.admin or {}
    conf.admin.host = conf.admin.host or _M.DEFAULT_ADMIN_HOST
    conf.admin.port = conf.admin.port or _M.DEFAULT_ADMIN_PORT
    conf.subscriptions = conf.subscriptions or {}
    conf.plugins = conf.plugins or {}
    conf.plugins.load = conf.plugins.load or {}
    conf.runtime = conf.runtime or {}
    conf.metrics = conf.metrics or {}
    conf.metrics.max_apps = conf.metrics.max_apps or _M.DEFAULT_MAX_APPS
    if not conf.provider and #conf.subscriptions == 0 then
        return nil, "nothing to serve: give 'subscriptions', 'provider' or both"
    end
    return conf
end

--- Reads and checks the configuration file at `path`: a Lua chunk that
-- returns the table. Returns the normalised configuration, or nil and a
-- message that starts with the file's name.
function _M.load(path)
    local chunk, err = loadfile(path)
    if not chunk then
        return nil, tostring(err)
    end
    local ok, t = pcall(chunk)
    if not ok then
        return nil, path .. ": " .. tostring(t)
    end
    local conf, verr = _M.validate(t)
    if not conf then
        return nil, path .. ": " .. verr
    end
    return conf
end

return _M
