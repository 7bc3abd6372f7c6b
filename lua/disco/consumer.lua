--- The consumer flow: from a Dubbo service ID to its address list
-- (DESIGN.md §2, c1–c4).
--
--    c1 resolve the service ID to applications (the mapping chain, live)
--    c2 list and watch each application's instances (the registry)
--    c3 group instances by revision; fetch each unknown (app, revision)
--       once, from one randomly chosen instance of it, through the revision
--       cache (single flight, retried with backoff by the cache itself)
--    c4 build every instance's URLs from its revision's MetadataInfo,
--       keep those of the subscribed service ID, and call the listener
--       with the diff and the full list, only when the list changed
--
-- Safety: an instance whose revision cannot be read yet is left out, and
-- added when a retry succeeds; an instance that had been resolved keeps
-- its last resolved URLs while its new revision cannot be read, so a
-- failed fetch never removes an address.
--
--    local c = rt:consumer{ registry = rt:registry("zookeeper://127.0.0.1:2181") }
--    local sub = c:subscribe("dubbo:com.acme.Cart:1.0.0", function(diff, list)
--        for _, node in ipairs(list) do print(node.url) end
--    end)
-- @module disco.consumer

local address_list = require "disco.address_list"
local client_pool = require "disco.metadata.client_pool"
local fetch = require "disco.metadata.fetch"
local instance_model = require "disco.instance"
local mapping = require "disco.mapping"
local metadata_info = require "disco.metadata_info"
local service_id = require "disco.service_id"
local subscription = require "disco.subscription"
local validation = require "disco.validation"

local math_random = math.random
local pairs = pairs
local tostring = tostring

local _M = {}
local consumer = {}
consumer.__index = consumer

--- How many instances of a revision one fetch attempt tries before the
-- attempt counts as failed (the revision cache retries it later).
_M.INSTANCES_PER_ATTEMPT = 3

local CACHE_OPTIONS = { "max_entries", "max_bytes", "fast_retries", "fast_retry_ms",
                        "slow_retry_ms", "jitter", "persist_path", "persist_delay_ms" }

--- Creates a consumer (use `rt:consumer(conf)`).
-- @tparam disco.runtime rt
-- @tparam table conf `registry` (the registry plugin, required),
-- `mapping` (a `disco.mapping` chain; default: the default chain on that
-- registry), `metadata_group` ("dubbo"), `cache` (revision cache options:
-- `max_entries`, `max_bytes`, `fast_retries`, `fast_retry_ms`,
-- `slow_retry_ms`, `jitter`, `persist_path`), `metadata_timeout` (ms per
-- MetadataService call, default 5000), `fetchers` (storage type ->
-- `fetch(instance, app, revision, cb)`, replacing the defaults),
-- `subscribed_services` (the fallback application list), `validation`
-- (the offline validation chain, `disco.validation`: `{ rules =,
-- timeout_ms =, conf =, period_ms = }`, default the default chain; a
-- chain built with `validation.new`; or `false`: removals are applied at
-- once), `snapshot` (`{ dir = PATH, max_age_ms = 86400000, wait_ms =
-- 3000 }`: every subscription's list is written to `dir` on change and
-- served, marked stale, when the registry has not delivered it within
-- `wait_ms` of the subscription; see docs/lua-api.md)
function _M.new(rt, conf)
    if type(conf) ~= "table" then
        error("consumer configuration must be a table", 2)
    end
    local registry = conf.registry
    if type(registry) ~= "table" or type(registry.watch_instances) ~= "function" then
        error("consumer 'registry' must be a registry plugin (rt:registry(url))", 2)
    end
    local group = conf.metadata_group or "dubbo"
    local self = setmetatable({
        rt = rt,
        registry = registry,
        log = rt:logger("consumer"),
        apps = {}, -- app -> state
        subs = {},
        decoded = {}, -- "app\0revision" -> MetadataInfo
        stats = { fetch_calls = 0, fetch_errors = 0, invalid_metadata = 0 },
        calls = {}, -- "host:port" -> { last_ok =, last_failed =, ok =, failed =, latency_ms = }
        closed = false,
    }, consumer)
    if conf.validation ~= false then
        local vconf = conf.validation
        if type(vconf) == "table" and type(vconf.validate) == "function" then
            self.validation = vconf
        else
            if vconf ~= nil and type(vconf) ~= "table" then
                error("consumer 'validation' must be a table or false", 2)
            end
            vconf = vconf or {}
            local chain, verr = validation.new(rt, {
                rules = vconf.rules, conf = vconf.conf, timeout_ms = vconf.timeout_ms,
                period_ms = vconf.period_ms, registry = registry,
            })
            if not chain then
                error("cannot set up the validation chain: " .. tostring(verr), 2)
            end
            self.validation = chain
        end
    end
    if conf.snapshot ~= nil then
        local sconf = conf.snapshot
        if type(sconf) ~= "table" or type(sconf.dir) ~= "string" or sconf.dir == "" then
            error("consumer 'snapshot' must be a table with a 'dir' string", 2)
        end
        for _, key in ipairs({ "max_age_ms", "wait_ms" }) do
            if sconf[key] ~= nil and (type(sconf[key]) ~= "number" or sconf[key] < 0) then
                error("consumer 'snapshot." .. key .. "' must be a number >= 0", 2)
            end
        end
        self.snapshot = { dir = sconf.dir, max_age_ms = sconf.max_age_ms or 86400000,
                          wait_ms = sconf.wait_ms or 3000 }
    end
    local chain = conf.mapping
    if not chain then
        local merr
        chain, merr = mapping.new(rt, { registry = registry,
                                        subscribed_services = conf.subscribed_services })
        if not chain then
            error("cannot set up the mapping chain: " .. tostring(merr), 2)
        end
    end
    self.mapping = chain
    self.clients = client_pool.new(rt.loop, { timeout = conf.metadata_timeout })
    self.fetchers = {
        remote = fetch.remote(registry, group),
        ["local"] = fetch.local_service(self.clients, function(fn) rt:after(0, fn) end),
    }
    for storage, fn in pairs(conf.fetchers or {}) do
        self.fetchers[storage] = fn
    end
    local cache_conf = {
        fetch = function(app, revision) self:fetch(app, revision) end,
        on_evict = function(app, revision) self.decoded[app .. "\0" .. revision] = nil end,
    }
    for _, key in ipairs(CACHE_OPTIONS) do
        if conf.cache and conf.cache[key] ~= nil then
            cache_conf[key] = conf.cache[key]
        end
    end
    local cache, err = rt.loop:revcache(cache_conf)
    if not cache then
        error("cannot create the revision cache: " .. tostring(err), 2)
    end
    self.cache = cache
    rt:emit("ServiceDiscoveryInitialized", { role = "consumer" })
    return self
end

local function key_of(app, revision)
    return app .. "\0" .. revision
end

-- The decoded MetadataInfo of (app, revision) if the cache holds it.
function consumer:known(app, revision)
    local key = key_of(app, revision)
    local info = self.decoded[key]
    if info then
        return info
    end
    local bytes = self.cache:lookup(app, revision)
    if bytes then
        info = metadata_info.from_json(bytes)
        self.decoded[key] = info
    end
    return info
end

-- The revision cache's fetch callback: one attempt at reading (app,
-- revision) from up to INSTANCES_PER_ATTEMPT random instances of it.
function consumer:fetch(app, revision)
    local state = self.apps[app]
    local candidates = {}
    for _, inst in ipairs(state and state.by_revision[revision] or {}) do
        candidates[#candidates + 1] = inst
    end
    -- A random order spreads the reads over the instances of a revision.
    for i = #candidates, 2, -1 do
        local j = math_random(i)
        candidates[i], candidates[j] = candidates[j], candidates[i]
    end
    local tries = math.min(#candidates, _M.INSTANCES_PER_ATTEMPT)
    if tries == 0 then
        return self.cache:reject(app, revision, "no instance of " .. app
                                 .. " has revision " .. revision .. " any more", "ENOENT")
    end
    local reasons = {}
    local function try(i)
        if self.closed then
            return
        end
        if i > tries then
            return self.cache:reject(app, revision, table.concat(reasons, "; "))
        end
        local inst = candidates[i]
        local storage = instance_model.storage_type(inst)
        local fetcher = self.fetchers[storage]
        if not fetcher then
            reasons[#reasons + 1] = "EINVAL: no fetcher for storage type " .. storage
            return try(i + 1)
        end
        self.stats.fetch_calls = self.stats.fetch_calls + 1
        fetcher(inst, app, revision, function(err, json)
            if self.closed then
                return
            end
            local info
            if not err then
                local why
                info, why = metadata_info.from_json(json)
                if not info then
                    err = "EINVAL: metadata of " .. app .. " revision " .. revision
                        .. " from " .. inst.host .. ":" .. inst.port .. " is invalid: " .. tostring(why)
                    self.stats.invalid_metadata = self.stats.invalid_metadata + 1
                elseif info.app ~= app then
                    err = "EINVAL: metadata from " .. inst.host .. ":" .. inst.port
                        .. " is of application " .. tostring(info.app) .. ", not " .. app
                    info = nil
                end
            end
            if err then
                self.stats.fetch_errors = self.stats.fetch_errors + 1
                reasons[#reasons + 1] = inst.host .. ":" .. inst.port .. ": " .. tostring(err)
                return try(i + 1)
            end
            -- The revision is the provider's name for it: stored under the
            -- key consumers look it up by, whatever algorithm made it.
            info.revision = revision
            self.decoded[key_of(app, revision)] = info
            self.cache:resolve(app, revision, info:to_json())
        end)
    end
    try(1)
end

-- Asks the cache for (app, revision) until it is read or no longer needed.
function consumer:want(state, revision)
    if state.wanted[revision] then
        return
    end
    state.wanted[revision] = true
    if not state.tried[revision] then
        -- The first list waits for the first attempt at every revision.
        state.pending[revision] = true
    end
    local app = state.name
    local bytes, werr = self.cache:want(app, revision, function(err)
        state.wanted[revision] = nil
        state.pending[revision], state.tried[revision] = nil, true
        if self.closed or state.detached then
            return
        end
        if err then
            if err:match("^ECANCELED") then
                return
            end
            self.log:warn("metadata of %s revision %s not read yet (retrying): %s", app, revision, err)
            self.rt:emit("ServiceDiscoveryException", { error = err, app = app, revision = revision })
            -- Still needed? Then wait for the cache's next retry.
            if state.by_revision[revision] and not self:known(app, revision) then
                self:want(state, revision)
            end
            -- The first list need not wait for the retry: it goes out
            -- without this revision's instances, which join when it is read.
            return self:refresh(state)
        end
        self:known(app, revision)
        self:refresh(state)
    end)
    if bytes or werr then
        state.wanted[revision] = nil
        state.pending[revision], state.tried[revision] = nil, true
    end
    if bytes then
        self:known(app, revision)
    elseif werr then
        self.log:error("metadata of %s revision %s cannot be asked for: %s", app, revision, werr)
    end
end

local address_of = address_list.address_of

-- The instances the address lists are built from: the registered ones,
-- then the removed ones the validation chain keeps (or is still asked
-- about) at an address nothing is registered at now. Without kept ones,
-- the registry's list itself (the consumer's own copy, never changed):
-- copying thousands of instances on every change is not worth it.
local function effective(state)
    if next(state.kept) == nil then
        return state.registered
    end
    local list, n = {}, 0
    local registered_by_address = state.registered_by_address
    for _, inst in ipairs(state.registered) do
        n = n + 1
        list[n] = inst
    end
    for id, kept in pairs(state.kept) do
        if not registered_by_address[id] then
            n = n + 1
            list[n] = kept.instance
        end
    end
    return list
end

local effective_at = address_list.effective_at

-- Revision groups: the instances of each revision the consumer knows
-- (revision "0" is none).
local function group_of(by_revision, inst, create)
    local revision = instance_model.revision(inst)
    if not revision or revision == "0" then
        return nil
    end
    local group = by_revision[revision]
    if not group and create then
        group = {}
        by_revision[revision] = group
    end
    return group, revision
end

local function ungroup(by_revision, inst)
    local group, revision = group_of(by_revision, inst, false)
    if not group then
        return
    end
    for i = #group, 1, -1 do
        if group[i] == inst then
            table.remove(group, i)
            break
        end
    end
    if #group == 0 then
        by_revision[revision] = nil
    end
end

-- Regroups `state`'s instances by revision, asks for the unknown ones and
-- rebuilds the lists. `changed` (address -> the instance the lists were
-- built from there before, or false), when given, names every address
-- whose instance may have changed since the last regroup: only those are
-- regrouped, and the subscriptions update only those.
function consumer:regroup(state, changed)
    local instances = effective(state)
    state.instances = instances
    local by_revision = state.by_revision
    if changed and state.grouped then
        for id, old in pairs(changed) do
            local new = effective_at(state, id)
            if old ~= new then
                if old then
                    ungroup(by_revision, old)
                end
                if new then
                    local group = group_of(by_revision, new, true)
                    if group then
                        group[#group + 1] = new
                    end
                end
            end
        end
    else
        changed = nil
        by_revision = {}
        for _, inst in ipairs(instances) do
            local group = group_of(by_revision, inst, true)
            if group then
                group[#group + 1] = inst
            end
        end
        state.by_revision, state.grouped = by_revision, true
    end
    for revision in pairs(by_revision) do
        if not self:known(state.name, revision) then
            self:want(state, revision)
        end
    end
    self:refresh(state, changed)
end

local registered_at = address_list.registered_at

-- Forgets what the consumer holds for `inst`'s address (its last URLs,
-- its MetadataService connection) unless another registration serves it.
function consumer:forget(state, inst)
    local id = address_of(inst)
    if registered_at(state, id) then
        return
    end
    state.last_info[id] = nil
    address_list.forget(state, id)
    self.clients:drop(inst.host, fetch.service_port(inst))
end

-- The chain that confirms the removals which would empty a protected
-- subscription when the consumer validates no removal (validation =
-- false): the default chain, built on first use.
function consumer:protection_chain()
    if not self.protector then
        local chain, err = validation.new(self.rt, { registry = self.registry })
        if not chain then
            self.log:error("empty-push protection has no validation chain: %s", tostring(err))
            return nil
        end
        self.protector = chain
    end
    return self.protector
end

-- Asks validation chain `chain` about removed instance `inst` (kept in
-- the lists meanwhile) and applies its decision: "remove" drops it,
-- "keep" keeps it until `until_ms`, when the chain is asked again.
function consumer:validate(state, inst, why, chain)
    local id = address_of(inst)
    local entry = { instance = inst, why = why, chain = chain }
    local old = state.kept[id]
    if old and old.timer and not old.timer:is_closed() then
        old.timer:close()
    end
    state.kept[id] = entry
    local req = { instance = inst, address = id, app = state.name, reason = why,
                  current = registered_at(state, id), now = self.rt:now(),
                  calls = self.calls[id] }
    chain:validate(req, function(d)
        if self.closed or state.detached or state.kept[id] ~= entry then
            return
        end
        local reason = (d.rule and (d.rule .. ": ") or "") .. tostring(d.reason)
        local diff = { added = {}, updated = {}, removed = {} }
        local current = registered_at(state, id)
        local changed = { [id] = effective_at(state, id) or false }
        if d.verdict == "remove" or current then
            -- Removed, or kept because a newer registration serves the
            -- address: the old instance leaves the lists either way.
            state.kept[id] = nil
            if d.verdict == "remove" then
                diff.removed[1] = inst
                self:forget(state, inst)
                self.log:info("%s %s removed (%s)", state.name, id, reason)
            else
                self.log:info("%s %s kept with its newer registration (%s)", state.name, id, reason)
            end
        else
            inst.suspect = reason
            local now = self.rt:now()
            local until_ms = d.until_ms or (now + chain:period())
            entry.until_ms, entry.reason = until_ms, reason
            entry.timer = self.rt:after(math.max(until_ms - now, 1), function()
                entry.timer = nil
                if state.kept[id] == entry and not self.closed and not state.detached then
                    self:validate(state, inst, why, chain)
                end
            end, "validation " .. id)
            self.log:info("%s %s kept until %d (%s)", state.name, id, until_ms, reason)
        end
        self:regroup(state, changed)
        self.rt:emit("ServiceInstancesChanged", { service_name = state.name,
                                                  instances = state.instances, diff = diff,
                                                  reasons = { [id] = reason } })
    end)
end

-- The registry's news about an application.
function consumer:on_instances(state, diff, instances)
    -- The addresses whose instance may change here, with the instance the
    -- lists were built from there until now: the lists are updated there
    -- only (every other instance is the very same object as before).
    local changed = {}
    local function note(id)
        if changed[id] == nil then
            changed[id] = effective_at(state, id) or false
        end
    end
    -- Address -> the instance registered there now (every "is this
    -- address registered?" question looks it up there) is kept up to date
    -- change by change: each address of the new list is stamped with this
    -- call's epoch, so that "is it still listed?" costs a lookup, and the
    -- old list is searched for the addresses it lost only when the counts
    -- say some are.
    local by, stamps = state.registered_by_address, state.stamps
    local epoch = state.epoch + 1
    state.epoch = epoch
    local fresh, listed_before, duplicated = {}, 0, false
    for _, inst in ipairs(instances) do
        local id = address_of(inst)
        if stamps[id] == epoch then
            duplicated = true
        else
            stamps[id] = epoch
            local cur = by[id]
            if cur ~= nil then
                listed_before = listed_before + 1
            end
            if cur ~= inst then
                note(id)
                fresh[id] = inst
            end
        end
    end
    for _, list in ipairs({ diff.added or {}, diff.updated or {} }) do
        for _, inst in ipairs(list) do
            note(address_of(inst))
        end
    end
    -- Removals: the diff's, and anything the last list had that this one
    -- lacks (a re-list after a reconnect may not say).
    local removals, seen, named_gone = {}, {}, 0
    for _, inst in ipairs(diff.removed or {}) do
        local id = address_of(inst)
        if not seen[id] then
            seen[id] = true
            note(id)
            removals[#removals + 1] = { inst, "deleted" }
            if by[id] ~= nil and stamps[id] ~= epoch then
                named_gone = named_gone + 1
            end
        end
    end
    -- The old list is searched only when some address it had is neither
    -- listed now nor named removed.
    if duplicated or listed_before + named_gone ~= state.registered_count then
        for _, inst in ipairs(state.registered) do
            local id = address_of(inst)
            if stamps[id] ~= epoch and not seen[id] then
                seen[id] = true
                note(id)
                removals[#removals + 1] = { inst, "missing" }
            end
        end
    end
    for id in pairs(state.kept) do
        if stamps[id] == epoch then
            note(id)
        end
    end
    local count = state.registered_count
    for _, r in ipairs(removals) do
        local id = address_of(r[1])
        if stamps[id] ~= epoch then
            if by[id] ~= nil then
                by[id], count = nil, count - 1
            end
            stamps[id] = nil
        end
    end
    for id, inst in pairs(fresh) do
        if by[id] == nil then
            count = count + 1
        end
        by[id] = inst
    end
    if duplicated or count ~= #instances then
        -- Two instances at one address (or an index gone wrong): the index
        -- is rebuilt whole, the last instance of an address wins, and the
        -- lists are rebuilt whole.
        by, stamps, count, changed = {}, {}, 0, nil
        for _, inst in ipairs(instances) do
            local id = address_of(inst)
            if by[id] == nil then
                count = count + 1
            end
            by[id], stamps[id] = inst, epoch
        end
    end
    state.registered, state.registered_by_address = instances, by
    state.stamps, state.registered_count = stamps, count
    -- An address registered again needs no keeping.
    for id, kept in pairs(state.kept) do
        if by[id] then
            if kept.timer and not kept.timer:is_closed() then
                kept.timer:close()
            end
            state.kept[id] = nil
        end
    end
    local chain = self.validation
    if not chain and #removals > 0 and self:would_empty(state) then
        -- Empty-push protection: removals that would leave a protected
        -- subscription with no address wait for the chain's word.
        chain = self:protection_chain()
    end
    local applied = { added = diff.added or {}, updated = diff.updated or {}, removed = {} }
    local validating = {}
    for _, r in ipairs(removals) do
        if chain then
            validating[#validating + 1] = r[1]
        else
            applied.removed[#applied.removed + 1] = r[1]
            self:forget(state, r[1])
        end
    end
    state.instances = effective(state)
    self.rt:emit("ServiceInstancesChanged", { service_name = state.name,
                                              instances = state.instances, diff = applied,
                                              validating = validating, reasons = {} })
    for _, r in ipairs(removals) do
        if chain then
            self:validate(state, r[1], r[2], chain)
        end
    end
    self:regroup(state, changed)
end

-- Whether `state`'s registered instances alone (its removals applied)
-- would leave a subscription with empty-push protection, which has
-- addresses now, with none.
function consumer.would_empty(_, state)
    state.instances = effective(state)
    for sub in pairs(state.subs) do
        if sub.empty_protection and sub.live and #sub.sorted > 0 then
            local set = sub:compute(true)
            if set and next(set) == nil then
                return true
            end
        end
    end
    return false
end

-- Rebuilds the lists of every subscription reading `state`'s app.
-- `changed` (address -> anything), when given, names every address whose
-- instance may have changed since the last refresh: a subscription that
-- took part in that one updates only those (subscription:update).
function consumer.refresh(_, state, changed)
    state.ready = true
    state.seq = state.seq + 1
    state.delta = changed
    for sub in pairs(state.subs) do
        sub:rebuild()
    end
end

function consumer:attach(app, sub)
    local state = self.apps[app]
    if not state then
        state = { name = app, subs = {}, instances = {}, registered = {},
                  registered_by_address = {}, stamps = {}, epoch = 0, registered_count = 0, kept = {},
                  by_revision = {}, wanted = {}, pending = {}, tried = {}, last_info = {},
                  ready = false, seq = 0 }
        self.apps[app] = state
        state.watch = self.registry.watch_instances(app, function(diff, instances)
            if not self.closed and not state.detached then
                self:on_instances(state, diff, instances)
            end
        end)
    end
    state.subs[sub] = true
end

function consumer:detach(app, sub)
    local state = self.apps[app]
    if not state then
        return
    end
    state.subs[sub] = nil
    if next(state.subs) == nil then
        state.detached = true
        state.watch.cancel()
        self.apps[app] = nil
        for _, kept in pairs(state.kept) do
            if kept.timer and not kept.timer:is_closed() then
                kept.timer:close()
            end
        end
    end
end

--- Subscribes to a Dubbo service ID (`protocol:interface[:version][:group]`).
-- `on_change(diff, list)` is called with the first list once the
-- applications are known and their instances read, then after every real
-- change: `diff.added` and `diff.removed` hold address entries, `list` all
-- of them sorted by URL. An entry: `url` (string), `host`, `port`,
-- `protocol`, `path`, `app`, `instance`, `service` (its ServiceInfo);
-- entries served from a disk snapshot also have `stale = true`.
-- `opts.provided_by`: application names that win over the mapping;
-- `opts.empty_protection` (default: on unless the consumer's validation
-- is false): a change that would leave the list empty is applied only
-- once the validation chain confirmed each removal (`status().protected`
-- and `reason` meanwhile); `opts.debounce_ms` (default
-- 0, off): at most one call per window, with the net diff since the last.
-- @treturn table the subscription (`:list()`, `:apps()`, `:status()`,
-- `:cancel()`)
function consumer:subscribe(id, on_change, opts)
    local sid, err = service_id.parse(id)
    if not sid then
        error("subscribe: " .. tostring(err), 2)
    end
    if type(on_change) ~= "function" then
        error("subscribe: on_change must be a function", 2)
    end
    opts = opts or {}
    if type(opts) ~= "table" then
        error("subscribe: options must be a table", 2)
    end
    local debounce_ms = opts.debounce_ms or 0
    if type(debounce_ms) ~= "number" or debounce_ms < 0 then
        error("subscribe: debounce_ms must be a number >= 0", 2)
    end
    local sub = subscription.new(self, sid, on_change, opts, debounce_ms)
    self.subs[sub] = true
    self.rt:emit("ReferenceConfigInitialized", { service_id = sub.id })
    if self.snapshot then
        sub.snapshot_timer = self.rt:after(self.snapshot.wait_ms, function()
            sub.snapshot_timer = nil
            if not sub.live and not sub.cancelled and not self.closed then
                sub:serve_snapshot()
            end
        end, "snapshot wait")
    end
    local params = { provided_by = opts.provided_by }
    sub.mapping_handle = self.mapping:subscribe(sid, params, function(apps)
        if not sub.cancelled and not self.closed then
            sub:set_apps(apps or {})
        end
    end)
    return sub
end

--- Metadata reads and the revision cache's counters.
function consumer:counters()
    local c = self.cache:stats()
    c.fetch_calls = self.stats.fetch_calls
    c.fetch_errors = self.stats.fetch_errors
    c.invalid_metadata = self.stats.invalid_metadata
    return c
end

--- Records the outcome of a call to a provider at `address` ("host:port"),
-- which the validation chain weighs (validation/recent_call keeps an
-- address that answered within the heartbeat period).
-- @tparam string address "host:port"
-- @tparam boolean ok whether the call succeeded
-- @tparam[opt] number latency_ms
function consumer:report_call(address, ok, latency_ms)
    if type(address) ~= "string" then
        error("report_call: address must be a \"host:port\" string", 2)
    end
    self:report_calls(address, ok and 1 or 0, ok and 0 or 1, latency_ms)
end

--- Records several calls to `address` at once (what disco.resty's workers
-- aggregate per flush interval): `ok_count` that succeeded and
-- `failed_count` that failed, the last one taking `latency_ms`. The last
-- ok (failed) call happened `ok_age_ms` (`failed_age_ms`, default 0) ms
-- ago, so that `last_ok` and `last_failed` keep their order; neither moves
-- back in time (records of several workers arrive in any order).
-- @tparam string address "host:port"
-- @tparam integer ok_count
-- @tparam integer failed_count
-- @tparam[opt] number latency_ms
-- @tparam[opt] number ok_age_ms
-- @tparam[opt] number failed_age_ms
function consumer:report_calls(address, ok_count, failed_count, latency_ms, ok_age_ms, failed_age_ms)
    if type(address) ~= "string" then
        error("report_calls: address must be a \"host:port\" string", 2)
    end
    if type(ok_count) ~= "number" or ok_count < 0 or ok_count % 1 ~= 0
        or type(failed_count) ~= "number" or failed_count < 0 or failed_count % 1 ~= 0 then
        error("report_calls: ok_count and failed_count must be integers >= 0", 2)
    end
    if ok_count + failed_count == 0 then
        return
    end
    local rec = self.calls[address]
    if not rec then
        rec = { ok = 0, failed = 0 }
        self.calls[address] = rec
    end
    local now = self.rt:now()
    if ok_count > 0 then
        local t = now - (ok_age_ms or 0)
        rec.ok = rec.ok + ok_count
        if not rec.last_ok or t > rec.last_ok then
            rec.last_ok = t
        end
    end
    if failed_count > 0 then
        local t = now - (failed_age_ms or 0)
        rec.failed = rec.failed + failed_count
        if not rec.last_failed or t > rec.last_failed then
            rec.last_failed = t
        end
    end
    rec.latency_ms = latency_ms
end

--- For each application the consumer watches: how many instances the
-- registry lists (`instances`) and how many distinct revisions they carry
-- (`revisions`).
-- @treturn table app -> `{ instances =, revisions = }`
function consumer:app_counts()
    local counts = {}
    for app, state in pairs(self.apps) do
        local seen, n, r = {}, 0, 0
        for _, inst in ipairs(state.registered or {}) do
            n = n + 1
            local rev = instance_model.revision(inst)
            if rev and not seen[rev] then
                seen[rev], r = true, r + 1
            end
        end
        counts[app] = { instances = n, revisions = r }
    end
    return counts
end

--- The validation chain's counters (`removed`, `kept` per rule,
-- `kept_total`, `deferred`, `errors`, `validations`), plus `kept_now`: the
-- removed instances the lists hold at the moment; nil when validation is
-- off.
function consumer:validation_stats()
    if not self.validation then
        return nil
    end
    local st = self.validation:stats()
    local n = 0
    for _, state in pairs(self.apps) do
        for _ in pairs(state.kept) do
            n = n + 1
        end
    end
    st.kept_now = n
    return st
end

--- Cancels every subscription and closes the revision cache (which saves
-- it when persistent). Idempotent.
function consumer:close()
    if self.closed then
        return
    end
    for sub in pairs(self.subs) do
        sub:cancel()
    end
    self.closed = true
    self.cache:close()
    self.clients:close()
    self.rt:emit("ServiceDiscoveryDestroyed", { role = "consumer" })
end

return _M
