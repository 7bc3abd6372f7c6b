--- Address lists: the URLs of one subscribed service ID across the
-- instances of an application (DESIGN.md §2 c3–c4, WIRE.md §6).
--
-- Every instance of a revision exports the services of that revision's
-- MetadataInfo; one URL per matching ServiceInfo per instance is built
-- from it:
--   host      the instance's
--   port      the ServiceInfo's if > 0, else the instance's
--             `dubbo.endpoints` entry for the protocol, else its port
--   params    the ServiceInfo's, plus the instance metadata outside the
--             `dubbo.` namespace that the service does not set itself
--             (`timestamp`, `heartbeat.timeout`, labels); the discovery
--             keys (`dubbo.metadata.revision`, `dubbo.endpoints`, ...)
--             describe the instance, not the service, and stay out;
--             the service's parameters come first, in key order, then
--             the instance's, in key order
-- @module disco.address_list

local instance_model = require "disco.instance"
local metadata_info = require "disco.metadata_info"
local service_id = require "disco.service_id"
local url = require "disco.url"

local encode = url.encode
local endpoint_port = instance_model.endpoint_port
local byte = string.byte
local find = string.find
local math_floor = math.floor
local pairs = pairs
local setmetatable = setmetatable
local table_concat = table.concat
local table_sort = table.sort
local META_V = instance_model.META_V
local NO_METADATA = {}

local _M = {}

-- info -> { [service id string] = matching ServiceInfos }. Weak: a
-- MetadataInfo evicted from the consumer takes its templates with it.
-- (The values never lead back to the info: LuaJIT has no ephemerons, so a
-- weak key reachable from its own value is never collected.)
local templates = setmetatable({}, { __mode = "k" })

-- What every URL of `service` shares: the text before the host, the path
-- and the encoded query of the service's own parameters (sorted), and the
-- set of its parameter names.
local function template_of(service)
    local protocol = service.protocol or "dubbo"
    local params = service.params or {}
    local keys = {}
    for k in pairs(params) do
        keys[#keys + 1] = k
    end
    table_sort(keys)
    local query = {}
    for i, k in ipairs(keys) do
        query[i] = encode(k) .. "=" .. encode(params[k])
    end
    return {
        service = service,
        protocol = protocol,
        prefix = protocol .. "://",
        path = service.path or service.name,
        query = table_concat(query, "&"),
        own = params,
    }
end

local function matching_templates(info, sid, sid_key)
    local per_info = templates[info]
    if not per_info then
        per_info = {}
        templates[info] = per_info
    end
    local list = per_info[sid_key]
    if not list then
        list = {}
        for _, service in pairs(info.services or {}) do
            if service_id.matches(sid, service) then
                list[#list + 1] = service
            end
        end
        table_sort(list, function(a, b)
            return metadata_info.match_key(a) < metadata_info.match_key(b)
        end)
        for i, service in ipairs(list) do
            list[i] = template_of(service)
        end
        per_info[sid_key] = list
    end
    return list
end

-- The encoded query of the instance metadata a URL carries besides the
-- service's own parameters (sorted).
local function instance_query(metadata, own)
    local keys
    for k in pairs(metadata) do
        -- (byte 100 is "d": most keys are ruled out without a search.)
        if not (byte(k, 1) == 100 and find(k, "dubbo.", 1, true) == 1) and k ~= META_V and own[k] == nil then
            keys = keys or {}
            keys[#keys + 1] = k
        end
    end
    if not keys then
        return ""
    end
    table_sort(keys)
    for i, k in ipairs(keys) do
        keys[i] = encode(k) .. "=" .. encode(metadata[k])
    end
    return table_concat(keys, "&")
end

--- The address entries of `inst` for the services of `info` matching `sid`.
-- The URL text is what `disco.url` formats: the service's parameters in
-- key order, then the instance's in key order. `sid_key` is
-- `service_id.format(sid)` when the caller has it already.
function _M.entries(inst, info, sid, app, sid_key)
    sid_key = sid_key or service_id.format(sid)
    local entries = {}
    local host = inst.host
    local host_text = find(host, ":", 1, true) and ("[" .. host .. "]") or host
    for _, t in ipairs(matching_templates(info, sid, sid_key)) do
        local service = t.service
        local port = tonumber(service.port)
        if not port or port <= 0 then
            port = endpoint_port(inst, t.protocol) or inst.port
        end
        -- One concatenation per URL: each intermediate string would be
        -- hashed and interned as well.
        local query, extra = t.query, instance_query(inst.metadata or NO_METADATA, t.own)
        local text
        if extra == "" then
            if query == "" then
                text = t.prefix .. host_text .. ":" .. port .. "/" .. t.path
            else
                text = t.prefix .. host_text .. ":" .. port .. "/" .. t.path .. "?" .. query
            end
        elseif query == "" then
            text = t.prefix .. host_text .. ":" .. port .. "/" .. t.path .. "?" .. extra
        else
            text = t.prefix .. host_text .. ":" .. port .. "/" .. t.path .. "?" .. query .. "&" .. extra
        end
        entries[#entries + 1] = {
            url = text,
            host = host,
            port = port,
            protocol = t.protocol,
            path = t.path,
            app = app,
            instance = inst,
            service = service,
        }
    end
    return entries
end

--- The address ("host:port") of an instance.
function _M.address_of(inst)
    return inst.id or (inst.host .. ":" .. inst.port)
end

--- The instance registered at address `id` in a consumer's application
-- state now (its `registered_by_address` index), or nil.
function _M.registered_at(state, id)
    return state.registered_by_address[id]
end

--- The entries `inst` of `state` gives (see `collect`), recording the
-- MetadataInfo they were built from in `state.last_info`; nil when its
-- revision has never been known.
--
-- They are kept in `state.built` by address, `{ inst =, [sid_key] =
-- entries }` with `entries.info` the MetadataInfo they were built from,
-- so that an unchanged instance is not rebuilt on every change of its
-- siblings, for each subscription that reads it. A new registration at the
-- address replaces the record, and `forget` drops it with the address.
-- (Not a weak table keyed by the instance: the entries lead back to it,
-- and LuaJIT, without ephemerons, would then keep every instance ever
-- built.)
function _M.entries_of(state, inst, sid, known, sid_key)
    local last_info = state.last_info
    local revision = instance_model.revision(inst)
    local id = _M.address_of(inst)
    local info = revision and revision ~= "0" and known(revision) or nil
    if info then
        last_info[id] = info
    else
        info = last_info[id]
    end
    if not info then
        return nil
    end
    sid_key = sid_key or service_id.format(sid)
    local built = state.built
    if not built then
        built = {}
        state.built = built
    end
    local memo = built[id]
    if not memo or memo.inst ~= inst then
        memo = { inst = inst }
        built[id] = memo
    end
    local entries = memo[sid_key]
    if not entries or entries.info ~= info then
        entries = _M.entries(inst, info, sid, state.name, sid_key)
        entries.info = info
        memo[sid_key] = entries
    end
    return entries
end

--- Drops what `entries_of` keeps for address `id` of `state` (the consumer
-- forgets the address).
function _M.forget(state, id)
    if state.built then
        state.built[id] = nil
    end
end

--- The instance the lists are built from at address `id` of a consumer's
-- application state: the one registered there, else the removed one the
-- validation chain keeps there; nil when neither.
function _M.effective_at(state, id)
    local inst = state.registered_by_address[id]
    if inst then
        return inst
    end
    local kept = state.kept[id]
    return kept and kept.instance or nil
end

--- Adds to `set` (url -> entry) the entries of every instance of `state`
-- (a consumer's application state: `name`, `instances`, `last_info`).
-- `known(revision)` answers the MetadataInfo of a revision or nil; an
-- instance whose revision is not known yet keeps the MetadataInfo it was
-- last resolved with (so a failed fetch never removes it), or is left out.
-- With `by_id`, records there each instance's entries by address, and
-- answers whether two entries had the same URL (then `set` holds the
-- last one).
function _M.collect(set, state, sid, known, by_id)
    local sid_key = service_id.format(sid)
    local collided = false
    -- Thousands of instances share a handful of revisions.
    local seen = {}
    local function known_once(revision)
        local info = seen[revision]
        if info == nil then
            info = known(revision) or false
            seen[revision] = info
        end
        return info or nil
    end
    for _, inst in ipairs(state.instances) do
        local entries = _M.entries_of(state, inst, sid, known_once, sid_key)
        if entries then
            if by_id then
                by_id[_M.address_of(inst)] = entries
            end
            for _, entry in ipairs(entries) do
                if by_id and set[entry.url] ~= nil then
                    collided = true
                end
                set[entry.url] = entry
            end
        end
    end
    return collided
end

-- The entries of `set` at `urls`, in URL order. The URLs are sorted as
-- strings, which table.sort compares without calling back into Lua: a
-- comparison function costs a call per comparison, a third of the time
-- of a first list of 10,000.
local function sorted_at(set, urls)
    table_sort(urls)
    for i = 1, #urls do
        urls[i] = set[urls[i]]
    end
    return urls
end

--- The difference from `old` to `new` (url -> entry sets): `{added =,
-- removed =}` (each sorted by URL).
function _M.changes(old, new)
    local added, removed = {}, {}
    for u in pairs(new) do
        if not old[u] then
            added[#added + 1] = u
        end
    end
    for u in pairs(old) do
        if not new[u] then
            removed[#removed + 1] = u
        end
    end
    return { added = sorted_at(new, added), removed = sorted_at(old, removed) }
end

--- `changes` for sets `old` and `new` that differ at most at the URLs of
-- `touched` (url -> true): the same answer, for the cost of those URLs.
function _M.changes_at(old, new, touched)
    local added, removed = {}, {}
    for u in pairs(touched) do
        local o, n = old[u], new[u]
        if n ~= nil and o == nil then
            added[#added + 1] = u
        elseif o ~= nil and n == nil then
            removed[#removed + 1] = u
        end
    end
    return { added = sorted_at(new, added), removed = sorted_at(old, removed) }
end

--- `new` (url -> entry) as a list sorted by URL. With `old_sorted`, the
-- list of the set `new` was changed from by `changes` (its entries sorted
-- by URL, one per URL), the list is merged from it: sorting thousands of
-- URLs again for every change of one instance would dominate its cost.
-- Either way every entry is `new`'s.
function _M.sorted(new, changes, old_sorted)
    local sorted = {}
    if not old_sorted then
        for u in pairs(new) do
            sorted[#sorted + 1] = u
        end
        return sorted_at(new, sorted)
    end
    -- Each added entry goes where a binary search puts it among the old
    -- ones; the old entries between are copied (those still in `new`).
    local added = changes.added
    local n, n_old, from = 0, #old_sorted, 1
    local function copy_upto(last)
        for i = from, last do
            local entry = new[old_sorted[i].url]
            if entry ~= nil then
                n = n + 1
                sorted[n] = entry
            end
        end
        from = last + 1
    end
    for j = 1, #added do
        local a = added[j]
        local at_url = a.url
        local lo, hi = from, n_old
        while lo <= hi do
            local mid = math_floor((lo + hi) / 2)
            if old_sorted[mid].url < at_url then
                lo = mid + 1
            else
                hi = mid - 1
            end
        end
        copy_upto(lo - 1)
        n = n + 1
        sorted[n] = a
    end
    copy_upto(n_old)
    return sorted
end

--- The difference from `old` to `new` (url -> entry sets): `{added =,
-- removed =}` (each sorted by URL), and `new` as a list sorted by URL.
function _M.diff(old, new)
    local changes = _M.changes(old, new)
    return changes, _M.sorted(new, changes)
end

return _M
