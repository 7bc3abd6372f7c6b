--- Service instances as registries hold them: plain tables `{ name=, host=,
-- port=, metadata = {string=string}, enabled=, registration_time= }` (from
-- watchers also `id` and `identity`), and accessors for the Dubbo metadata
-- keys of WIRE.md §2.
--
-- The accessors that read JSON metadata values decode each distinct JSON
-- text once: results are memoized by the text in a bounded cache, so reading
-- 10,000 instances that share a handful of values costs a handful of
-- decodes. The tables they return are shared: treat them as read-only.
-- @module disco.instance

local cjson = require "cjson.safe"
local js = require "disco.java_string"
local registry_instance = require "disco.registry.instance"

local type, pairs, tonumber, concat, format, sort = type, pairs, tonumber, table.concat, string.format, table.sort
local byte, match = string.byte, string.match

local _M = {}

--- `dubbo.metadata.revision`: the MetadataInfo revision (3.x, 2.7.9+).
_M.REVISION = "dubbo.metadata.revision"
--- `dubbo.exported-services.revision`: the 2.7.5–2.7.8 revision.
_M.EXPORTED_REVISION = "dubbo.exported-services.revision"
--- `dubbo.subscribed-services.revision` (2.7.5–2.7.8 consumers, dubbo-go).
_M.SUBSCRIBED_REVISION = "dubbo.subscribed-services.revision"
--- `dubbo.metadata.storage-type`: `local` or `remote`.
_M.STORAGE_TYPE = "dubbo.metadata.storage-type"
--- `dubbo.metadata-service.url-params`: JSON, how to reach MetadataService.
_M.URL_PARAMS = "dubbo.metadata-service.url-params"
--- `dubbo.endpoints`: JSON `[{port,protocol}]`.
_M.ENDPOINTS = "dubbo.endpoints"
--- `meta-v`: the MetadataService version offered (3.3+).
_M.META_V = "meta-v"

--- How many distinct JSON texts the decoding cache keeps before it starts
-- over.
_M.CACHE_SIZE = 4096

-- One cache per kind of value, so that a text read as two kinds (say "{}")
-- keeps one entry for each: JSON text -> entry, or false when malformed.
local caches = {}

local function new_cache(build)
    local cache = { entries = {}, count = 0 }
    caches[#caches + 1] = cache
    return function(text)
        local entry = cache.entries[text]
        if entry == nil then
            local value = cjson.decode(text)
            entry = value ~= nil and build(value) or false
            if cache.count >= _M.CACHE_SIZE then
                cache.entries, cache.count = {}, 0
            end
            cache.entries[text] = entry
            cache.count = cache.count + 1
        end
        return entry
    end
end

--- Empties the decoding caches (for tests and benchmarks).
function _M.clear_cache()
    for _, cache in ipairs(caches) do
        cache.entries, cache.count = {}, 0
    end
end

local function meta(inst, key)
    local m = inst.metadata
    local v = m and m[key]
    if v == "" then
        return nil
    end
    return v
end

--- Builds and checks an instance; raises on a wrong field (a programmer
-- error). `metadata` is copied; `enabled` defaults to true.
-- @tparam table t `{ name=, host=, port=, metadata=, enabled=, registration_time= }`
-- @treturn table
function _M.new(t)
    local bad = registry_instance.check(t)
    if bad then
        error("instance.new: " .. bad, 2)
    end
    local metadata = {}
    for k, v in pairs(t.metadata or {}) do
        if type(k) ~= "string" or type(v) ~= "string" then
            error("instance.new: metadata must map strings to strings (key " .. tostring(k) .. ")", 2)
        end
        metadata[k] = v
    end
    if t.enabled ~= nil and type(t.enabled) ~= "boolean" then
        error("instance.new: enabled must be a boolean", 2)
    end
    if t.registration_time ~= nil and type(t.registration_time) ~= "number" then
        error("instance.new: registration_time must be a number (ms)", 2)
    end
    return {
        name = t.name, host = t.host, port = t.port, metadata = metadata,
        enabled = t.enabled ~= false, registration_time = t.registration_time,
        id = t.id, identity = t.identity,
    }
end

--- The metadata revision, or nil when missing or empty (`"0"` is returned
-- as is: it means "no services").
function _M.revision(inst)
    return meta(inst, _M.REVISION)
end

--- `"remote"` or `"local"` (the default, also for unknown values).
function _M.storage_type(inst)
    if meta(inst, _M.STORAGE_TYPE) == "remote" then
        return "remote"
    end
    return "local"
end

local EMPTY = setmetatable({}, { __newindex = function() error("read-only table", 2) end })

local function build_endpoints(value)
    local list, by_protocol = {}, {}
    if type(value) == "table" then
        for _, e in ipairs(value) do
            if type(e) == "table" then
                local port, protocol = tonumber(e.port), e.protocol
                if port and port % 1 == 0 and port > 0 and port <= 65535
                    and type(protocol) == "string" and protocol ~= "" then
                    list[#list + 1] = { port = port, protocol = protocol }
                    if by_protocol[protocol] == nil then
                        by_protocol[protocol] = port
                    end
                end
            end
        end
    end
    return { list = list, by_protocol = by_protocol }
end
local endpoints_cached = new_cache(build_endpoints)

local function endpoints_entry(inst)
    local text = meta(inst, _M.ENDPOINTS)
    if type(text) ~= "string" then
        return nil
    end
    return endpoints_cached(text) or nil
end

--- The `dubbo.endpoints` list `{ {port=, protocol=}, ... }`; `{}` when
-- missing or malformed (malformed entries are skipped). Never raises.
function _M.endpoints(inst)
    local entry = endpoints_entry(inst)
    return entry and entry.list or EMPTY
end

-- The port of the first valid entry for `protocol` in `text` when it has
-- the compact form Dubbo and dubbo-go write, `[{"port":N,"protocol":"P"},
-- ...]` (either key order), or false when no entry is for `protocol`; nil
-- for any other form, which the JSON decoder reads. Each instance has
-- its own text (its port is in it), so the decoding cache cannot help,
-- and a consumer asks this of every instance it builds URLs for.
local function compact_endpoint_port(text, protocol)
    if byte(text, 1) ~= 91 or byte(text, -1) ~= 93 then -- [ ]
        return nil
    end
    local pos, last = 2, #text
    if pos > last - 1 then
        return false -- []
    end
    -- The whole text is checked before answering: a text the JSON decoder
    -- refuses (a trailing comma, say) has no endpoints.
    local found = false
    while true do
        local port, name, after = match(text, '^{"port":([1-9]%d*),"protocol":"([%w%-%._]+)"}()', pos)
        if not port then
            name, port, after = match(text, '^{"protocol":"([%w%-%._]+)","port":([1-9]%d*)}()', pos)
            if not name then
                return nil
            end
        end
        port = tonumber(port)
        if not found and name == protocol and port <= 65535 then
            found = port
        end
        local c = byte(text, after)
        if c == 93 and after == last then
            return found
        elseif c ~= 44 then -- ,
            return nil
        end
        pos = after + 1
    end
end

--- The port `dubbo.endpoints` gives for `protocol`, or nil.
function _M.endpoint_port(inst, protocol)
    local text = meta(inst, _M.ENDPOINTS)
    if type(text) ~= "string" then
        return nil
    end
    local port = compact_endpoint_port(text, protocol)
    if port ~= nil then
        return port or nil
    end
    local entry = endpoints_cached(text)
    return entry and entry.by_protocol[protocol] or nil
end

local function build_url_params(value)
    if type(value) ~= "table" then
        return false
    end
    local per_protocol = false
    for _, v in pairs(value) do
        if type(v) == "table" then
            per_protocol = true
            break
        end
    end
    return { value = value, per_protocol = per_protocol, filled = {} }
end
local url_params_cached = new_cache(build_url_params)

--- The `dubbo.metadata-service.url-params` map for `protocol`, or nil.
-- Reads the 3.x flat form (a map with a `protocol` entry: returned when
-- `protocol` is nil or equal) and the 2.7 per-protocol form
-- (`{"dubbo":{...}}`: the map of `protocol`, or with `protocol` nil the
-- first by name, in both cases with its `protocol` entry filled in).
-- @treturn ?table read-only
function _M.url_params(inst, protocol)
    local text = meta(inst, _M.URL_PARAMS)
    if type(text) ~= "string" then
        return nil
    end
    local entry = url_params_cached(text)
    if not entry then
        return nil
    end
    local value = entry.value
    if not entry.per_protocol then
        if protocol == nil or value.protocol == nil or value.protocol == protocol then
            return value
        end
        return nil
    end
    if protocol == nil then
        local names = {}
        for k, v in pairs(value) do
            if type(v) == "table" then
                names[#names + 1] = k
            end
        end
        sort(names)
        protocol = names[1]
    end
    local filled = entry.filled[protocol]
    if filled == nil then
        local m = value[protocol]
        if type(m) ~= "table" then
            return nil
        end
        filled = { protocol = protocol }
        for k, v in pairs(m) do
            filled[k] = v
        end
        entry.filled[protocol] = filled
    end
    return filled
end

local function set_meta(inst, key, value)
    if inst.metadata == nil then
        inst.metadata = {}
    end
    inst.metadata[key] = value
end

--- Sets the metadata revision.
function _M.set_revision(inst, rev)
    if type(rev) ~= "string" or rev == "" then
        error("instance.set_revision: revision must be a non-empty string", 2)
    end
    set_meta(inst, _M.REVISION, rev)
end

--- Sets the storage type (`"local"` or `"remote"`).
function _M.set_storage_type(inst, t)
    if t ~= "local" and t ~= "remote" then
        error("instance.set_storage_type: 'local' or 'remote', got " .. tostring(t), 2)
    end
    set_meta(inst, _M.STORAGE_TYPE, t)
end

--- Sets `dubbo.endpoints` from `{ {port=, protocol=}, ... }`, written as
-- Java writes it: `[{"port":20880,"protocol":"dubbo"}]`.
function _M.set_endpoints(inst, list)
    local parts = {}
    for i, e in ipairs(list) do
        if type(e.port) ~= "number" or e.port % 1 ~= 0 or type(e.protocol) ~= "string" then
            error("instance.set_endpoints: entry " .. i .. " needs an integer port and a protocol", 2)
        end
        parts[i] = format('{"port":%d,"protocol":%s}', e.port, js.json_quote(e.protocol))
    end
    set_meta(inst, _M.ENDPOINTS, "[" .. concat(parts, ",") .. "]")
end

--- Encodes a string map as compact JSON with sorted keys (numbers and
-- booleans are written as strings, as Dubbo's map holds strings).
function _M.encode_string_map(map)
    local keys = {}
    for k in pairs(map) do
        keys[#keys + 1] = k
    end
    sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do
        parts[i] = js.json_quote(k) .. ":" .. js.json_quote(tostring(map[k]))
    end
    return "{" .. concat(parts, ",") .. "}"
end

--- Sets `dubbo.metadata-service.url-params` from a flat string map (3.x
-- form), as compact JSON with sorted keys.
function _M.set_url_params(inst, map)
    if type(map) ~= "table" then
        error("instance.set_url_params: expected a table", 2)
    end
    set_meta(inst, _M.URL_PARAMS, _M.encode_string_map(map))
end

return _M
