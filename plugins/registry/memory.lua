--- registry/memory: the registry contract in process (memory://NAME).
--
-- The embedded default: flows, examples and the demo run on it without a
-- server. It keeps the semantics a real registry has where flows can tell:
-- registrations belong to this instance's session and vanish when it ends;
-- a registration re-made at the same address by another session is a new
-- one (new creation number); unregister deletes only what this session
-- owns; notifications arrive on a later loop turn, coalesced.
--
--   rt:load_plugin("registry/memory", { name = "shop" })  -- memory://shop
local memory_store = require "disco.registry.memory_store"
local checked = require("disco.registry.instance").checked

local M = {
    name = "memory",
    version = "1.0.0",
    kind = "registry",
}

-- Config values are changed with compare-and-set; in process a conflict
-- only comes from a writer inside `fn`, so few retries suffice.
local CAS_MAX_TRIES = 10

local ctx, store, session
local handed_over = false
local watches = {} -- every live watch: instance watches and config watches

function M.check_config(conf)
    if conf.name ~= nil and (type(conf.name) ~= "string" or not conf.name:match("^[%w_%-%.]+$")) then
        return false, "name must be a plain name (memory://NAME), got " .. tostring(conf.name)
    end
    return true
end

function M.init(c, conf)
    ctx = c
    store = memory_store.get(conf.name or "default")
    session = store:open_session()
end

local function later(fn)
    ctx:after(0, fn)
end

local function fail(cb, name, message)
    later(function() cb(name .. ": " .. message) end)
end

local function copy(t)
    local c = {}
    for k, v in pairs(t) do
        c[k] = type(v) == "table" and copy(v) or v
    end
    return c
end

local function address(instance)
    return instance.host .. ":" .. instance.port
end

--- Registers `instance`; cb(err).
M.register = checked(function(instance, cb)
    local stored = copy(instance)
    stored.metadata = stored.metadata or {}
    stored.registration_time = stored.registration_time or os.time() * 1000
    store:put(instance.name, address(instance), stored, session)
    later(function() cb(nil) end)
end, later)

--- Replaces the data of this session's registration of `instance`; cb(err).
M.update = checked(function(instance, cb)
    local entry = store:entries(instance.name)[address(instance)]
    if not entry then
        return fail(cb, "ENONODE", address(instance) .. " is not registered")
    end
    if entry.owner ~= session then
        return fail(cb, "ENOTOWNER", address(instance) .. " belongs to another session")
    end
    local stored = copy(instance)
    stored.metadata = stored.metadata or {}
    stored.registration_time = stored.registration_time or entry.instance.registration_time
    store:put(instance.name, address(instance), stored, session)
    later(function() cb(nil) end)
end, later)

--- Removes this session's registration of `instance`; a registration made
-- by another session at the same address stays. cb(err).
M.unregister = checked(function(instance, cb)
    local ok, why = store:delete(instance.name, address(instance), session)
    if not ok then
        return fail(cb, why, why == "ENOTOWNER"
            and address(instance) .. " now belongs to another registration; left in place"
            or address(instance) .. " is not registered")
    end
    later(function() cb(nil) end)
end, later)

-- The instances of `app` as handed to watchers: copies, with the
-- registration identity a validation rule compares.
local function current(app)
    local list, by_id = {}, {}
    for id, entry in pairs(store:entries(app)) do
        local instance = copy(entry.instance)
        instance.id = id
        instance.identity = { created = entry.created, modified = entry.modified,
                              owner = entry.owner }
        list[#list + 1] = instance
        by_id[id] = instance
    end
    table.sort(list, function(a, b) return a.id < b.id end)
    return list, by_id
end

local function deliver_instances(w)
    w.pending = false
    if w.cancelled then
        return
    end
    local list, by_id = current(w.app)
    local diff = { added = {}, updated = {}, removed = {} }
    for id, instance in pairs(by_id) do
        local old = w.snapshot[id]
        if not old then
            diff.added[#diff.added + 1] = instance
        elseif old.identity.created ~= instance.identity.created
            or old.identity.modified ~= instance.identity.modified then
            diff.updated[#diff.updated + 1] = instance
        end
    end
    for id, old in pairs(w.snapshot) do
        if not by_id[id] then
            diff.removed[#diff.removed + 1] = old
        end
    end
    local first = w.first
    w.first = false
    w.snapshot = by_id
    if first or #diff.added + #diff.updated + #diff.removed > 0 then
        w.on_change(diff, list)
    end
end

-- Calls a config watcher when the value's version moved since it last
-- heard (a deletion is a move to nil).
local function deliver_config(w)
    if w.cancelled then
        return
    end
    local value, version = store:get_config(w.path)
    if version ~= w.version then
        w.version = version
        w.cb(value, version)
    end
end

local function attach(w)
    if w.kind == "instances" then
        w.unwatch = store:watch_app(w.app, function()
            if not w.pending then
                w.pending = true
                later(function() deliver_instances(w) end)
            end
        end)
    else
        w.unwatch = store:watch_config(w.path, function()
            later(function() deliver_config(w) end)
        end)
    end
end

-- Binds `w` to this instance: its store subscription and its cancel. A
-- reload binds the same watch to the new instance; the handle the caller
-- holds calls whichever cancel is current.
local function adopt(w)
    watches[w] = true
    w.cancel = function()
        if not w.cancelled then
            w.cancelled = true
            w.unwatch()
            watches[w] = nil
        end
    end
    attach(w)
end

local function new_watch(w)
    adopt(w)
    return { cancel = function() w.cancel() end }
end

--- Watches the instances of `app`: on_change(diff, instances), first with
-- every current instance as added, then after each change; diff has
-- `added`, `updated` (re-registered or changed), `removed`. Returns a
-- handle with `cancel()`.
function M.watch_instances(app, on_change)
    local w = { kind = "instances", app = app, on_change = on_change, snapshot = {},
                first = true, pending = true }
    local handle = new_watch(w)
    later(function() deliver_instances(w) end)
    return handle
end

--- cb(err, apps): the applications with at least one instance, sorted.
function M.list_apps(cb)
    local names = store:app_names()
    later(function() cb(nil, names) end)
end

--- cb(err, value, version); value nil when the path does not exist.
function M.get_config(path, cb)
    local value, version = store:get_config(path)
    later(function() cb(nil, value, version) end)
end

--- cb(value, version) after each change of `path`. Returns a handle with
-- `cancel()`.
function M.watch_config(path, cb)
    local _, version = store:get_config(path)
    return new_watch({ kind = "config", path = path, cb = cb, version = version })
end

--- cb(err, children): the names under `path` (the next segment of every
-- config path below it), sorted; nil when there is none and `path` holds
-- no value, as a missing node.
function M.list_config(path, cb)
    local prefix = path:gsub("/+$", "") .. "/"
    local names, seen = {}, {}
    for key in pairs(store.configs) do
        if key:sub(1, #prefix) == prefix then
            local name = key:sub(#prefix + 1):match("^[^/]+")
            if name and not seen[name] then
                seen[name] = true
                names[#names + 1] = name
            end
        end
    end
    table.sort(names)
    if #names == 0 and store:get_config(path) == nil then
        names = nil
    end
    later(function() cb(nil, names) end)
end

--- Read-modify-write: `fn(old_value)` returns the new value, or nil to
-- leave it; created when missing. cb(err, value).
function M.cas_config(path, fn, cb)
    for _ = 1, CAS_MAX_TRIES do
        local old, version = store:get_config(path)
        local ok, new = pcall(fn, old)
        if not ok then
            return fail(cb, "EINVAL", "cas function failed: " .. tostring(new))
        end
        if new == nil then
            return later(function() cb(nil, old) end)
        end
        if store:set_config(path, new, version) then
            return later(function() cb(nil, new) end)
        end
    end
    fail(cb, "EBADVERSION", path .. " kept changing; gave up after " .. CAS_MAX_TRIES .. " tries")
end

--- The session's state and counters, in the form registry/zookeeper
-- gives them: an in-process session is connected from init to the end.
function M.stats()
    return { state = "connected", generation = 1, connects = 1, disconnects = 0, expiries = 0 }
end

-- A reload hands the session and the live watches to the new instance, so
-- registrations stay and watchers keep being called.
function M.save()
    handed_over = true
    for w in pairs(watches) do
        w.unwatch()
    end
    return { session = session, watches = watches }
end

function M.restore(state)
    if not state then
        return
    end
    store:close_session(session) -- the fresh one init opened is not needed
    session = state.session
    -- A change between save() and now was not seen by any subscription:
    -- check every watch once; the diff (or version) tells if it matters.
    for w in pairs(state.watches) do
        adopt(w)
        if w.kind == "instances" then
            w.pending = true
            later(function() deliver_instances(w) end)
        else
            later(function() deliver_config(w) end)
        end
    end
end

-- The end of this instance's session, unless a newer instance took it over.
function M.destroy()
    if handed_over then
        return
    end
    for w in pairs(watches) do
        w.cancel()
    end
    store:close_session(session)
end

return M
