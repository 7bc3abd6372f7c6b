--- registry/etcd: Dubbo application-level discovery on etcd v3, through
-- its JSON gateway (docs/adapters.md walks through this file).
--
--   rt:registry("etcd://127.0.0.1:2379,127.0.0.1:22379/prefix?ttl=10")
--
-- Layout (disco.registry.etcd_codec): each instance is the key
-- `{prefix}/services/{app}/{host}:{port}` holding the ZooKeeper adapter's
-- JSON (disco.registry.zk_instance), bound to this plugin's lease (its
-- session; registry/etcd/lease); config values are keys
-- `{prefix}{path}` (`/dubbo/mapping/{interface}`,
-- `/dubbo/metadata/{app}/{revision}`), compare-and-set through a txn on
-- the key's mod_revision.
--
-- A watch reads the application's range once, then watches it from the
-- revision after that range (no gap, no duplicate), with each delete's
-- previous value; it resumes from the last revision it saw after a
-- dropped connection or an etcd restart, and re-lists (delivering only
-- real differences) when that revision was compacted
-- (registry/etcd/stream).
--
-- Identity of an instance: `created` and `modified` are the key's
-- create_revision and mod_revision, `owner` the lease ID. A registration
-- at an address taken by another process overwrites the key in one
-- revision (watchers see an update, never a delete then a create), so an
-- old registration's removal cannot reach a watcher after the new one;
-- unregister deletes the key only while it is bound to this plugin's
-- lease (a txn), so the newer registration stays (ENOTOWNER).
local codec = require "disco.registry.etcd_codec"
local zk_instance = require "disco.registry.zk_instance"
local registry_instance = require "disco.registry.instance"
local checked = registry_instance.checked
local gateway = require "registry.etcd.gateway"
local stream = require "registry.etcd.stream"
local lease_mod = require "registry.etcd.lease"

local M = {
    name = "etcd",
    version = "1.0.0",
    kind = "registry",
}

-- Compare-and-set of config values, as Dubbo's mapping does it: up to 10
-- tries, a random 0..100 ms pause between them.
local CAS_MAX_TRIES = 10
local CAS_MAX_WAIT_MS = 100
-- A read that failed (etcd unreachable) is tried again after this long.
local RETRY_MS = 500
local DEFAULT_TTL_S = 10
-- A diff this large is a bulk load (see registry/zookeeper).
local BULK_ENTRIES = 100

local ctx, gw, lease, prefix
-- What a reload hands over: the lease state (ID and registrations) and
-- the live watches, each with the revision it has seen.
local watches = {}
local handed_over = false

function M.check_config(conf)
    if type(conf.hosts) ~= "table" or #conf.hosts == 0 then
        return false, "hosts (from etcd://host:port,...) are required"
    end
    for _, hp in ipairs(conf.hosts) do
        if not (hp:match("^%d+%.%d+%.%d+%.%d+:%d+$") or hp:match("^%[[%x:]+%]:%d+$")) then
            return false, "etcd hosts must be IP literals with a port (127.0.0.1:2379), got " .. hp
        end
    end
    local _, perr = codec.check_prefix(conf.prefix or conf.chroot)
    if perr then
        return false, perr
    end
    if conf.ttl ~= nil and (not tonumber(conf.ttl) or tonumber(conf.ttl) < 1) then
        return false, "ttl must be a number of seconds >= 1"
    end
    return true
end

function M.init(c, conf)
    ctx = c
    prefix = assert(codec.check_prefix(conf.prefix or conf.chroot))
    gw = gateway.new(ctx, conf.hosts, "registry " .. (conf.url or "etcd"))
    lease = lease_mod.new(ctx, gw, math.floor(tonumber(conf.ttl) or DEFAULT_TTL_S))
    lease:start()
    gw.on_reconnect = function()
        for w in pairs(watches) do
            if w.stream then
                w.stream:resume()
            end
        end
    end
end

local function later(fn)
    ctx:after(0, fn)
end

local encode = zk_instance.encode_registration

--- Registers `instance` under this plugin's lease; cb(err). A key held by
-- another registration is overwritten (the newest registration wins, as
-- on ZooKeeper).
M.register = checked(function(instance, cb)
    local key = codec.instance_key(prefix, instance)
    local value = encode(instance)
    local function put(retry)
        lease:ensure(function(err, id)
            if err then
                return cb(err)
            end
            gw:call("/v3/kv/put", codec.put_request(key, value, id), function(perr)
                if perr and retry and perr:match("lease not found") then
                    -- Expired before the heartbeat noticed: a new lease,
                    -- and this put once more.
                    lease:lost(id)
                    return put(false)
                end
                if not perr then
                    lease.state.regs[key] = value
                end
                cb(perr)
            end)
        end)
    end
    put(true)
end, later)

--- Replaces the data of this plugin's registration; cb(err): ENONODE when
-- not registered here, ENOTOWNER when another registration took the key.
M.update = checked(function(instance, cb)
    local key = codec.instance_key(prefix, instance)
    local state = lease.state
    if not state.regs[key] or not state.id then
        return later(function() cb("ENONODE: " .. key .. " is not registered by this session") end)
    end
    local value = encode(instance)
    local body = codec.txn_request({ codec.compare(key, "LEASE", state.id) },
                                   { { put = { key, value, state.id } } })
    gw:call("/v3/kv/txn", body, function(err, doc)
        if err then
            return cb(err)
        end
        if not doc.succeeded then
            state.regs[key] = nil
            return cb("ENOTOWNER: " .. key .. " now belongs to another registration; left in place")
        end
        state.regs[key] = value
        cb(nil)
    end)
end, later)

--- Removes this plugin's registration, only while the key is bound to its
-- lease: a newer registration at the address stays (ENOTOWNER). cb(err).
M.unregister = checked(function(instance, cb)
    local key = codec.instance_key(prefix, instance)
    local state = lease.state
    if not state.regs[key] then
        return later(function() cb("ENONODE: " .. key .. " is not registered by this session") end)
    end
    state.regs[key] = nil
    local body = codec.txn_request({ codec.compare(key, "LEASE", state.id or "0") },
                                   { { delete = key } }, { { range = key } })
    gw:call("/v3/kv/txn", body, function(err, doc)
        if err then
            return cb(err)
        end
        if doc.succeeded then
            return cb(nil)
        end
        -- The failure branch read the key: present means someone else's.
        local r = doc.responses and doc.responses[1] and doc.responses[1].response_range
        if r and type(r.kvs) == "table" and #r.kvs > 0 then
            return cb("ENOTOWNER: " .. key .. " now belongs to another registration; left in place")
        end
        cb(nil)
    end)
end, later)

-- The instance of a put on `w`'s application, or nil (skipped with one
-- warning per key and revision; the key keeps its last good instance).
local function decoder(w)
    return function(id, kv)
        local _, value, berr = codec.kv_bytes(kv)
        local instance, why
        if value then
            instance, why = codec.kv_instance(kv, id, value)
        else
            why = berr
        end
        if not instance then
            local mark = tostring(kv.mod_revision)
            if w.warned[id] ~= mark then
                w.warned[id] = mark
                ctx.log:warn("skipping %s%s: %s", w.base, id, why)
            end
            return nil
        end
        w.warned[id] = nil
        return instance
    end
end

-- Applies `changes` to what `w` holds and calls its watcher with the real
-- differences (always on the first delivery).
local function deliver(w, changes)
    local diff = codec.apply(w.held, changes, decoder(w))
    local n = #diff.added + #diff.updated + #diff.removed
    if not w.first and n == 0 then
        return
    end
    w.first = false
    local sorted = registry_instance.update_sorted(w.sorted, diff)
    -- The caller gets its own copy to keep or change.
    local list = {}
    for i = 1, #sorted do
        list[i] = sorted[i]
    end
    w.delivered = (w.delivered or 0) + 1
    w.on_change(diff, list)
    if #diff.added + #diff.updated >= BULK_ENTRIES then
        ctx:settle_memory()
    end
end

local open_instances

-- Reads the application's whole range and turns it into changes against
-- what `w` holds, then watches from the revision after it.
local function relist(w, my_epoch)
    local function current()
        return not w.cancelled and my_epoch == w.epoch
    end
    gw:call("/v3/kv/range", codec.range_request(w.base, codec.prefix_end(w.base)), function(err, doc)
        if not current() then
            return
        end
        if err then
            ctx.log:warn("listing %s failed: %s; retrying", w.base, err)
            return ctx:after(RETRY_MS, function()
                if current() then
                    relist(w, my_epoch)
                end
            end)
        end
        w.relists = (w.relists or 0) + 1
        w.rev = codec.revision(doc.header and doc.header.revision)
        deliver(w, codec.relist_changes(w.held, doc.kvs, w.base))
        open_instances(w)
    end)
end

-- Watches `w`'s application from the revision after `w.rev`, in a new
-- epoch (the callbacks of an older stream are ignored).
open_instances = function(w)
    w.epoch = (w.epoch or 0) + 1
    local my_epoch = w.epoch
    if w.stream then
        w.reconnects = (w.reconnects or 0) + w.stream.reconnects
        w.stream:close()
    end
    w.stream = stream.open(ctx, gw, w.base, codec.prefix_end(w.base), w.rev + 1, {
        on_events = function(events)
            if w.cancelled or my_epoch ~= w.epoch then
                return
            end
            w.events = (w.events or 0) + #events
            local changes, top = codec.event_changes(events, w.base)
            if top > w.rev then
                w.rev = top
            end
            deliver(w, changes)
        end,
        on_compacted = function(compact_revision)
            if w.cancelled or my_epoch ~= w.epoch then
                return
            end
            ctx.log:info("watch of %s: revision %d compacted (up to %d); listing again",
                         w.base, w.rev + 1, compact_revision)
            w.compactions = (w.compactions or 0) + 1
            w.epoch = w.epoch + 1
            relist(w, w.epoch)
        end,
    })
end

local function new_handle(w)
    return {
        cancel = function()
            if not w.cancelled then
                w.cancelled = true
                watches[w] = nil
                if w.stream then
                    w.stream:close()
                end
            end
        end,
    }
end

--- Watches the instances of `app`; see the registry contract in
-- docs/plugins.md. Returns a handle with `cancel()`.
function M.watch_instances(app, on_change)
    local w = { kind = "instances", base = codec.app_prefix(prefix, app), on_change = on_change,
                held = {}, sorted = {}, warned = {}, first = true, epoch = 1 }
    watches[w] = true
    relist(w, w.epoch)
    return new_handle(w)
end

--- cb(err, names): applications with at least one instance, sorted.
function M.list_apps(cb)
    local base = codec.services_prefix(prefix)
    gw:call("/v3/kv/range", codec.range_request(base, codec.prefix_end(base), { keys_only = true }),
            function(err, doc)
        if err then
            return cb(err)
        end
        local keys = {}
        for _, kv in ipairs(doc.kvs or {}) do
            local key = codec.b64decode(kv.key or "")
            -- Only keys {app}/{id} are instances.
            if key and key:sub(#base + 1):match("^[^/]+/[^/]+$") then
                keys[#keys + 1] = key
            end
        end
        cb(nil, codec.children(keys, base))
    end)
end

-- cb(err, value, mod_revision, header_revision) of one key.
local function read_key(key, cb)
    gw:call("/v3/kv/range", codec.range_request(key), function(err, doc)
        if err then
            return cb(err)
        end
        local rev = codec.revision(doc.header and doc.header.revision)
        local kv = doc.kvs and doc.kvs[1]
        if not kv then
            return cb(nil, nil, nil, rev)
        end
        local _, value, berr = codec.kv_bytes(kv)
        if not value then
            return cb("EPROTO: " .. berr)
        end
        cb(nil, value, codec.revision(kv.mod_revision), rev)
    end)
end

--- cb(err, value, version); value nil when the key is missing. The
-- version is the key's mod_revision.
function M.get_config(path, cb)
    read_key(codec.config_key(prefix, path), function(err, value, version)
        cb(err, value, version)
    end)
end

-- cb(err, children, header_revision): the children of `path` (nil when
-- neither the key nor anything below it exists).
local function read_children(path, cb)
    local key = codec.config_key(prefix, path)
    local base = key .. "/"
    -- One range from the key itself to the end of its subtree.
    gw:call("/v3/kv/range", codec.range_request(key, codec.prefix_end(base), { keys_only = true }),
            function(err, doc)
        if err then
            return cb(err)
        end
        local keys, exists = {}, false
        for _, kv in ipairs(doc.kvs or {}) do
            local k = codec.b64decode(kv.key or "")
            if k == key or (k and k:sub(1, #base) == base) then
                exists = true
                keys[#keys + 1] = k
            end
        end
        cb(nil, exists and codec.children(keys, base) or nil,
           codec.revision(doc.header and doc.header.revision))
    end)
end

--- cb(err, children): the names below `path`, sorted; nil when missing.
function M.list_config(path, cb)
    read_children(path, function(err, names)
        cb(err, names)
    end)
end

-- How each kind of config watch reads its path, what range it watches,
-- and the mark that moves when what the watcher sees changes.
local READERS = {
    config = {
        read = function(w, cb)
            read_key(w.key, function(err, value, version, rev)
                cb(err, value, version or false, rev)
            end)
        end,
        range = function(w) return w.key, nil end,
    },
    children = {
        read = function(w, cb)
            read_children(w.path, function(err, names, rev)
                cb(err, names, names and table.concat(names, "/") or false, rev)
            end)
        end,
        range = function(w) return w.key, codec.prefix_end(w.key .. "/") end,
    },
}

local arm_config

-- Reads `w`'s path; the first read records the mark, later reads tell
-- the watcher when it moved. Then watches from the revision after it;
-- every event batch (or a compaction) reads again.
arm_config = function(w)
    w.epoch = (w.epoch or 0) + 1
    local my_epoch = w.epoch
    local reader = READERS[w.kind]
    local function current()
        return not w.cancelled and my_epoch == w.epoch
    end
    reader.read(w, function(err, value, mark, rev)
        if not current() then
            return
        end
        if err then
            return ctx:after(RETRY_MS, function()
                if current() then
                    arm_config(w)
                end
            end)
        end
        if not w.initialized then
            w.initialized, w.mark = true, mark
        elseif mark ~= w.mark then
            w.mark = mark
            w.cb(value, mark or nil)
        end
        if w.stream then
            w.stream:close()
        end
        local from, to = reader.range(w)
        w.stream = stream.open(ctx, gw, from, to, rev + 1, {
            on_events = function()
                if current() then
                    arm_config(w)
                end
            end,
            on_compacted = function()
                if current() then
                    arm_config(w)
                end
            end,
        })
    end)
end

local function new_config_watch(kind, path, cb)
    local w = { kind = kind, path = path, key = codec.config_key(prefix, path), cb = cb,
                initialized = false }
    watches[w] = true
    arm_config(w)
    return new_handle(w)
end

--- cb(value, version) after each change of `path` (nil, nil when it is
-- deleted). Returns a handle with `cancel()`.
function M.watch_config(path, cb)
    return new_config_watch("config", path, cb)
end

--- cb(children) after each change of the children of `path`. Returns a
-- handle with `cancel()`.
function M.watch_config_children(path, cb)
    return new_config_watch("children", path, cb)
end

--- Read-modify-write with a mod_revision check: `fn(old)` returns the new
-- value or nil to leave it; created when missing; retried on a conflict
-- (10 tries, 0-100 ms apart). cb(err, value).
function M.cas_config(path, fn, cb)
    local key = codec.config_key(prefix, path)
    local tries = 0
    local attempt
    local function retry(why)
        if tries >= CAS_MAX_TRIES then
            return cb("EBADVERSION: " .. path .. " kept changing; gave up after " .. tries
                      .. " tries (" .. tostring(why) .. ")")
        end
        ctx:after(math.random(0, CAS_MAX_WAIT_MS), attempt)
    end
    attempt = function()
        tries = tries + 1
        read_key(key, function(err, old, version)
            if err then
                return cb(err)
            end
            local ok, new = pcall(fn, old)
            if not ok then
                return cb("EINVAL: cas function failed: " .. tostring(new))
            end
            if new == nil then
                return cb(nil, old)
            end
            -- A missing key has mod_revision 0 in a compare.
            local body = codec.txn_request({ codec.compare(key, "MOD", version or 0) },
                                           { { put = { key, tostring(new) } } })
            gw:call("/v3/kv/txn", body, function(terr, doc)
                if terr then
                    return cb(terr)
                end
                if not doc.succeeded then
                    return retry("mod_revision moved")
                end
                cb(nil, new)
            end)
        end)
    end
    attempt()
end

--- The connection, lease and watch counters (diagnostics, `disco
-- serve`'s readiness and metrics, the specs): `state` ("connected" once
-- etcd answered, "connecting" after a transport error), `connects`,
-- `disconnects`, `generation` (leases granted), `expiries` (leases lost);
-- `lease` (ID or nil), `grants`, `keepalives`, `losses`;
-- over the live instance watches: `relists` (ranges read), `compactions`
-- (re-lists forced by one), `reconnects` (streams resumed), `events`
-- (watch events received).
function M.stats()
    local relists, compactions, reconnects, events = 0, 0, 0, 0
    for w in pairs(watches) do
        if w.kind == "instances" then
            relists = relists + (w.relists or 0)
            compactions = compactions + (w.compactions or 0)
            reconnects = reconnects + (w.reconnects or 0) + (w.stream and w.stream.reconnects or 0)
            events = events + (w.events or 0)
        end
    end
    return { state = gw.state, connects = gw.connects, disconnects = gw.disconnects,
             generation = lease.counters.grants, expiries = lease.counters.losses,
             lease = lease.state.id,
             grants = lease.counters.grants, keepalives = lease.counters.keepalives,
             losses = lease.counters.losses, relists = relists, compactions = compactions,
             reconnects = reconnects, events = events }
end

-- A reload hands the lease (ID and registrations) and the live watches
-- (with the revisions they saw) to the new version.
function M.save()
    handed_over = true
    return { lease = lease.state, counters = lease.counters, watches = watches, gw = gw }
end

function M.restore(state)
    if not state then
        return
    end
    -- The old version's connections go with it; nothing it started calls
    -- back any more.
    state.gw:close()
    lease:adopt(state.lease, state.counters)
    watches = state.watches
    for w in pairs(watches) do
        if w.stream then
            w.reconnects = (w.reconnects or 0) + w.stream.reconnects
            w.stream:close()
            w.stream = nil
        end
        if w.kind == "instances" then
            if w.rev then
                -- Resumes from the revision after the last one seen.
                open_instances(w)
            else
                w.epoch = w.epoch + 1
                relist(w, w.epoch)
            end
        else
            arm_config(w)
        end
    end
end

-- Without a hand-over the watches stop and the heartbeat with them; the
-- registrations go when the lease's TTL runs out (or at once through
-- unregister, as `disco provide` does on SIGTERM).
function M.destroy()
    if handed_over then
        lease:stop()
        return
    end
    for w in pairs(watches) do
        w.cancelled = true
        if w.stream then
            w.stream:close()
        end
    end
    lease:stop()
    gw:close()
end

return M
