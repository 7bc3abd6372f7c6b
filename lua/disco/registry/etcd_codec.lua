--- The pure parts of `registry/etcd`: etcd v3's JSON gateway encoding,
-- the key layout, and the translation of ranges and watch events into
-- registry instances and diffs. No I/O here, so all of it is unit-tested.
--
-- The gateway (grpc-gateway over etcd's gRPC API) wants keys and values
-- base64 (RFC 4648, padded) and writes 64-bit integers (revisions, lease
-- IDs) as JSON strings. Lease IDs exceed 2^53, so they stay strings here;
-- revisions are turned into numbers (a store would need 2^53 writes to
-- lose precision).
--
-- Layout, under the registry URL's prefix (`etcd://h:p/prefix`):
--   {prefix}/services/{app}/{host}:{port}   an instance, bound to a lease,
--                                           with the ZooKeeper adapter's JSON
--   {prefix}{path}                          a config value (`get_config`),
--                                           e.g. {prefix}/dubbo/mapping/{iface}
-- @module disco.registry.etcd_codec

local cjson = require "cjson.safe"
local bit = require "bit"
local zk_instance = require "disco.registry.zk_instance"

local _M = {}

local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift
local byte, char, concat = string.byte, string.char, table.concat

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ENC, DEC = {}, {}
for i = 1, 64 do
    local c = ALPHABET:sub(i, i)
    ENC[i - 1] = c
    DEC[byte(c)] = i - 1
end

--- Standard base64 with padding.
function _M.b64encode(s)
    local out, n = {}, #s
    for i = 1, n - 2, 3 do
        local a, b, c = byte(s, i, i + 2)
        local v = bor(lshift(a, 16), lshift(b, 8), c)
        out[#out + 1] = ENC[rshift(v, 18)] .. ENC[band(rshift(v, 12), 63)]
            .. ENC[band(rshift(v, 6), 63)] .. ENC[band(v, 63)]
    end
    local rest = n % 3
    if rest == 1 then
        local v = lshift(byte(s, n), 16)
        out[#out + 1] = ENC[rshift(v, 18)] .. ENC[band(rshift(v, 12), 63)] .. "=="
    elseif rest == 2 then
        local v = bor(lshift(byte(s, n - 1), 16), lshift(byte(s, n), 8))
        out[#out + 1] = ENC[rshift(v, 18)] .. ENC[band(rshift(v, 12), 63)]
            .. ENC[band(rshift(v, 6), 63)] .. "="
    end
    return concat(out)
end

--- Decodes standard base64 (padding required, as the gateway writes it).
-- @return the bytes, or nil and what is wrong
function _M.b64decode(s)
    if type(s) ~= "string" then
        return nil, "base64: expected a string, got " .. type(s)
    end
    local n = #s
    if n % 4 ~= 0 then
        return nil, "base64: length " .. n .. " is not a multiple of 4"
    end
    local out = {}
    for i = 1, n, 4 do
        local c1, c2, c3, c4 = byte(s, i, i + 3)
        local a, b = DEC[c1], DEC[c2]
        local last = i + 3 == n
        local pad3, pad4 = last and c3 == 61, last and c4 == 61
        local c = pad3 and 0 or DEC[c3]
        local d = (pad3 or pad4) and 0 or DEC[c4]
        if not (a and b and c and d) or (pad3 and not pad4) then
            return nil, "base64: bad character in '" .. s:sub(i, i + 3) .. "'"
        end
        local v = bor(lshift(a, 18), lshift(b, 12), lshift(c, 6), d)
        if pad3 then
            out[#out + 1] = char(rshift(v, 16))
        elseif pad4 then
            out[#out + 1] = char(rshift(v, 16), band(rshift(v, 8), 255))
        else
            out[#out + 1] = char(rshift(v, 16), band(rshift(v, 8), 255), band(v, 255))
        end
    end
    return concat(out)
end

--- The end of the key range holding every key that starts with `prefix`
-- (etcd's range_end: the prefix with its last byte that is not 0xff
-- incremented and what follows dropped); "\0" for the empty prefix (all
-- keys).
function _M.prefix_end(prefix)
    for i = #prefix, 1, -1 do
        local b = byte(prefix, i)
        if b < 255 then
            return prefix:sub(1, i - 1) .. char(b + 1)
        end
    end
    return "\0"
end

--- The key layout under `prefix` ("" or "/something", no trailing "/").
function _M.services_prefix(prefix)
    return prefix .. "/services/"
end

function _M.app_prefix(prefix, app)
    return prefix .. "/services/" .. app .. "/"
end

function _M.instance_key(prefix, instance)
    return _M.app_prefix(prefix, instance.name) .. instance.host .. ":" .. instance.port
end

function _M.config_key(prefix, path)
    return prefix .. path
end

--- A URL prefix ("/a/b") checked: "" or absolute, no empty segment, no
-- trailing "/".
-- @return the prefix, or nil and the reason
function _M.check_prefix(prefix)
    if prefix == nil or prefix == "" or prefix == "/" then
        return ""
    end
    if type(prefix) ~= "string" or not prefix:match("^/[^/]") or prefix:match("//")
        or prefix:match("/$") then
        return nil, "prefix must be empty or an absolute path such as /disco, got " .. tostring(prefix)
    end
    return prefix
end

--- JSON bodies of gateway requests. `key`, `range_end`, `value` are raw
-- bytes (encoded here); integers are sent as strings.
function _M.encode(body)
    local text = cjson.encode(body)
    return text
end

-- Fields holding raw bytes in the requests built below.
local function b64(s)
    return s and _M.b64encode(s) or nil
end

function _M.range_request(key, range_end, opts)
    opts = opts or {}
    return _M.encode({ key = b64(key), range_end = b64(range_end),
                       keys_only = opts.keys_only or nil,
                       limit = opts.limit and tostring(opts.limit) or nil })
end

function _M.put_request(key, value, lease)
    return _M.encode({ key = b64(key), value = b64(value), lease = lease })
end

--- A compare of a txn: target "MOD", "CREATE", "VERSION", "LEASE" with
-- its value (`mod_revision`, `create_revision`, `version`, `lease`).
local TARGET_FIELDS = { MOD = "mod_revision", CREATE = "create_revision",
                        VERSION = "version", LEASE = "lease" }

function _M.compare(key, target, value, result)
    local field = assert(TARGET_FIELDS[target], "unknown compare target")
    return { key = b64(key), target = target, result = result or "EQUAL",
             [field] = tostring(value) }
end

--- Txn ops: {put = {key, value, lease}} | {delete = key} | {range = key}.
local function op(o)
    if o.put then
        return { request_put = { key = b64(o.put[1]), value = b64(o.put[2]), lease = o.put[3] } }
    elseif o.delete then
        return { request_delete_range = { key = b64(o.delete), prev_kv = true } }
    else
        return { request_range = { key = b64(o.range) } }
    end
end

function _M.txn_request(compares, success, failure)
    local s, f = {}, {}
    for i, o in ipairs(success or {}) do
        s[i] = op(o)
    end
    for i, o in ipairs(failure or {}) do
        f[i] = op(o)
    end
    -- cjson writes an empty table as {}: leave empty lists out.
    return _M.encode({ compare = compares, success = #s > 0 and s or nil,
                       failure = #f > 0 and f or nil })
end

--- The watch request of a key range from `start_revision` on, with the
-- previous value of each changed key.
function _M.watch_request(key, range_end, start_revision)
    return _M.encode({ create_request = {
        key = b64(key), range_end = b64(range_end),
        start_revision = tostring(start_revision),
        prev_kv = true, progress_notify = true,
    } })
end

--- Decodes one JSON document of the gateway (a response, or one line of a
-- stream). An `error` object (gRPC status) becomes "EETCD: message".
-- @return the decoded table, or nil and "ENAME: ..."
function _M.decode(text)
    if type(text) ~= "string" or text == "" then
        return nil, "EPROTO: empty answer from etcd"
    end
    local doc, err = cjson.decode(text)
    if type(doc) ~= "table" then
        return nil, "EPROTO: etcd answered something that is not a JSON object ("
            .. tostring(err or text:sub(1, 80)) .. ")"
    end
    local e = doc.error
    if e ~= nil and e ~= cjson.null then
        if type(e) == "table" then
            return nil, "EETCD: " .. tostring(e.message or e.error or "error")
                .. " (code " .. tostring(e.code or e.grpc_code) .. ")"
        end
        return nil, "EETCD: " .. tostring(doc.message or e) .. " (code " .. tostring(doc.code) .. ")"
    end
    return doc
end

--- A revision field (a JSON string, or absent meaning 0) as a number.
function _M.revision(v)
    return tonumber(v) or 0
end

--- A kv's key and value, decoded; nil and the reason when not base64.
function _M.kv_bytes(kv)
    local key, kerr = _M.b64decode(kv.key or "")
    if not key then
        return nil, nil, kerr
    end
    if kv.value == nil then
        return key, ""
    end
    local value, verr = _M.b64decode(kv.value)
    if not value then
        return key, nil, verr
    end
    return key, value
end

-- An instance's identity, read by name like registry/zookeeper's: the
-- key's creation and modification revisions and the lease it is bound to
-- (the registration's "session"). Held in array slots behind a read-only
-- metatable, as registry/zookeeper keeps it.
local IDENTITY_SLOTS = { created = 1, modified = 2, owner = 3 }
local IDENTITY_MT = {
    __index = function(t, k)
        local slot = IDENTITY_SLOTS[k]
        return slot and rawget(t, slot)
    end,
    __newindex = function() error("an instance's identity is read-only", 2) end,
}

--- The instance a kv holds (`id` is the key's last segment), with its
-- identity; nil and the reason when the value is not instance JSON.
function _M.kv_instance(kv, id, value)
    if #value > zk_instance.MAX_BYTES then
        return nil, string.format("value is %d bytes, over the %d-byte limit", #value, zk_instance.MAX_BYTES)
    end
    local instance, why = zk_instance.decode(value, id)
    if not instance then
        return nil, why
    end
    instance.identity = setmetatable({ _M.revision(kv.create_revision), _M.revision(kv.mod_revision),
                                       kv.lease or "0" }, IDENTITY_MT)
    return instance
end

--- The sorted, de-duplicated next path segments of `keys` below `base`
-- (which ends with "/"): the "children" of a ZooKeeper-style path.
function _M.children(keys, base)
    local seen, names = {}, {}
    for _, key in ipairs(keys) do
        if key:sub(1, #base) == base then
            local name = key:sub(#base + 1):match("^[^/]+")
            if name and not seen[name] then
                seen[name] = true
                names[#names + 1] = name
            end
        end
    end
    table.sort(names)
    return names
end

--- Translates a list of watch events (etcd's `events`) on the instances of
-- one application (keys under `base`) into changes: a list of
-- `{ id=, kv= }` (a put) or `{ id=, deleted = true, prev_kv= }`, keeping
-- only the last change of each key, and the highest mod_revision seen.
-- Keys deeper than `base/{id}` are not instances and are left out.
function _M.event_changes(events, base)
    local last, order, top = {}, {}, 0
    for _, ev in ipairs(events or {}) do
        local kv = ev.kv or {}
        local rev = _M.revision(kv.mod_revision)
        if rev > top then
            top = rev
        end
        local key = _M.b64decode(kv.key or "")
        local id = key and key:sub(1, #base) == base and key:sub(#base + 1)
        if id and id ~= "" and not id:find("/", 1, true) then
            if not last[id] then
                order[#order + 1] = id
            end
            if ev.type == "DELETE" then
                last[id] = { id = id, deleted = true, prev_kv = ev.prev_kv }
            else
                last[id] = { id = id, kv = kv }
            end
        end
    end
    local out = {}
    for i, id in ipairs(order) do
        out[i] = last[id]
    end
    return out, top
end

--- Applies changes to `held` (id -> instance) and returns the diff
-- `{ added, updated, removed }` of real differences. `decode(id, kv)`
-- gives the instance of a put, or nil and the reason (the key then keeps
-- its last good instance). A put whose modification revision is the one
-- held is no change (a replay after a re-list).
function _M.apply(held, changes, decode)
    local diff = { added = {}, updated = {}, removed = {} }
    for _, ch in ipairs(changes) do
        local old = held[ch.id]
        if ch.deleted then
            if old then
                held[ch.id] = nil
                diff.removed[#diff.removed + 1] = old
            end
        elseif not old or old.identity.modified ~= _M.revision(ch.kv.mod_revision) then
            local instance = decode(ch.id, ch.kv)
            if instance then
                held[ch.id] = instance
                if old then
                    diff.updated[#diff.updated + 1] = instance
                else
                    diff.added[#diff.added + 1] = instance
                end
            end
        end
    end
    return diff
end

--- The changes that turn `held` into the result of a fresh range (`kvs`
-- of the keys under `base`): a put for every key new or modified, a delete
-- for every key gone. After a compaction the watcher re-lists and applies
-- these, so that the caller sees only real differences.
function _M.relist_changes(held, kvs, base)
    local changes, present = {}, {}
    for _, kv in ipairs(kvs or {}) do
        local key = _M.b64decode(kv.key or "")
        local id = key and key:sub(1, #base) == base and key:sub(#base + 1)
        if id and id ~= "" and not id:find("/", 1, true) then
            present[id] = true
            changes[#changes + 1] = { id = id, kv = kv }
        end
    end
    local gone = {}
    for id in pairs(held) do
        if not present[id] then
            gone[#gone + 1] = id
        end
    end
    table.sort(gone)
    for _, id in ipairs(gone) do
        changes[#changes + 1] = { id = id, deleted = true }
    end
    return changes
end

return _M
