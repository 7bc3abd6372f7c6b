--- registry/zookeeper: Dubbo application-level discovery on ZooKeeper.
--
-- Layout and JSON exactly as Dubbo 3 (through Curator) writes them
-- (WIRE.md §1–§2): each instance is an ephemeral node
-- `{root}/{app}/{host}:{port}` (root `/services`, or `/{group}`) holding
-- compact Curator JSON; parents are containers. Reading accepts the Java
-- 2.7/3.x and dubbo-go variants; a child that is not valid instance JSON is
-- skipped with a warning naming its path and the reason, and its siblings
-- are unaffected. A child that turns bad after being good keeps its last
-- good version (last-good retention).
--
--   rt:registry("zookeeper://127.0.0.1:2181/chroot?root=/services&session_timeout=30000")
--
-- The session and every node and cache on it belong to the host (ctx:zk);
-- a reload hands them to the new version, so registrations stay.
local zk_instance = require "disco.registry.zk_instance"
local registry_instance = require "disco.registry.instance"
local checked = registry_instance.checked

local M = {
    name = "zookeeper",
    version = "1.0.0",
    kind = "registry",
}

-- Compare-and-set of config values, as Dubbo's mapping does it: up to 10
-- tries, a random 0..100 ms pause between them.
local CAS_MAX_TRIES = 10
local CAS_MAX_WAIT_MS = 100

-- A diff this large is a bulk load: the host is asked to give the garbage
-- of parsing back once loads go quiet (one full collection per burst; a
-- small diff is not worth a walk of a large heap).
local BULK_ENTRIES = 100

local ctx, session, root
-- What a reload hands over: this session's registrations (address ->
-- ephemeral node), and the live watches (records shared with the caller's
-- handle).
local nodes = {}
local watches = {}
local handed_over = false
-- Session counters for stats(); handed over on a reload with the session
-- whose callback keeps counting into this very table.
local counters = { connects = 0, disconnects = 0, expiries = 0 }

function M.check_config(conf)
    if type(conf.hosts) ~= "table" or #conf.hosts == 0 then
        return false, "hosts (from zookeeper://host:port,...) are required"
    end
    if conf.root ~= nil and (type(conf.root) ~= "string" or not conf.root:match("^/[^/]")) then
        return false, "root must be an absolute path such as /services, got " .. tostring(conf.root)
    end
    if conf.session_timeout ~= nil and not tonumber(conf.session_timeout) then
        return false, "session_timeout must be a number of milliseconds"
    end
    if conf.auth ~= nil and not tostring(conf.auth):match("^[^:]+:.") then
        return false, "auth must be digest:user:password (or user:password)"
    end
    return true
end

local function auth_of(conf)
    if not conf.auth then
        return nil
    end
    return (tostring(conf.auth):gsub("^digest:", ""))
end

function M.init(c, conf)
    ctx = c
    root = conf.root or (conf.group and "/" .. conf.group) or "/services"
    local auth = auth_of(conf)
    local mine = counters
    session = assert(ctx:zk({
        hosts = table.concat(conf.hosts, ",") .. (conf.chroot or ""),
        session_timeout = tonumber(conf.session_timeout),
        auth = auth,
        acl = auth and "creator_all" or "open",
        name = "registry " .. (conf.url or "zookeeper"),
        on_state = function(_, state, generation)
            ctx.log:info("session %s (generation %d)", state, generation)
            if state == "connected" then
                mine.connects = mine.connects + 1
            elseif state == "connecting" and mine.last == "connected" then
                mine.disconnects = mine.disconnects + 1
            elseif state == "expired" then
                mine.expiries = mine.expiries + 1
            end
            mine.last = state
        end,
    }))
end

local function later(fn)
    ctx:after(0, fn)
end

local function node_path(instance)
    return root .. "/" .. instance.name .. "/" .. instance.host .. ":" .. instance.port
end

local encode = zk_instance.encode_registration

--- Registers `instance` as an ephemeral node of this session; cb(err).
M.register = checked(function(instance, cb)
    local path = node_path(instance)
    local existing = nodes[path]
    if existing and not existing:is_closed() then
        return existing:update(encode(instance), function(err) cb(err) end)
    end
    local answered = false
    local node, err = session:ephemeral(path, encode(instance), {
        on_state = function(_, state, state_err)
            if state == "lost" then
                ctx.log:warn("registration %s lost: %s", path, tostring(state_err))
            elseif state == "recreated" then
                ctx.log:info("registration %s re-created for the new session", path)
            end
            if not answered and (state == "created" or state == "lost") then
                answered = true
                cb(state == "lost" and (state_err or "EZK: registration lost") or nil)
            end
        end,
    })
    if not node then
        return later(function() cb(err) end)
    end
    nodes[path] = node
end, later)

--- Replaces the data of this session's registration; cb(err).
M.update = checked(function(instance, cb)
    local node = nodes[node_path(instance)]
    if not node or node:is_closed() then
        return later(function() cb("ENONODE: " .. node_path(instance) .. " is not registered by this session") end)
    end
    node:update(encode(instance), function(err) cb(err) end)
end, later)

--- Removes this session's registration; a node re-created at the same path
-- by another session stays (ENOTOWNER). cb(err).
M.unregister = checked(function(instance, cb)
    local path = node_path(instance)
    local node = nodes[path]
    nodes[path] = nil
    if not node then
        return later(function() cb("ENONODE: " .. path .. " is not registered by this session") end)
    end
    session:get(path, nil, function(err, result)
        local ours = not err and result.stat.ephemeral_owner == session:session_id()
        -- The node deletes itself only if this session owns it.
        node:close()
        if err and not err:match("^ENONODE") then
            return cb(err)
        end
        if not err and not ours then
            return cb("ENOTOWNER: " .. path .. " now belongs to another registration; left in place")
        end
        cb(nil)
    end)
end, later)

-- An instance's identity (created, modified, owner) held in three array
-- slots and read by name: half the memory of a table with three named
-- fields, and a consumer holds one per instance. Read-only.
local IDENTITY_SLOTS = { created = 1, modified = 2, owner = 3 }
local IDENTITY_MT = {
    __index = function(t, k)
        local slot = IDENTITY_SLOTS[k]
        return slot and rawget(t, slot)
    end,
    __newindex = function() error("an instance's identity is read-only", 2) end,
}

local locate = registry_instance.locate

-- The instance of a cache entry, or nil and why not.
local function decode(entry)
    if entry.too_large then
        return nil, "node data over the size limit"
    end
    return zk_instance.decode(entry.data, entry.name)
end

-- Turns the cache's child entries into instances, keeping the last good
-- version of a child whose data went bad, and calls the watcher with the
-- real differences. The instances live in one list sorted by id (the
-- child's name), kept up to date change by change and searched by halving:
-- re-sorting thousands of instances on every event would dominate its
-- cost, and a second index by name would cost a consumer ~30 bytes per
-- instance.
local function apply(w, diff, first)
    local out = { added = {}, updated = {}, removed = {} }
    local sorted = w.sorted
    -- The parses on_read made during this round (see open_cache).
    local early = w.early
    w.early = {}
    local function take(entry)
        local path = w.path .. "/" .. entry.name
        local stat = entry.stat
        local instance, why
        local read = early[entry.name]
        if read and read.czxid == stat.czxid and read.mzxid == stat.mzxid then
            instance, why = read.instance, read.why
        else
            instance, why = decode(entry)
        end
        if not instance then
            local mark = entry.stat and (entry.stat.czxid .. "/" .. entry.stat.mzxid) or "?"
            if w.warned[entry.name] ~= mark then
                w.warned[entry.name] = mark
                ctx.log:warn("skipping %s: %s", path, why)
            end
            return
        end
        w.warned[entry.name] = nil
        instance.identity = setmetatable({ stat.czxid, stat.mzxid, stat.ephemeral_owner },
                                         IDENTITY_MT)
        local at, found = locate(sorted, entry.name)
        if not found then
            table.insert(sorted, at, instance)
            out.added[#out.added + 1] = instance
            return
        end
        local old = sorted[at]
        sorted[at] = instance
        if old.identity.created ~= instance.identity.created
            or old.identity.modified ~= instance.identity.modified then
            out.updated[#out.updated + 1] = instance
        end
    end
    for _, entry in ipairs(diff.added) do
        take(entry)
    end
    for _, entry in ipairs(diff.updated) do
        take(entry)
    end
    for _, entry in ipairs(diff.removed) do
        w.warned[entry.name] = nil
        local at, found = locate(sorted, entry.name)
        if found then
            out.removed[#out.removed + 1] = table.remove(sorted, at)
        end
    end
    if first or #out.added + #out.updated + #out.removed > 0 then
        -- The caller gets its own copy to keep or change.
        local list = {}
        for i = 1, #sorted do
            list[i] = sorted[i]
        end
        w.on_change(out, list)
    end
end

-- Each watch record carries an epoch: a reload opens a new cache for it
-- and bumps the epoch, so callbacks of the old version's cache are ignored.
local function open_cache(w)
    w.epoch = (w.epoch or 0) + 1
    w.early = {}
    local my_epoch = w.epoch
    local first = w.first
    w.cache = assert(session:children_cache(w.path, {
        max_data = zk_instance.MAX_BYTES,
        -- Each child's data arrives once and the parsed instance is what
        -- is kept: the cache keeps no second copy.
        keep_data = false,
        -- Each child is parsed as its read completes, while the others are
        -- in flight, not all at once when the last one lands (at 10,000
        -- instances ~90 ms off the end of a one-second cold start). apply()
        -- takes the parse if the diff reports that same version.
        on_read = function(_, entry)
            if w.cancelled or my_epoch ~= w.epoch then
                return
            end
            local instance, why = decode(entry)
            w.early[entry.name] = { czxid = entry.stat.czxid, mzxid = entry.stat.mzxid,
                                    instance = instance, why = why }
        end,
        on_change = function(_, diff)
            if w.cancelled or my_epoch ~= w.epoch then
                return
            end
            apply(w, diff, first)
            if #diff.added + #diff.updated >= BULK_ENTRIES then
                ctx:settle_memory()
            end
            first = false
            w.first = false
        end,
    }))
end

--- Watches the instances of `app`; see the registry contract in
-- docs/plugins.md. Returns a handle with `cancel()`.
function M.watch_instances(app, on_change)
    local w = { kind = "instances", path = root .. "/" .. app, on_change = on_change,
                sorted = {}, warned = {}, first = true }
    watches[w] = true
    open_cache(w)
    return {
        cancel = function()
            if not w.cancelled then
                w.cancelled = true
                watches[w] = nil
                w.cache:close()
            end
        end,
    }
end

--- cb(err, names): applications under the root with at least one instance.
function M.list_apps(cb)
    session:children(root, nil, function(err, result)
        if err then
            if err:match("^ENONODE") then
                return cb(nil, {})
            end
            return cb(err)
        end
        local names, pending = {}, #result.children
        if pending == 0 then
            return cb(nil, names)
        end
        for _, app in ipairs(result.children) do
            session:exists(root .. "/" .. app, nil, function(e, r)
                if not e and r.stat.num_children > 0 then
                    names[#names + 1] = app
                end
                pending = pending - 1
                if pending == 0 then
                    table.sort(names)
                    cb(nil, names)
                end
            end)
        end
    end)
end

--- cb(err, value, version); value nil when the path does not exist.
function M.get_config(path, cb)
    session:get(path, nil, function(err, result)
        if err then
            if err:match("^ENONODE") then
                return cb(nil, nil, nil)
            end
            return cb(err)
        end
        cb(nil, result.data, result.stat.version)
    end)
end

-- The sorted names of a children read.
local function sorted_children(result)
    local names = {}
    for i, name in ipairs(result.children) do
        names[i] = name
    end
    table.sort(names)
    return names
end

-- How each kind of config watch reads its path: the request, and what a
-- read tells the watcher: the value and a mark that moves when it changes
-- (false when the path is missing).
local READERS = {
    config = {
        request = "get",
        take = function(result) return result.data, result.stat.version end,
    },
    children = {
        request = "children",
        take = function(result)
            local names = sorted_children(result)
            return names, table.concat(names, "/")
        end,
    },
}

-- Reads `w.path` with a watch (its data or its children, per `w.kind`) and
-- calls the watcher when the mark moved; re-arms on every fire. The first
-- read only records the mark: changes after it are news. A missing path is
-- watched with exists; a watch lost with an expired session, or a request
-- refused between two handles, is re-armed by a timer.
local function arm(w)
    local my_epoch = w.epoch
    local reader = READERS[w.kind]
    local function current()
        return not w.cancelled and my_epoch == w.epoch
    end
    local function rearm()
        if current() then
            later(function() arm(w) end)
        end
    end
    local function retry_soon()
        ctx:after(500, function()
            if current() then
                arm(w)
            end
        end)
    end
    local function deliver(value, mark)
        if not current() then
            return
        end
        if not w.initialized then
            w.initialized, w.mark = true, mark
        elseif mark ~= w.mark then
            w.mark = mark
            w.cb(value, mark or nil)
        end
    end
    local function missing()
        deliver(nil, false)
    end
    local ok = session[reader.request](session, w.path, { watch = rearm }, function(err, result)
        if not err then
            return deliver(reader.take(result))
        end
        if not err:match("^ENONODE") then
            return retry_soon() -- session trouble
        end
        -- Missing: an exists watch notices the creation. A node created
        -- between the read and this check is read again at once (the data
        -- watch just set fires only on a later change), as news after
        -- having seen it missing, in a new epoch so that the watch set
        -- here does not start a second chain of reads.
        local asked = session:exists(w.path, { watch = rearm }, function(e)
            if e and e:match("^ENONODE") then
                return missing()
            end
            if not e and current() then
                if not w.initialized then
                    missing() -- the first observation: only recorded
                end
                w.epoch = w.epoch + 1
                later(function() arm(w) end)
            end
        end)
        if not asked then
            retry_soon()
        end
    end)
    if not ok then
        retry_soon()
    end
end

local function new_watch(kind, path, cb)
    local w = { kind = kind, path = path, cb = cb, epoch = 1, initialized = false }
    watches[w] = true
    arm(w)
    return {
        cancel = function()
            w.cancelled = true
            watches[w] = nil
        end,
    }
end

--- cb(value, version) after each change of `path` (value and version nil
-- when it is gone). Returns a handle with `cancel()`.
function M.watch_config(path, cb)
    return new_watch("config", path, cb)
end

--- cb(err, children): the names of the children of `path`, sorted; nil
-- (without an error) when the path does not exist.
function M.list_config(path, cb)
    local ok, err = session:children(path, nil, function(cerr, result)
        if cerr then
            if cerr:match("^ENONODE") then
                return cb(nil, nil)
            end
            return cb(cerr)
        end
        cb(nil, sorted_children(result))
    end)
    if not ok then
        later(function() cb(err) end)
    end
end

--- cb(children) after each change of the children of `path` (sorted; nil
-- when it is gone). Returns a handle with `cancel()`.
function M.watch_config_children(path, cb)
    return new_watch("children", path, cb)
end

--- Read-modify-write with a version check, as Dubbo's mapping does:
-- `fn(old)` returns the new value or nil to leave it; created when
-- missing; retried on a conflict. cb(err, value).
function M.cas_config(path, fn, cb)
    local tries = 0
    local attempt
    local function retry(err)
        if tries >= CAS_MAX_TRIES then
            return cb("EBADVERSION: " .. path .. " kept changing; gave up after "
                      .. tries .. " tries (" .. tostring(err) .. ")")
        end
        ctx:after(math.random(0, CAS_MAX_WAIT_MS), attempt)
    end
    attempt = function()
        tries = tries + 1
        session:get(path, nil, function(err, result)
            local old, version
            if err then
                if not err:match("^ENONODE") then
                    return cb(err)
                end
            else
                old, version = result.data, result.stat.version
            end
            local ok, new = pcall(fn, old)
            if not ok then
                return cb("EINVAL: cas function failed: " .. tostring(new))
            end
            if new == nil then
                return cb(nil, old)
            end
            local function done(werr)
                if not werr then
                    return cb(nil, new)
                end
                if werr:match("^EBADVERSION") or werr:match("^ENODEEXISTS") then
                    return retry(werr)
                end
                cb(werr)
            end
            if version == nil then
                session:create(path, new, { parents = true }, done)
            else
                session:set(path, new, version, done)
            end
        end)
    end
    attempt()
end

--- The ZooKeeper session (diagnostics and tests; not part of the registry
-- contract).
function M.session()
    return session
end

--- The session's state and counters (for `disco serve`'s metrics and
-- readiness): `state`, `generation`, `session_id`, `connects`,
-- `disconnects` (connection drops), `expiries`; and the ZooKeeper reads of
-- the live instance watches (bench/churn.lua counts a consumer's reads
-- with them): `lists` (getChildren) and `reads` (getData).
function M.stats()
    local lists, reads = 0, 0
    for w in pairs(watches) do
        if w.cache then
            local st = w.cache:stats()
            lists, reads = lists + st.lists, reads + st.reads
        end
    end
    return { state = session:state(), generation = session:generation(),
             session_id = session:session_id(), connects = counters.connects,
             disconnects = counters.disconnects, expiries = counters.expiries,
             lists = lists, reads = reads }
end

-- A reload hands the session, its registrations, the live watches and the
-- session counters to the new version.
function M.save()
    handed_over = true
    return { session = session, nodes = nodes, watches = watches, counters = counters }
end

function M.restore(state)
    if not state then
        return
    end
    -- The session this version's init opened is not needed.
    session:close()
    session = ctx:adopt(state.session)
    nodes = state.nodes
    watches = state.watches
    counters = state.counters or counters
    for w in pairs(watches) do
        if w.kind == "instances" then
            -- The new cache's first diff is compared with what the caller
            -- already has: only real differences reach it.
            local old_cache = w.cache
            w.instances = nil -- an older version's index by name
            open_cache(w)
            old_cache:close()
        else
            w.epoch = w.epoch + 1
            arm(w)
        end
    end
end

-- Without a hand-over the session closes with this instance (the host
-- owns it), which removes its registrations as a ZooKeeper session end
-- does.
function M.destroy()
    if handed_over then
        return
    end
    for w in pairs(watches) do
        w.cancelled = true
        if w.cache then
            w.cache:close()
        end
    end
end

return M
