--- The configuration of `disco.resty.init{...}`: every option checked with a
-- clear error, defaults filled in, and the shared-dict size estimate.
-- Pure Lua (no ngx), so that the unit spec checks it outside nginx.
-- @module disco.resty.options

local registry_url = require "disco.registry.url"
local service_id = require "disco.service_id"
local upstream_file = require "disco.resty.upstream_file"

local _M = {}

_M.DEFAULTS = {
    dict = "disco",
    step_interval = 0.01,  -- seconds between two steps of the owner's loop
    owner = "auto",
    slow_step_ms = 20,     -- a step longer than this is logged and counted
    feedback = true,       -- the balancer reports call outcomes to the owner
    feedback_cap = 4096,   -- feedback records waiting in the dict at most
    feedback_batch = 512,  -- feedback records the owner handles per step at most
    feedback_flush = 0.2,  -- seconds between two flushes of a worker's call counts
    retry_interval = 1,    -- seconds between retries of a publish that failed
    empty_grace = 10,      -- seconds connected before a held empty list is published
    reload_interval = 1,   -- seconds between two reloads for upstream_files at least
    estimate = { nodes_per_service = 256, bytes_per_node = 160 },
}

local OWNER_MODES = { auto = true, worker0 = true, agent = true }

-- disco.runtime's options (runtime.lua checks them again when the owner
-- creates it; checking here makes a typo fail nginx at start).
local RUNTIME_TYPES = {
    name = "string", log_level = "string", plugin_paths = "table",
    plugin_watch = "boolean", plugin_debounce_ms = "number",
}
local LOG_LEVELS = { error = true, warn = true, info = true, debug = true, trace = true }

local TYPES = {
    registry = "string", subscriptions = "table", dict = "string", step_interval = "number",
    owner = "string", runtime = "table", consumer = "table", slow_step_ms = "number",
    feedback = "boolean", feedback_cap = "number", feedback_batch = "number",
    feedback_flush = "number",
    retry_interval = "number", estimate = "table", empty_grace = "number",
    upstream_files = "table", reload_interval = "number",
}

local function fail(fmt, ...)
    error("disco.resty: " .. string.format(fmt, ...), 0)
end

local function check_positive(conf, key, integer, max)
    local v = conf[key]
    if v <= 0 or (integer and v % 1 ~= 0) or (max and v > max) then
        fail("option '%s' must be a positive %s%s, got %s", key, integer and "integer" or "number",
             max and (" up to " .. max) or "", tostring(v))
    end
end

local function check_subscription(i, entry)
    local id, opts = entry, nil
    if type(entry) == "table" then
        id, opts = entry.id, entry.opts
        for key in pairs(entry) do
            if key ~= "id" and key ~= "opts" then
                fail("subscriptions[%d]: unknown key '%s' (expected id, opts)", i, tostring(key))
            end
        end
        if opts ~= nil and type(opts) ~= "table" then
            fail("subscriptions[%d].opts must be a table, got %s", i, type(opts))
        end
    end
    if type(id) ~= "string" then
        fail("subscriptions[%d] must be a service ID string or {id=, opts=}, got %s", i, type(id))
    end
    local sid, err = service_id.parse(id)
    if not sid then
        fail("subscriptions[%d]: %s", i, err)
    end
    -- The canonical form is the key in the dict and the name nodes() takes.
    return { id = service_id.format(sid), opts = opts }
end

-- upstream_files: service ID -> an absolute path, or { path =,
-- max_fails =, fail_timeout = }; each ID one of the subscriptions (in any
-- spelling service_id accepts). Returns the table keyed by canonical ID.
local function check_upstream_files(files, subscribed)
    local out, paths = {}, {}
    for key, value in pairs(files) do
        if type(key) ~= "string" then
            fail("upstream_files: keys must be service IDs, got a %s", type(key))
        end
        local sid, err = service_id.parse(key)
        if not sid then
            fail("upstream_files['%s']: %s", key, err)
        end
        local id = service_id.format(sid)
        if not subscribed[id] then
            fail("upstream_files['%s']: not one of 'subscriptions'", key)
        end
        if out[id] then
            fail("upstream_files['%s']: '%s' is listed twice", key, id)
        end
        local entry = value
        if type(value) == "string" then
            entry = { path = value }
        elseif type(value) == "table" then
            for k in pairs(value) do
                if k ~= "path" and k ~= "max_fails" and k ~= "fail_timeout" then
                    fail("upstream_files['%s']: unknown key '%s' (expected path, max_fails, "
                         .. "fail_timeout)", key, tostring(k))
                end
            end
            local ok, perr = upstream_file.check_params(value)
            if not ok then
                fail("upstream_files['%s']: %s", key, perr)
            end
        else
            fail("upstream_files['%s'] must be a path or {path=, max_fails=, fail_timeout=}, got %s",
                 key, type(value))
        end
        local path = entry.path
        if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("%c") then
            fail("upstream_files['%s']: the path must be absolute (nginx and the owner may have "
                 .. "different working directories), got %s", key, tostring(path))
        end
        if paths[path] then
            fail("upstream_files['%s']: '%s' is the file of '%s' too", key, path, paths[path])
        end
        paths[path] = id
        out[id] = { path = path, max_fails = entry.max_fails, fail_timeout = entry.fail_timeout }
    end
    return out
end

local function check_runtime(runtime)
    for key, value in pairs(runtime) do
        local expected = RUNTIME_TYPES[key]
        if not expected then
            fail("unknown runtime option '%s'", tostring(key))
        end
        if type(value) ~= expected then
            fail("runtime option '%s' must be a %s, got %s", key, expected, type(value))
        end
    end
    if runtime.log_level and not LOG_LEVELS[runtime.log_level] then
        fail("runtime option 'log_level' must be one of error, warn, info, debug, trace; got '%s'",
             runtime.log_level)
    end
end

local function check_estimate(estimate)
    local out = {}
    for key, default in pairs(_M.DEFAULTS.estimate) do
        local v = estimate[key]
        if v == nil then
            v = default
        elseif type(v) ~= "number" or v <= 0 or v % 1 ~= 0 then
            fail("estimate.%s must be a positive integer, got %s", key, tostring(v))
        end
        out[key] = v
    end
    for key in pairs(estimate) do
        if _M.DEFAULTS.estimate[key] == nil then
            fail("unknown estimate option '%s' (expected nodes_per_service, bytes_per_node)",
                 tostring(key))
        end
    end
    return out
end

--- Checks `conf` and returns a copy with the defaults filled in; raises
-- "disco.resty: ..." naming the first problem.
function _M.check(conf)
    if type(conf) ~= "table" then
        fail("init expects a configuration table, got %s", type(conf))
    end
    for key, value in pairs(conf) do
        local expected = TYPES[key]
        if not expected then
            fail("unknown option '%s'", tostring(key))
        end
        if type(value) ~= expected then
            fail("option '%s' must be a %s, got %s", key, expected, type(value))
        end
    end
    if conf.registry == nil then
        fail("option 'registry' is required (a registry URL such as zookeeper://127.0.0.1:2181)")
    end
    local ok, err = registry_url.parse(conf.registry)
    if not ok then
        fail("option 'registry': %s", tostring(err))
    end
    if conf.subscriptions == nil or #conf.subscriptions == 0 then
        fail("option 'subscriptions' must list at least one service ID")
    end
    local out = {}
    for key, value in pairs(_M.DEFAULTS) do
        out[key] = value
    end
    for key, value in pairs(conf) do
        out[key] = value
    end
    local subs, seen = {}, {}
    for i, entry in ipairs(conf.subscriptions) do
        local sub = check_subscription(i, entry)
        if seen[sub.id] then
            fail("subscriptions[%d]: '%s' is listed twice", i, sub.id)
        end
        seen[sub.id] = true
        subs[i] = sub
    end
    out.subscriptions = subs
    if out.dict == "" then
        fail("option 'dict' must name a lua_shared_dict")
    end
    check_positive(out, "step_interval", false, 1)
    if not OWNER_MODES[out.owner] then
        fail("option 'owner' must be auto, worker0 or agent; got '%s'", out.owner)
    end
    check_positive(out, "slow_step_ms", false)
    check_positive(out, "feedback_cap", true)
    check_positive(out, "feedback_batch", true)
    -- Up to 10 s: validation/recent_call weighs calls against the session
    -- timeout, and a report later than that would come too late.
    check_positive(out, "feedback_flush", false, 10)
    check_positive(out, "retry_interval", false)
    if out.empty_grace < 0 then
        fail("option 'empty_grace' must be a number >= 0, got %s", tostring(out.empty_grace))
    end
    out.upstream_files = check_upstream_files(conf.upstream_files or {}, seen)
    -- Up to a minute: a longer one would leave nginx on an old list.
    check_positive(out, "reload_interval", false, 60)
    out.runtime = out.runtime or {}
    check_runtime(out.runtime)
    out.consumer = out.consumer or {}
    if out.consumer.registry ~= nil then
        fail("consumer.registry must not be set: the top-level 'registry' option gives it")
    end
    out.estimate = check_estimate(conf.estimate or {})
    return out
end

--- Bytes the dict needs for `conf` (checked): every list twice (the
-- current and the next version exist together while a publish switches),
-- the feedback list, the counters, plus a quarter for the slab allocator's
-- rounding and per-entry overhead.
function _M.required_bytes(conf)
    local per_list = conf.estimate.nodes_per_service * conf.estimate.bytes_per_node + 256
    local lists = #conf.subscriptions * 2 * per_list
    local feedback = conf.feedback and conf.feedback_cap * 128 or 0
    local fixed = 8192
    return math.ceil((lists + feedback + fixed) * 1.25)
end

--- Raises when a dict of `capacity` bytes is too small for `conf`.
function _M.check_capacity(conf, capacity)
    local need = _M.required_bytes(conf)
    if capacity < need then
        fail("lua_shared_dict %s is %d bytes; this configuration needs about %d "
             .. "(%d subscriptions x %d nodes x %d bytes, twice, plus %d feedback entries): "
             .. "make it larger, or lower 'estimate'", conf.dict, capacity, need,
             #conf.subscriptions, conf.estimate.nodes_per_service, conf.estimate.bytes_per_node,
             conf.feedback and conf.feedback_cap or 0)
    end
    return need
end

return _M
