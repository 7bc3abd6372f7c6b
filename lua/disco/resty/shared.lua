--- The shared-dict protocol between the owner and the nginx workers, and
-- the compact format of an address list (docs/openresty.md).
--
-- Keys of the dict (one `lua_shared_dict`, survives HUP reloads):
--
--    seq                 global version counter (incremented per publish)
--    v/<service id>      the current version of that service's list
--    d/<service id>/<n>  the list of version n (the format below)
--    owner/gen           generation counter: each owner claims the next one
--    owner/pid, owner/since, owner/beat, owner/state, owner/mode
--    c/<name>            counters (publish_failed, feedback_dropped, ...)
--    fb                  the balancer's call outcomes, one record per worker,
--                        address and flush interval (a bounded list)
--
-- A publish writes the new data key first, then switches the version key,
-- then deletes the superseded data key; a write that does not fit leaves the
-- previous version in place (nothing is truncated, nothing evicted: only
-- `safe_set`/`safe_add`, and `incr` without an init value, which can evict
-- under pressure, on keys created before).
--
-- List format: a header line "D1 <count>", then one line per node:
-- host TAB port TAB weight [TAB key=value]..., where host, keys and values
-- have "%", TAB, LF and "=" percent-encoded. Readers parse it with
-- string.find once per version; no JSON on the request path.
--
-- Nothing here calls ngx: the dict is passed in (a real ngx.shared.DICT or
-- a table with the same methods), so the unit specs run it outside nginx.
-- @module disco.resty.shared

local pairs = pairs
local sort = table.sort
local str_byte = string.byte
local str_find = string.find
local str_format = string.format
local str_gsub = string.gsub
local str_sub = string.sub
local concat = table.concat
local tonumber = tonumber
local tostring = tostring
local type = type

local _M = {}

_M.SEQ = "seq"
_M.OWNER_GEN = "owner/gen"
_M.FEEDBACK = "fb"

--- Counters every owner creates when it claims the dict.
_M.COUNTERS = { "publish_ok", "publish_failed", "feedback_handled", "feedback_dropped",
                "feedback_failed", "feedback_malformed", "decode_failed", "slow_steps", "claims" }

local FORMAT_TAG = "D1 "

-- ---------------------------------------------------------------- format

local function escape_char(c)
    return str_format("%%%02X", str_byte(c))
end

local function escape(s)
    if str_find(s, "[%%\t\n=]") then
        return (str_gsub(s, "[%%\t\n=]", escape_char))
    end
    return s
end

local function unescape_hex(h)
    return string.char(tonumber(h, 16))
end

local function unescape(s)
    if str_find(s, "%", 1, true) then
        return (str_gsub(s, "%%(%x%x)", unescape_hex))
    end
    return s
end

local function check_node(i, node)
    if type(node) ~= "table" then
        return nil, "node " .. i .. " is not a table"
    end
    if type(node.host) ~= "string" or node.host == "" then
        return nil, "node " .. i .. " has no host"
    end
    local port = node.port
    if type(port) ~= "number" or port % 1 ~= 0 or port < 1 or port > 65535 then
        return nil, "node " .. i .. " has no valid port"
    end
    local weight = node.weight
    if type(weight) ~= "number" or weight % 1 ~= 0 or weight < 0 then
        return nil, "node " .. i .. " has no valid weight"
    end
    return true
end

--- Serializes a list of nodes `{host=, port=, weight=, metadata=}`
-- (metadata: string keys, string or number values).
-- @return the text, or nil and the reason
function _M.encode(nodes)
    local lines = { FORMAT_TAG .. #nodes }
    for i = 1, #nodes do
        local node = nodes[i]
        local ok, err = check_node(i, node)
        if not ok then
            return nil, err
        end
        local line = escape(node.host) .. "\t" .. node.port .. "\t" .. node.weight
        local meta = node.metadata
        if meta then
            local keys = {}
            for k in pairs(meta) do
                keys[#keys + 1] = tostring(k)
            end
            sort(keys)
            for _, k in ipairs(keys) do
                line = line .. "\t" .. escape(k) .. "=" .. escape(tostring(meta[k]))
            end
        end
        lines[i + 1] = line
    end
    return concat(lines, "\n") .. "\n"
end

-- One node from the line s[first..last] (no LF inside).
local function decode_line(s, first, last)
    local t1 = str_find(s, "\t", first, true)
    if not t1 or t1 > last then
        return nil
    end
    local t2 = str_find(s, "\t", t1 + 1, true)
    if not t2 or t2 > last then
        return nil
    end
    local t3 = str_find(s, "\t", t2 + 1, true)
    if t3 and t3 > last then
        t3 = nil
    end
    local port = tonumber(str_sub(s, t1 + 1, t2 - 1))
    local weight = tonumber(str_sub(s, t2 + 1, (t3 or last + 1) - 1))
    if not port or not weight then
        return nil
    end
    local node = { host = unescape(str_sub(s, first, t1 - 1)), port = port, weight = weight }
    if t3 then
        local meta = {}
        local pos = t3 + 1
        while pos <= last + 1 do
            local stop = str_find(s, "\t", pos, true)
            if not stop or stop > last then
                stop = last + 1
            end
            local eq = str_find(s, "=", pos, true)
            if not eq or eq > stop then
                return nil
            end
            meta[unescape(str_sub(s, pos, eq - 1))] = unescape(str_sub(s, eq + 1, stop - 1))
            pos = stop + 1
        end
        node.metadata = meta
    end
    return node
end

--- Parses what `encode` wrote.
-- @return the list of nodes, or nil and the reason (a damaged or truncated
-- text is refused whole)
function _M.decode(s)
    if type(s) ~= "string" then
        return nil, "list: expected a string, got " .. type(s)
    end
    local eol = str_find(s, "\n", 1, true)
    local count = eol and str_sub(s, 1, 3) == FORMAT_TAG and tonumber(str_sub(s, 4, eol - 1))
    if not count then
        return nil, "list: not a disco list (bad header)"
    end
    local nodes = {}
    local pos = eol + 1
    for i = 1, count do
        eol = str_find(s, "\n", pos, true)
        if not eol then
            return nil, "list: truncated at node " .. i .. " of " .. count
        end
        local node = decode_line(s, pos, eol - 1)
        if not node then
            return nil, "list: node " .. i .. " is malformed"
        end
        nodes[i] = node
        pos = eol + 1
    end
    if pos ~= #s + 1 then
        return nil, "list: trailing data after " .. count .. " nodes"
    end
    return nodes
end

-- ------------------------------------------------------------------ keys

-- Key strings are memoized per service ID so that the request path does
-- not build (and hash) a new string per call. Bounded: IDs beyond the
-- limit are formatted each time.
local MAX_MEMO = 4096
local version_keys, memo_count = {}, 0

--- The version key of a service ID.
function _M.version_key(sid)
    local key = version_keys[sid]
    if key == nil then
        key = "v/" .. sid
        if memo_count < MAX_MEMO then
            version_keys[sid] = key
            memo_count = memo_count + 1
        end
    end
    return key
end

--- The data key of version `version` of a service ID.
function _M.data_key(sid, version)
    return "d/" .. sid .. "/" .. version
end

-- ------------------------------------------------------------- counters

--- Creates `key` with `value` unless it exists, without evicting anything.
local function ensure(dict, key, value)
    local ok, err = dict:safe_add(key, value)
    if ok or err == "exists" then
        return true
    end
    return nil, err
end
_M.ensure = ensure

--- Adds `n` (default 1) to counter `name` (c/<name>). The key was created by the
-- owner's claim; `incr` on an existing number allocates nothing, so it
-- cannot evict (incr with an init value can, in a full dict).
function _M.bump(dict, name, n)
    n = n or 1
    local key = "c/" .. name
    local v = dict:incr(key, n)
    if v == nil then
        if dict:safe_add(key, n) then
            return n
        end
        v = dict:incr(key, n) -- another process created it meanwhile
    end
    return v
end

--- The value of counter `name` (0 when absent).
function _M.counter(dict, name)
    return dict:get("c/" .. name) or 0
end

--- A new version number, or nil and the reason.
function _M.next_version(dict)
    local v, err = dict:incr(_M.SEQ, 1)
    if v == nil then
        local ok, aerr = ensure(dict, _M.SEQ, 0)
        if not ok then
            return nil, "cannot create the version counter: " .. tostring(aerr)
        end
        v, err = dict:incr(_M.SEQ, 1)
    end
    if v == nil then
        return nil, "cannot take a version: " .. tostring(err)
    end
    return v
end

-- --------------------------------------------------------------- publish

--- Publishes `text` (an encoded list) as the current list of `sid`:
-- the data under a new version key, then the version switch, then the
-- superseded data key deleted. On any failure the previous version stays
-- current, `c/publish_failed` is bumped and nil, reason come back.
-- @return the new version
function _M.publish(dict, sid, text)
    local version, err = _M.next_version(dict)
    if not version then
        _M.bump(dict, "publish_failed")
        return nil, err
    end
    local data_key = _M.data_key(sid, version)
    local ok, serr = dict:safe_set(data_key, text)
    if not ok then
        _M.bump(dict, "publish_failed")
        return nil, str_format("cannot store %d bytes for %s: %s (the previous list stays)",
                               #text, sid, tostring(serr))
    end
    local version_key = _M.version_key(sid)
    local previous = dict:get(version_key)
    ok, serr = dict:safe_set(version_key, version)
    if not ok then
        dict:delete(data_key)
        _M.bump(dict, "publish_failed")
        return nil, "cannot switch the version of " .. sid .. ": " .. tostring(serr)
            .. " (the previous list stays)"
    end
    if previous ~= nil and previous ~= version then
        dict:delete(_M.data_key(sid, previous))
    end
    _M.bump(dict, "publish_ok")
    return version
end

--- The text of the current version of `sid`, or nil.
function _M.current_text(dict, sid)
    local version = dict:get(_M.version_key(sid))
    return version ~= nil and dict:get(_M.data_key(sid, version)) or nil
end

--- How many nodes the current version of `sid` holds (0 when none).
function _M.current_count(dict, sid)
    local text = _M.current_text(dict, sid)
    local eol = text and str_find(text, "\n", 1, true)
    return eol and tonumber(str_sub(text, 4, eol - 1)) or 0
end

-- ---------------------------------------------------------------- reader

--- A per-worker reader: `reader:nodes(sid)` answers the list of the
-- current version, from its cache while the version key is unchanged.
-- @return the reader
function _M.reader(dict, on_error)
    local cache = {} -- sid -> { version =, nodes = }
    local self = { cache = cache }

    --- The current list of `sid` (a table shared by every caller: read
    -- only), or nil when nothing was ever published for it.
    function self.nodes(sid)
        local version = dict:get(_M.version_key(sid))
        local cached = cache[sid]
        if cached and cached.version == version then
            return cached.nodes
        end
        if version == nil then
            return cached and cached.nodes
        end
        -- The version moved: read its data. The owner may have superseded
        -- (and deleted) it between the two reads; read the version again a
        -- few times, then keep serving the cached list.
        for _ = 1, 3 do
            local text = dict:get(_M.data_key(sid, version))
            if text ~= nil then
                local nodes, err = _M.decode(text)
                if not nodes then
                    _M.bump(dict, "decode_failed")
                    if on_error then
                        on_error(sid, version, err)
                    end
                    return cached and cached.nodes
                end
                cache[sid] = { version = version, nodes = nodes }
                return nodes
            end
            local again = dict:get(_M.version_key(sid))
            if again == version or again == nil then
                break
            end
            version = again
        end
        return cached and cached.nodes
    end

    --- The version this worker last read for `sid`.
    function self.version(sid)
        local cached = cache[sid]
        return cached and cached.version
    end

    return self
end

-- -------------------------------------------------------------- feedback

-- A record is what one worker saw of one address during one flush
-- interval (disco.resty.feedback aggregates the calls):
--
--    address TAB ok_count TAB failed_count TAB latency_ms TAB ok_age_ms TAB failed_age_ms
--
-- counts are integers >= 0 (not both 0); latency_ms is the last call's
-- (empty when unknown); the ages are how long before the flush the last ok
-- and the last failed call happened (empty when that count is 0), so that
-- the owner keeps their order (validation/recent_call asks whether a call
-- failed after the last successful one).

local function age_field(count, age)
    if count > 0 and age then
        return age
    end
    return ""
end

--- Queues one record for the owner: `address` answered `ok_count` calls
-- and failed `failed_count`, the last one taking `latency_ms`; the last ok
-- (failed) call was `ok_age_ms` (`failed_age_ms`) ago. The list is capped
-- at `cap` records: beyond, the oldest is dropped and counted
-- (`feedback_dropped`). `lpush` never evicts other keys; a full dict
-- refuses the record (counted, `feedback_failed`).
-- @return true, or false when it was not queued
function _M.push_feedback(dict, address, ok_count, failed_count, latency_ms, ok_age_ms,
                          failed_age_ms, cap)
    local record = address .. "\t" .. ok_count .. "\t" .. failed_count .. "\t" .. (latency_ms or "")
        .. "\t" .. age_field(ok_count, ok_age_ms) .. "\t" .. age_field(failed_count, failed_age_ms)
    local len = dict:lpush(_M.FEEDBACK, record)
    if not len then
        _M.bump(dict, "feedback_failed")
        return false
    end
    if len > cap then
        dict:rpop(_M.FEEDBACK)
        _M.bump(dict, "feedback_dropped")
    end
    return true
end

-- A count field: a decimal integer >= 0, or nil.
local function parse_count(s)
    if not str_find(s, "^%d+$") then
        return nil
    end
    return tonumber(s)
end

-- An optional number >= 0: false when the field is empty, nil when bad.
local function parse_optional(s)
    if s == "" then
        return false
    end
    local v = tonumber(s)
    if not v or v < 0 or v ~= v or v == math.huge then
        return nil
    end
    return v
end

--- Parses one record (the format above).
-- @return address, ok_count, failed_count, latency_ms, ok_age_ms,
-- failed_age_ms (the last three nil when absent); or nil when the record
-- is malformed
function _M.parse_feedback(record)
    if type(record) ~= "string" then
        return nil
    end
    local fields, pos = {}, 1
    for i = 1, 5 do
        local tab = str_find(record, "\t", pos, true)
        if not tab then
            return nil
        end
        fields[i] = str_sub(record, pos, tab - 1)
        pos = tab + 1
    end
    local last = str_sub(record, pos)
    if str_find(last, "\t", 1, true) then
        return nil
    end
    local address = fields[1]
    local ok_count, failed_count = parse_count(fields[2]), parse_count(fields[3])
    local latency, ok_age, failed_age = parse_optional(fields[4]), parse_optional(fields[5]),
        parse_optional(last)
    if address == "" or not ok_count or not failed_count or ok_count + failed_count == 0
        or latency == nil or ok_age == nil or failed_age == nil then
        return nil
    end
    return address, ok_count, failed_count, latency or nil, ok_age or nil, failed_age or nil
end
local parse_feedback = _M.parse_feedback

--- Pops up to `max` records, oldest first, calling
-- `fn(address, ok_count, failed_count, latency_ms, ok_age_ms, failed_age_ms)`
-- for each well-formed one.
-- @return the records popped, the calls they count, the malformed records
-- (skipped)
function _M.drain_feedback(dict, max, fn)
    local n, calls, malformed = 0, 0, 0
    while n < max do
        local record = dict:rpop(_M.FEEDBACK)
        if record == nil then
            break
        end
        n = n + 1
        local address, ok_count, failed_count, latency, ok_age, failed_age = parse_feedback(record)
        if address then
            calls = calls + ok_count + failed_count
            fn(address, ok_count, failed_count, latency, ok_age, failed_age)
        else
            malformed = malformed + 1
        end
    end
    return n, calls, malformed
end

return _M
