--- MetadataInfo and ServiceInfo (WIRE.md §4–§5): what one instance exports,
-- its revision (byte-exact with Dubbo 3.1.1 and later) and its canonical
-- JSON form (the remote-mode document).
--
-- A ServiceInfo is a plain table `{ name=, group=, version=, protocol=,
-- port=, path=, params = {k=v} }`. A MetadataInfo is `{ app=, services =
-- {[matchKey] = service}, revision = }` with methods; its revision is
-- computed on demand and cached in `revision` until the next `add` or
-- `remove` (see `revision_of`).
-- @module disco.metadata_info

local cjson = require "cjson.safe"
local core = require "disco.core"
local js = require "disco.java_string"
local sid = require "disco.service_id"

local type, pairs, tostring, tonumber, concat, format, sort = type, pairs, tostring, tonumber, table.concat,
    string.format, table.sort

local _M = {}

--- Documents larger than this are refused unread by `from_json`.
_M.MAX_BYTES = 1024 * 1024
--- The deepest JSON nesting `from_json` accepts (a real document has 4).
_M.MAX_DEPTH = 16

--- The parameter names Dubbo leaves out of ServiceInfo params (WIRE.md §4).
_M.EXCLUDED_KEYS = {
    "monitor", "bind.ip", "bind.port", "qos.enable", "qos.host", "qos.port",
    "qos.accept.foreign.ip", "validation", "interfaces", "pid", "timestamp",
    "heartbeat.timeout", "ipv6",
}

local excluded_lower, excluded_dotted = {}, {}
for i, x in ipairs(_M.EXCLUDED_KEYS) do
    excluded_lower[x] = true
    excluded_dotted[i] = "." .. x
end

--- Whether Dubbo leaves parameter `key` out of ServiceInfo params: the key
-- equals one of `EXCLUDED_KEYS` ignoring case, or contains `"." .. x`
-- (case-sensitive, as Java's `String.contains`) for one of them.
-- @treturn boolean
function _M.is_excluded(key)
    if excluded_lower[key:lower()] then
        return true
    end
    if key:find(".", 1, true) then
        for _, dotted in ipairs(excluded_dotted) do
            if key:find(dotted, 1, true) then
                return true
            end
        end
    end
    return false
end

--- A copy of `params` without the excluded keys (values as strings).
-- @tparam table params
-- @treturn table
function _M.filter_params(params)
    local out = {}
    for k, v in pairs(params or {}) do
        if type(k) == "string" and not _M.is_excluded(k) then
            out[k] = type(v) == "string" and v or tostring(v)
        end
    end
    return out
end

local function nonempty(s)
    if s == "" or type(s) ~= "string" then
        return nil
    end
    return s
end

--- Builds a ServiceInfo. `name` (or `interface`) is required; `protocol`
-- defaults to `dubbo`, `port` to -1 (unknown), `path` to the name; `params`
-- are filtered with `filter_params`. Raises on wrong types.
-- @tparam table t `{ name=, group=, version=, protocol=, port=, path=, params= }`
-- @treturn table
function _M.service(t)
    local name = t.name or t.interface
    if type(name) ~= "string" or name == "" then
        error("metadata_info.service: name (the interface) must be a non-empty string", 2)
    end
    local port = t.port or -1
    if type(port) ~= "number" or port % 1 ~= 0 then
        error("metadata_info.service: port must be an integer", 2)
    end
    if t.params ~= nil and type(t.params) ~= "table" then
        error("metadata_info.service: params must be a table", 2)
    end
    return {
        name = name, group = nonempty(t.group), version = nonempty(t.version),
        protocol = nonempty(t.protocol) or "dubbo", port = port,
        path = t.path or name, params = _M.filter_params(t.params),
    }
end

--- Dubbo's matchKey of a ServiceInfo: `[group/]name[:version][:protocol]`.
_M.match_key = sid.match_key

local methods = {}
local mt = { __index = methods }

--- A MetadataInfo for application `app`, without services.
-- @tparam string app
-- @treturn table
function _M.new(app)
    if type(app) ~= "string" or app == "" then
        error("metadata_info.new: app must be a non-empty string", 2)
    end
    return setmetatable({ app = app, services = {} }, mt)
end

--- Adds `service` (a ServiceInfo), replacing one with the same matchKey.
-- @treturn string the matchKey
function methods:add(service)
    if type(service) ~= "table" or type(service.name) ~= "string" or service.name == "" then
        error("metadata_info:add: expected a ServiceInfo with a name (see metadata_info.service)", 2)
    end
    local mk = sid.match_key(service)
    self.services[mk] = service
    rawset(self, "revision", nil)
    return mk
end

--- Removes the service with `match_key`.
-- @treturn ?table the removed service
function methods:remove(match_key)
    local service = self.services[match_key]
    self.services[match_key] = nil
    rawset(self, "revision", nil)
    return service
end

--- The matchKeys, sorted by Java `String.compareTo`.
local function sorted_keys(info)
    return js.sorted_keys(info.services)
end

--- The services, sorted by matchKey.
-- @treturn table list
function methods:service_list()
    local list = {}
    for i, mk in ipairs(sorted_keys(self)) do
        list[i] = self.services[mk]
    end
    return list
end

local function int(n)
    return format("%d", n)
end

--- The string Dubbo hashes (`MetadataInfo.calAndGetRevision`): the app,
-- then per service in matchKey order `matchKey .. port .. path ..
-- TreeMap(params).toString()`. nil when there are no services.
-- @treturn ?string
function _M.revision_input(info)
    local keys = sorted_keys(info)
    if #keys == 0 then
        return nil
    end
    local parts = { info.app }
    for _, mk in ipairs(keys) do
        local s = info.services[mk]
        parts[#parts + 1] = sid.match_key(s) .. int(s.port or -1) .. (s.path or "null")
            .. js.tree_map_string(s.params or {})
    end
    return concat(parts)
end

--- Computes the revision, without looking at or touching any cached one:
-- `"0"` without services, else the lowercase hex MD5 (from the C core) of
-- `revision_input`.
-- @treturn string
function _M.compute_revision(info)
    local input = _M.revision_input(info)
    return input and core.md5_hex(input) or "0"
end

--- The revision, cached in the field `info.revision`: the one stored there
-- (computed earlier, or assigned by a consumer that knows the provider's
-- name for it), else computed and stored. `add` and `remove` clear it.
-- (There is no `info:revision()` method on purpose: the field of that
-- name would hide it after the first call.)
-- @treturn string
function _M.revision_of(info)
    local rev = rawget(info, "revision")
    if type(rev) ~= "string" then
        rev = _M.compute_revision(info)
        rawset(info, "revision", rev)
    end
    return rev
end

local quote = js.json_quote

local function service_json(s)
    local out = { '{"name":', quote(s.name) }
    if s.group then
        out[#out + 1] = ',"group":' .. quote(s.group)
    end
    if s.version then
        out[#out + 1] = ',"version":' .. quote(s.version)
    end
    if s.protocol then
        out[#out + 1] = ',"protocol":' .. quote(s.protocol)
    end
    out[#out + 1] = ',"port":' .. int(s.port or -1)
    if s.path then
        out[#out + 1] = ',"path":' .. quote(s.path)
    end
    local params = s.params or {}
    local pairs_out = {}
    for i, k in ipairs(js.sorted_keys(params)) do
        pairs_out[i] = quote(k) .. ":" .. quote(tostring(params[k]))
    end
    out[#out + 1] = ',"params":{' .. concat(pairs_out, ",") .. "}}"
    return concat(out)
end

--- The canonical JSON document (WIRE.md §5 remote form): compact, fields
-- in the order app, revision (`revision_of`), services; services sorted by
-- matchKey, each
-- with name, group, version, protocol, port, path, params (sorted keys);
-- absent group, version, protocol and path are left out.
-- @treturn string
function methods:to_json()
    local out = {}
    for i, mk in ipairs(sorted_keys(self)) do
        out[i] = quote(mk) .. ":" .. service_json(self.services[mk])
    end
    return '{"app":' .. quote(self.app) .. ',"revision":' .. quote(_M.revision_of(self))
        .. ',"services":{' .. concat(out, ",") .. "}}"
end

local decoder = cjson.new()
decoder.decode_max_depth(_M.MAX_DEPTH)

local function opt_string(v, what)
    if v == nil or v == cjson.null then
        return nil
    end
    if type(v) ~= "string" then
        error(what .. " must be a string", 0)
    end
    return v ~= "" and v or nil
end

local function service_from(mk, t)
    if type(t) ~= "table" then
        error("service '" .. mk .. "' is not an object", 0)
    end
    local name = opt_string(t.name, "service '" .. mk .. "': name")
    if not name then
        error("service '" .. mk .. "' has no name", 0)
    end
    local port = t.port
    if port == nil or port == cjson.null then
        port = -1
    else
        port = tonumber(port)
        if not port or port % 1 ~= 0 then
            error("service '" .. mk .. "': port must be an integer", 0)
        end
    end
    local params = {}
    local raw = t.params
    if raw ~= nil and raw ~= cjson.null then
        if type(raw) ~= "table" then
            error("service '" .. mk .. "': params must be an object", 0)
        end
        for k, v in pairs(raw) do
            if type(k) ~= "string" then
                error("service '" .. mk .. "': params must be an object", 0)
            end
            if v ~= cjson.null then
                if type(v) == "table" then
                    error("service '" .. mk .. "': param '" .. k .. "' is not a string", 0)
                end
                params[k] = type(v) == "string" and v or tostring(v)
            end
        end
    end
    return {
        name = name,
        group = opt_string(t.group, "service '" .. mk .. "': group"),
        version = opt_string(t.version, "service '" .. mk .. "': version"),
        protocol = opt_string(t.protocol, "service '" .. mk .. "': protocol"),
        port = port,
        path = opt_string(t.path, "service '" .. mk .. "': path"),
        params = params,
    }
end

local function decode_info(doc)
    if type(doc) ~= "table" then
        error("not a JSON object", 0)
    end
    local app = opt_string(doc.app, "app")
    if not app then
        error("missing app", 0)
    end
    local info = _M.new(app)
    info.declared_revision = opt_string(doc.revision, "revision")
    local services = doc.services
    if services ~= nil and services ~= cjson.null then
        if type(services) ~= "table" then
            error("services must be an object", 0)
        end
        local keys = {}
        for mk in pairs(services) do
            if type(mk) ~= "string" then
                error("services must be an object keyed by matchKey", 0)
            end
            keys[#keys + 1] = mk
        end
        sort(keys)
        for _, mk in ipairs(keys) do
            info:add(service_from(mk, services[mk]))
        end
    end
    return info
end

--- Reads a MetadataInfo from a decoded document: a table shaped like the
-- JSON form (`app`, `revision`, `services` = matchKey -> {name, group,
-- version, protocol, port, path, params}), such as the object a
-- MetadataService call returns once converted. Same rules as `from_json`;
-- never raises.
-- @treturn table the MetadataInfo, or nil and an error
function _M.from_table(doc)
    local ok, info = pcall(decode_info, doc)
    if not ok then
        return nil, "metadata: " .. tostring(info)
    end
    return info
end

--- Reads a MetadataInfo JSON document (Dubbo's or `to_json`'s). Unknown
-- fields are ignored; a null group or version, a numeric or string port and
-- a missing `services` are accepted. Parameters are taken as they are (not
-- filtered again), so the revision is the one Java computes for them. The
-- document's own revision is kept as `declared_revision` (`revision` is
-- left unset, so it is computed); services are keyed by their recomputed
-- matchKey. Never raises.
-- @tparam string s
-- @treturn table the MetadataInfo, or nil and an error
function _M.from_json(s)
    if type(s) ~= "string" then
        return nil, "metadata: expected a string, got " .. type(s)
    end
    if #s > _M.MAX_BYTES then
        return nil, format("metadata: document of %d bytes is over the %d-byte limit", #s, _M.MAX_BYTES)
    end
    local doc, err = decoder.decode(s)
    if doc == nil then
        return nil, "metadata: invalid JSON: " .. tostring(err)
    end
    return _M.from_table(doc)
end

--- Whether `v` is a MetadataInfo made by this module.
function _M.is_metadata_info(v)
    return getmetatable(v) == mt
end

return _M
