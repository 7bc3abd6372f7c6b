--- A consumer's subscription to one Dubbo service ID: the applications
-- the mapping gives, the address list built from their instances, and
-- what the listener gets (DESIGN.md §2 c4): only real changes, at most
-- one call per debounce window, never an emptied list before the
-- validation chain confirmed each removal (empty-push protection), a disk
-- snapshot while the registry has not answered. Created by
-- `consumer:subscribe` (disco.consumer), which documents the options.
-- @module disco.subscription

local address_list = require "disco.address_list"
local memory = require "disco.memory"
local service_id = require "disco.service_id"
local snapshot = require "disco.snapshot"

local address_of = address_list.address_of
local pairs = pairs
local registered_at = address_list.registered_at
local tostring = tostring

local _M = {}

-- From this many instances on, a whole computation of the list runs with
-- the collector stopped (see disco.memory.without_collector); below, what
-- the collector would cost is small either way.
local LARGE_LIST = 1000
local subscription = {}
subscription.__index = subscription

--- A subscription of `consumer` to the parsed service ID `sid`.
function _M.new(consumer, sid, on_change, opts, debounce_ms)
    return setmetatable({
        consumer = consumer,
        id = service_id.format(sid),
        sid = sid,
        on_change = on_change,
        app_set = {},
        current = {}, -- url -> entry, as the listener last got it
        sorted = {},
        order = {}, -- a private copy of `sorted`, which the next one is merged from
        latest = nil, -- url -> entry, as last computed (debounce holds it back)
        delivered = false, -- the listener got a list (live or stale)
        live = false, -- the listener got a list from the registry
        -- On by default with the consumer's validation chain; with
        -- validation = false only when asked for (then the default chain
        -- confirms the removals that would empty this list).
        empty_protection = opts.empty_protection == nil and consumer.validation ~= nil
            or opts.empty_protection == true,
        debounce_ms = debounce_ms,
        last_delivery = nil,
        cancelled = false,
    }, subscription)
end

function subscription:set_apps(apps)
    local consumer_ = self.consumer
    local wanted = {}
    for _, app in ipairs(apps) do
        wanted[app] = true
    end
    for app in pairs(self.app_set) do
        if not wanted[app] then
            self.app_set[app] = nil
            consumer_:detach(app, self)
        end
    end
    for app in pairs(wanted) do
        if not self.app_set[app] then
            self.app_set[app] = true
            consumer_:attach(app, self)
        end
    end
    self.mapped = true
    self:rebuild()
end

--- The applications this subscription reads, sorted.
function subscription:apps()
    local list = {}
    for app in pairs(self.app_set) do
        list[#list + 1] = app
    end
    table.sort(list)
    return list
end

--- The address list the listener last got (sorted by URL).
function subscription:list()
    return self.sorted
end

--- What the list rests on: `live` (the registry delivered it), `stale`
-- and `age_ms` (served from a disk snapshot that old), `protected` and
-- `reason` (empty-push protection holds addresses the registry no longer
-- lists), `debouncing` (a change waits for the end of the window),
-- `snapshot_error` (why the snapshot was not served, if it was not).
-- @treturn table
function subscription:status()
    local st = { live = self.live, stale = self.stale ~= nil, protected = self.protected ~= nil,
                 debouncing = self.debounce_timer ~= nil, snapshot_error = self.snapshot_error }
    if self.stale then
        st.age_ms = math.max(0, snapshot.wall_ms() - self.stale.saved_at)
        st.snapshot = self.stale.path
    end
    if self.protected then
        st.reason = self.protected
    end
    return st
end

-- The list as the registry and the metadata give it now (url -> entry),
-- or nil while the first list waits for every application's first read
-- and the first attempt at each of its revisions (unless `any`, which
-- also leaves what the subscription keeps as it was).
function subscription:compute(any)
    local consumer_ = self.consumer
    for app in pairs(self.app_set) do
        local state = consumer_.apps[app]
        if not any and not self.live and (not state.ready or next(state.pending) ~= nil) then
            return nil
        end
    end
    local only = next(self.app_set)
    if only ~= nil and next(self.app_set, only) ~= nil then
        only = nil
    end
    if not any and only ~= nil then
        local set = self:update(consumer_.apps[only])
        if set then
            return set
        end
    end
    local next_set = {}
    local by_id = not any and only ~= nil and {} or nil
    local collided = false
    local count = 0
    local function collect_all()
        for app in pairs(self.app_set) do
            local state = consumer_.apps[app]
            collided = address_list.collect(next_set, state, self.sid, function(revision)
                return consumer_:known(app, revision)
            end, by_id) or collided
        end
    end
    for app in pairs(self.app_set) do
        count = count + #consumer_.apps[app].instances
    end
    if count >= LARGE_LIST then
        -- What a whole computation allocates is mostly the new list itself.
        memory.without_collector(collect_all)
    else
        collect_all()
    end
    if not any then
        -- The next list is compared with the last one URL by URL; a list
        -- of one application whose URLs are all distinct is then kept up
        -- to date instance by instance (see update).
        self.touched = nil
        self.part = by_id and not collided and { state = consumer_.apps[only], seq = consumer_.apps[only].seq,
                                                 by_id = by_id } or nil
    end
    return next_set
end

-- The latest list changed only at the addresses the application's last
-- refresh names (`state.delta`, after the refresh this list was computed
-- at): updates it there, recording the URLs that moved in `touched`, and
-- returns it; nil when it must be computed whole. A change of one
-- instance among thousands then costs that instance's entries.
function subscription:update(state)
    local part, set = self.part, self.latest
    if not part or part.state ~= state or not set then
        return nil
    end
    if part.seq == state.seq then
        return set
    end
    local delta = state.delta
    if part.seq ~= state.seq - 1 or not delta then
        return nil
    end
    part.seq = nil -- unusable until the update below completes
    if set == self.current then
        -- The listener's last list is compared with this one: change a copy.
        local copy = {}
        for u, entry in pairs(set) do
            copy[u] = entry
        end
        set = copy
        self.latest = set
    end
    local consumer_, touched, by_id = self.consumer, self.touched, part.by_id
    local sid_key = self.id
    local function known(revision)
        return consumer_:known(state.name, revision)
    end
    for id in pairs(delta) do
        for _, entry in ipairs(by_id[id] or {}) do
            if set[entry.url] ~= entry then
                return nil
            end
            set[entry.url] = nil
            if touched then
                touched[entry.url] = true
            end
        end
        by_id[id] = nil
        local inst = address_list.effective_at(state, id)
        local entries = inst and address_list.entries_of(state, inst, self.sid, known, sid_key)
        if entries then
            for _, entry in ipairs(entries) do
                if set[entry.url] ~= nil then
                    return nil -- two addresses, one URL: which one wins is the full list's call
                end
                set[entry.url] = entry
                if touched then
                    touched[entry.url] = true
                end
            end
            by_id[id] = entries
        end
    end
    part.seq = state.seq
    return set
end

-- Why `set` is held by empty-push protection, or nil: every entry is of a
-- removed instance kept for the validation chain (the registry lists none
-- of them any more).
function subscription:protection_of(set)
    if not self.empty_protection or next(set) == nil then
        return nil
    end
    local consumer_ = self.consumer
    local reasons, seen = {}, {}
    for _, entry in pairs(set) do
        local state = consumer_.apps[entry.app]
        local id = address_of(entry.instance)
        local kept = state and state.kept[id]
        if not kept or registered_at(state, id) then
            return nil
        end
        if not seen[id] then
            seen[id] = true
            reasons[#reasons + 1] = id .. " " .. (kept.reason
                or ("awaiting validation (" .. tostring(kept.why) .. ")"))
        end
    end
    table.sort(reasons)
    return "the registry lists no instance; kept while the validation chain keeps them: "
        .. table.concat(reasons, "; ")
end

-- Recomputes the list; calls the listener when it changed (or for the
-- first time, once every application has been read), at most once per
-- debounce window.
function subscription:rebuild()
    if self.cancelled or not self.mapped then
        return
    end
    local next_set = self:compute()
    if not next_set then
        return
    end
    self.latest = next_set
    local consumer_ = self.consumer
    local protected = self:protection_of(next_set)
    if protected ~= self.protected then
        self.protected = protected
        if protected then
            -- Logged and announced when it starts and when its reason
            -- changes (the chain answered, or asked again).
            consumer_.log:warn("%s: empty-push protection: %s", self.id, protected)
            local app = next(next_set) and select(2, next(next_set)).app
            local state = consumer_.apps[app]
            consumer_.rt:emit("ServiceInstancesChanged", {
                service_name = app, instances = state and state.instances or {},
                diff = { added = {}, updated = {}, removed = {} }, reasons = {},
                service_id = self.id, protected = true, reason = protected })
        end
    end
    if not self.live then
        -- The registry's first list replaces a stale one whatever the diff.
        self.live = true
        return self:deliver(true)
    end
    if self.debounce_ms > 0 then
        if self.debounce_timer then
            return
        end
        local wait = self.last_delivery and (self.last_delivery + self.debounce_ms
                                             - consumer_.rt:now()) or 0
        if wait > 0 then
            self.debounce_timer = consumer_.rt:after(wait, function()
                self.debounce_timer = nil
                if not self.cancelled and not consumer_.closed then
                    self:deliver()
                end
            end, "debounce " .. self.id)
            return
        end
    end
    self:deliver()
end

-- What the listener gets now: the set, and its sorted list. The next
-- list is merged from a private copy of this one (the listener may change
-- the list it gets). `touched`: the set is the latest list, which differs
-- from the last one only at these URLs (the last one is brought up to
-- date there, and stays a table of its own). `track`: later lists are
-- compared with this one URL by URL (the registry's lists; not a
-- snapshot's).
function subscription:set_current(set, sorted, touched, track)
    local order = {}
    for i = 1, #sorted do
        order[i] = sorted[i]
    end
    local current = self.current
    if touched and current ~= set then
        for u in pairs(touched) do
            current[u] = set[u]
        end
    else
        current = set
    end
    self.current, self.sorted, self.order, self.delivered = current, sorted, order, true
    self.touched = track and {} or nil
end

-- Hands the latest list to the listener with the diff from the one it
-- got last (when they differ, or when `force`), and saves it.
function subscription:deliver(force)
    local consumer_ = self.consumer
    local diff
    if self.touched then
        diff = address_list.changes_at(self.current, self.latest, self.touched)
    else
        diff = address_list.changes(self.current, self.latest)
    end
    if not force and #diff.added == 0 and #diff.removed == 0 then
        return
    end
    local sorted = address_list.sorted(self.latest, diff, self.order)
    -- After a whole computation the next lists are compared URL by URL
    -- from this one on.
    self:set_current(self.latest, sorted, self.touched, true)
    self.stale = nil
    self.last_delivery = consumer_.rt:now()
    local conf = consumer_.snapshot
    if conf then
        local ok, err = snapshot.write(conf.dir, self.id, sorted)
        if not ok then
            consumer_.log:warn("cannot save the snapshot of %s: %s", self.id, tostring(err))
        end
    end
    local ok, err = pcall(self.on_change, diff, sorted)
    if not ok then
        consumer_.log:error("listener of %s failed: %s", self.id, tostring(err))
    end
end

-- The registry has not answered in time: serves the disk snapshot, if
-- there is a readable one young enough, as a stale list.
function subscription:serve_snapshot()
    local consumer_ = self.consumer
    local conf = consumer_.snapshot
    local snap, err, code = snapshot.read(conf.dir, self.id)
    if not snap then
        self.snapshot_error = err
        if code == "ENOENT" then
            consumer_.log:info("%s: no snapshot to serve: %s", self.id, err)
        else
            consumer_.log:warn("%s: snapshot ignored: %s", self.id, err)
        end
        return
    end
    local age = snapshot.wall_ms() - snap.saved_at
    if age > conf.max_age_ms then
        self.snapshot_error = "ETIMEDOUT: snapshot " .. snap.path .. " is " .. age
            .. " ms old (max_age_ms " .. conf.max_age_ms .. ")"
        consumer_.log:warn("%s: snapshot refused: %s", self.id, self.snapshot_error)
        return
    end
    local set = {}
    for _, entry in ipairs(snap.entries) do
        set[entry.url] = entry
    end
    local diff = address_list.changes(self.current, set)
    local sorted = address_list.sorted(set, diff, self.order)
    self:set_current(set, sorted)
    self.part = nil
    self.stale = snap
    consumer_.log:warn("%s: the registry has not answered in %d ms: serving %d stale addresses"
                       .. " from %s (%d ms old)", self.id, conf.wait_ms, #sorted, snap.path, age)
    local ok, lerr = pcall(self.on_change, diff, sorted)
    if not ok then
        consumer_.log:error("listener of %s failed: %s", self.id, tostring(lerr))
    end
end

--- Ends the subscription; its applications are no longer watched unless
-- another subscription reads them.
function subscription:cancel()
    if self.cancelled then
        return
    end
    self.cancelled = true
    local consumer_ = self.consumer
    for _, key in ipairs({ "debounce_timer", "snapshot_timer" }) do
        local timer = self[key]
        if timer and not timer:is_closed() then
            timer:close()
        end
        self[key] = nil
    end
    if self.mapping_handle then
        self.mapping_handle:cancel()
    end
    for app in pairs(self.app_set) do
        consumer_:detach(app, self)
    end
    consumer_.subs[self] = nil
    consumer_.rt:emit("ReferenceConfigDestroyed", { service_id = self.id })
end


return _M
