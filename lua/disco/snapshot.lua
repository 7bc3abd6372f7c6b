--- Disk snapshots of address lists (DESIGN.md §3, "Safety nets"): the
-- resolved list of one subscription, written atomically on every change
-- and read back at start when the registry cannot answer in time.
--
-- A snapshot is a JSON document of its own per service ID:
--
--    { "version": 1, "service_id": "dubbo:com.acme.Cart:1.0.0",
--      "saved_at": 1763733158000,          -- wall clock, ms
--      "entries": [ { "url":, "host":, "port":, "protocol":, "path":, "app":,
--                     "service": { name, group, version, protocol, port, path, params },
--                     "instance": { name, host, port, id, metadata } } ] }
--
-- The file is replaced whole (disco.file_replace), so a reader never sees
-- half a file. Reading is bounded (`MAX_BYTES`) and checked
-- field by field: a corrupt file is refused with a reason, never raised on.
-- @module disco.snapshot

local cjson = require "cjson.safe"
local core = require "disco.core"
local file_replace = require "disco.file_replace"

local os_time = os.time
local type = type

local _M = {}

--- The snapshot format version written and accepted.
_M.VERSION = 1

--- The largest snapshot file read, in bytes.
_M.MAX_BYTES = 16 * 1024 * 1024

--- The current wall-clock time in ms (a snapshot's age survives restarts,
-- so the loop's monotonic clock will not do).
function _M.wall_ms()
    return os_time() * 1000
end

--- The file of service ID `id` in `dir`: the ID with every character
-- outside `[%w._-]` replaced by `_`, cut to 80 characters, then a digest of
-- the whole ID (two IDs that read the same once cleaned still differ).
-- @tparam string dir
-- @tparam string id
-- @treturn string
function _M.path_of(dir, id)
    local clean = id:gsub("[^%w%._%-]", "_"):sub(1, 80)
    return dir .. "/" .. clean .. "-" .. core.md5_hex(id):sub(1, 16) .. ".json"
end

local function plain_map(t)
    local out = {}
    for k, v in pairs(t or {}) do
        if type(k) == "string" and (type(v) == "string" or type(v) == "number"
                                    or type(v) == "boolean") then
            out[k] = v
        end
    end
    return out
end

local function encode_entry(e)
    local s, inst = e.service or {}, e.instance or {}
    return {
        url = e.url, host = e.host, port = e.port, protocol = e.protocol,
        path = e.path, app = e.app,
        service = { name = s.name, group = s.group, version = s.version,
                    protocol = s.protocol, port = s.port, path = s.path,
                    params = plain_map(s.params) },
        instance = { name = inst.name, host = inst.host, port = inst.port,
                     id = inst.id, metadata = plain_map(inst.metadata) },
    }
end

--- Writes the entries of service ID `id` to its file in `dir`
-- atomically (temporary file, then rename).
-- @treturn[1] string the path
-- @treturn[2] nil
-- @treturn[2] string "ENAME: message"
-- @treturn[2] string "ENAME"
function _M.write(dir, id, entries, saved_at)
    local list = {}
    for i, e in ipairs(entries) do
        list[i] = encode_entry(e)
    end
    local doc = { version = _M.VERSION, service_id = id,
                  saved_at = saved_at or _M.wall_ms(), entries = list }
    local text = cjson.encode(doc)
    if not text then
        return nil, "EINVAL: cannot encode the snapshot of " .. id, "EINVAL"
    end
    -- cjson writes an empty table as {}; the entries are a list.
    if #list == 0 then
        text = text:gsub('"entries":{}', '"entries":[]')
    end
    local path = _M.path_of(dir, id)
    local ok, err, code = file_replace.write(path, text)
    if not ok then
        return nil, err, code
    end
    return path
end

local function is_str(v) return type(v) == "string" end
local function is_int(v) return type(v) == "number" and v % 1 == 0 end

local function string_map(t)
    if type(t) ~= "table" then
        return nil
    end
    local out = {}
    for k, v in pairs(t) do
        if not is_str(k) then
            return nil
        end
        if type(v) == "number" or type(v) == "boolean" then
            v = tostring(v)
        elseif not is_str(v) then
            return nil
        end
        out[k] = v
    end
    return out
end

-- Checks one decoded entry and rebuilds it as an address entry; nil and
-- the reason when a field is missing or of the wrong type.
local function decode_entry(e, i)
    local function bad(what)
        return nil, "entry " .. i .. ": " .. what
    end
    if type(e) ~= "table" then
        return bad("not an object")
    end
    if not is_str(e.url) or e.url == "" then return bad("no url") end
    if not is_str(e.host) or e.host == "" then return bad("no host") end
    if not is_int(e.port) or e.port < 0 or e.port > 65535 then return bad("bad port") end
    if not is_str(e.protocol) then return bad("no protocol") end
    if not is_str(e.path) then return bad("no path") end
    if e.app ~= nil and not is_str(e.app) then return bad("bad app") end
    local s, inst = e.service, e.instance
    if type(s) ~= "table" or not is_str(s.name) then return bad("no service") end
    if type(inst) ~= "table" or not is_str(inst.host) or not is_int(inst.port) then
        return bad("no instance")
    end
    local params, metadata = string_map(s.params or {}), string_map(inst.metadata or {})
    if not params then return bad("bad service params") end
    if not metadata then return bad("bad instance metadata") end
    local function opt_str(v) return is_str(v) and v or nil end
    local instance = { name = opt_str(inst.name) or e.app, host = inst.host, port = inst.port,
                       id = opt_str(inst.id), metadata = metadata, stale = true }
    return {
        url = e.url, host = e.host, port = e.port, protocol = e.protocol, path = e.path,
        app = e.app, stale = true, instance = instance,
        service = { name = s.name, group = opt_str(s.group), version = opt_str(s.version),
                    protocol = opt_str(s.protocol) or e.protocol,
                    port = is_int(s.port) and s.port or -1,
                    path = opt_str(s.path) or s.name, params = params },
    }
end

--- Reads the snapshot of service ID `id` in `dir`: its entries (each
-- marked `stale = true`, with its instance) and the time it was saved.
-- A missing, oversized or corrupt file, or one of another service ID, is
-- refused.
-- @treturn[1] table `{ entries =, saved_at =, path = }`
-- @treturn[2] nil
-- @treturn[2] string "ENAME: message" (ENOENT: no snapshot; EINVAL: corrupt)
-- @treturn[2] string "ENAME"
function _M.read(dir, id)
    local path = _M.path_of(dir, id)
    local text, _, code = file_replace.read(path, _M.MAX_BYTES)
    if code == "EFBIG" then
        return nil, "EINVAL: snapshot " .. path .. " is larger than " .. _M.MAX_BYTES
            .. " bytes", "EINVAL"
    elseif not text then
        return nil, "ENOENT: no snapshot of " .. id .. " at " .. path, "ENOENT"
    end
    local function corrupt(why)
        return nil, "EINVAL: snapshot " .. path .. " is corrupt: " .. why, "EINVAL"
    end
    local doc = text and cjson.decode(text)
    if type(doc) ~= "table" then
        return corrupt("not a JSON object")
    end
    if doc.version ~= _M.VERSION then
        return corrupt("version " .. tostring(doc.version))
    end
    if doc.service_id ~= id then
        return corrupt("it is of " .. tostring(doc.service_id))
    end
    if not is_int(doc.saved_at) then
        return corrupt("no saved_at")
    end
    if type(doc.entries) ~= "table" then
        return corrupt("no entries")
    end
    local entries = {}
    for i = 1, #doc.entries do
        local e, why = decode_entry(doc.entries[i], i)
        if not e then
            return corrupt(why)
        end
        entries[i] = e
    end
    return { entries = entries, saved_at = doc.saved_at, path = path }
end

return _M
