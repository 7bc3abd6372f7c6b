--- The process-wide state behind memory:// registries.
--
-- A memory registry is a product feature (the embedded default), so it
-- behaves like the real one where flows can tell: a registration belongs to
-- a session and disappears when that session ends; every registration gets
-- a new creation number, like a znode's czxid, so that a re-registration at
-- the same address is told apart from the old one; configuration values
-- carry a version for compare-and-set. Stores are named, so that several
-- runtimes in one process (a provider and a consumer in a test or a demo)
-- share `memory://same-name`.
--
-- This module is synchronous; the registry plugin defers notifications to
-- the next loop turn, as a real registry's would arrive.
-- @module disco.registry.memory_store

local _M = {}

local stores = {}

local store_mt = {}
store_mt.__index = store_mt

--- The store named `name`, created on first use.
function _M.get(name)
    local store = stores[name]
    if not store then
        store = setmetatable({
            name = name,
            apps = {},          -- app -> id -> entry
            configs = {},       -- path -> { value =, version = }
            app_watchers = {},  -- app -> set of fn(app)
            config_watchers = {}, -- path -> set of fn(path)
            next_zxid = 0,
            next_session = 0,
        }, store_mt)
        stores[name] = store
    end
    return store
end

--- Drops every store (tests).
function _M.reset()
    stores = {}
end

local function tick(self)
    self.next_zxid = self.next_zxid + 1
    return self.next_zxid
end

local function notify(watchers, key)
    local set = watchers[key]
    if set then
        for fn in pairs(set) do
            fn(key)
        end
    end
end

--- A new session id (what an ephemeral registration belongs to).
function store_mt:open_session()
    self.next_session = self.next_session + 1
    return self.next_session
end

--- Removes every registration of `session`, as a ZooKeeper session expiry
-- or close removes its ephemeral nodes.
function store_mt:close_session(session)
    for app, entries in pairs(self.apps) do
        local changed = false
        for id, entry in pairs(entries) do
            if entry.owner == session then
                entries[id] = nil
                changed = true
            end
        end
        if changed then
            if next(entries) == nil then
                self.apps[app] = nil
            end
            notify(self.app_watchers, app)
        end
    end
end

--- Creates or replaces the registration `id` of `app`. A registration at an
-- existing id by another session replaces it with a new creation number,
-- as a delete plus create would.
function store_mt:put(app, id, instance, session)
    local entries = self.apps[app]
    if not entries then
        entries = {}
        self.apps[app] = entries
    end
    local zxid = tick(self)
    local old = entries[id]
    if old and old.owner == session then
        old.instance = instance
        old.modified = zxid
        old.version = old.version + 1
    else
        entries[id] = { instance = instance, created = zxid, modified = zxid,
                        version = 0, owner = session }
    end
    notify(self.app_watchers, app)
    return entries[id]
end

--- Removes registration `id` of `app` only if `session` owns it (a
-- provider must never delete the node of a newer registration).
-- @return true, or nil and "ENONODE"/"ENOTOWNER"
function store_mt:delete(app, id, session)
    local entries = self.apps[app]
    local entry = entries and entries[id]
    if not entry then
        return nil, "ENONODE"
    end
    if entry.owner ~= session then
        return nil, "ENOTOWNER"
    end
    entries[id] = nil
    if next(entries) == nil then
        self.apps[app] = nil
    end
    tick(self)
    notify(self.app_watchers, app)
    return true
end

--- The registrations of `app`: id -> entry (do not modify).
function store_mt:entries(app)
    return self.apps[app] or {}
end

--- Application names with at least one registration, sorted.
function store_mt:app_names()
    local names = {}
    for app in pairs(self.apps) do
        names[#names + 1] = app
    end
    table.sort(names)
    return names
end

--- Value and version of a configuration path (nil when missing).
function store_mt:get_config(path)
    local item = self.configs[path]
    if not item then
        return nil, nil
    end
    return item.value, item.version
end

--- Sets `path` to `value` if its version is still `expected` (nil: must
-- not exist yet). Returns the new version, or nil and "EBADVERSION" /
-- "ENODEEXISTS".
function store_mt:set_config(path, value, expected)
    local item = self.configs[path]
    if expected == nil then
        if item then
            return nil, "ENODEEXISTS"
        end
        item = { value = value, version = 0 }
        self.configs[path] = item
    else
        if not item then
            return nil, "ENONODE"
        end
        if item.version ~= expected then
            return nil, "EBADVERSION"
        end
        item.value = value
        item.version = item.version + 1
    end
    tick(self)
    notify(self.config_watchers, path)
    return item.version
end

local function watch(set_by_key, key, fn)
    local set = set_by_key[key]
    if not set then
        set = {}
        set_by_key[key] = set
    end
    set[fn] = true
    local done = false
    return function()
        if done then
            return
        end
        done = true
        set[fn] = nil
        -- Only this set: a later watcher of the same key may have made a
        -- new one after this one emptied.
        if next(set) == nil and set_by_key[key] == set then
            set_by_key[key] = nil
        end
    end
end

--- Calls `fn(app)` after every change to `app`; returns the unwatch function.
function store_mt:watch_app(app, fn)
    return watch(self.app_watchers, app, fn)
end

--- Calls `fn(path)` after every change to `path`; returns the unwatch function.
function store_mt:watch_config(path, fn)
    return watch(self.config_watchers, path, fn)
end

return _M
