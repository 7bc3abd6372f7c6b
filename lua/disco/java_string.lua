--- Java string semantics that Dubbo's wire formats depend on, for UTF-8
-- Lua strings: `String.compareTo` order, `TreeMap.toString()`, and JSON
-- string quoting as Jackson writes it.
--
-- Java compares strings by UTF-16 code units. UTF-8 byte order is code point
-- order, which agrees with UTF-16 order except in one case: a character from
-- U+E000 to U+FFFF sorts *after* a supplementary character (U+10000 and up)
-- in Java, because the latter starts with a surrogate (U+D800–U+DBFF), while
-- its UTF-8 bytes sort before. See WIRE.md §4.
-- @module disco.java_string

local byte, find, sort, concat = string.byte, string.find, table.sort, table.concat

local _M = {}

-- Decodes the UTF-8 character starting at byte `i` of `s`.
-- @treturn integer the code point, or the byte itself when malformed
local function code_point(s, i)
    local b1 = byte(s, i)
    if b1 == nil then
        return -1
    end
    if b1 < 0xC0 then
        return b1
    end
    local b2, b3, b4 = byte(s, i + 1, i + 3)
    b2, b3, b4 = (b2 or 0x80) - 0x80, (b3 or 0x80) - 0x80, (b4 or 0x80) - 0x80
    if b1 < 0xE0 then
        return (b1 - 0xC0) * 0x40 + b2
    elseif b1 < 0xF0 then
        return ((b1 - 0xE0) * 0x40 + b2) * 0x40 + b3
    end
    return (((b1 - 0xF0) * 0x40 + b2) * 0x40 + b3) * 0x40 + b4
end

--- Whether `a` sorts before `b` by Java's `String.compareTo` (both UTF-8).
-- @tparam string a
-- @tparam string b
-- @treturn boolean
function _M.less(a, b)
    -- Byte order is UTF-16 order unless one side has a character from
    -- U+E000 to U+FFFF (lead byte 0xEE or 0xEF) and the other a
    -- supplementary one (lead byte 0xF0 to 0xF4): the common case is fast.
    if not ((find(a, "[\238\239]") and find(b, "[\240-\244]"))
            or (find(b, "[\238\239]") and find(a, "[\240-\244]"))) then
        return a < b
    end
    if a == b then
        return false
    end
    -- Find the first differing byte, then back up to its character start
    -- (the common prefix is the same in both strings).
    local i, n = 1, #a
    while i <= n and byte(a, i) == byte(b, i) do
        i = i + 1
    end
    if i > n then
        return true -- a is a proper prefix of b
    end
    if i > #b then
        return false
    end
    while i > 1 do
        local c = byte(a, i)
        if c < 0x80 or c >= 0xC0 then
            break
        end
        i = i - 1
    end
    local ca, cb = code_point(a, i), code_point(b, i)
    local sa, sb = ca >= 0x10000, cb >= 0x10000
    if sa == sb then
        return ca < cb
    end
    -- One supplementary (a surrogate in UTF-16, 0xD800..0xDBFF) against one
    -- BMP character: compare the surrogate with the BMP code unit.
    if sa then
        return 0xD800 < cb
    end
    return ca < 0xD800
end

local less = _M.less

--- The keys of `map`, sorted by Java `String.compareTo`.
-- @tparam table map string keys
-- @treturn table list of keys
function _M.sorted_keys(map)
    local keys = {}
    for k in pairs(map) do
        keys[#keys + 1] = k
    end
    sort(keys, less)
    return keys
end

--- `new TreeMap<String,String>(map).toString()`: `{k1=v1, k2=v2}`, `{}`
-- when empty; a nil value (JSON null) prints `null`.
-- @tparam table map
-- @treturn string
function _M.tree_map_string(map)
    local keys = _M.sorted_keys(map)
    local parts = {}
    for i, k in ipairs(keys) do
        local v = map[k]
        if type(v) ~= "string" then
            v = (v == nil or type(v) == "userdata") and "null" or tostring(v)
        end
        parts[i] = k .. "=" .. v
    end
    return "{" .. concat(parts, ", ") .. "}"
end

local SHORT_ESCAPES = {
    [0x22] = '\\"', [0x5c] = "\\\\", [0x08] = "\\b", [0x0c] = "\\f",
    [0x0a] = "\\n", [0x0d] = "\\r", [0x09] = "\\t",
}

--- A JSON string as Jackson writes it: `"`, `\` and control characters
-- escaped, everything else (UTF-8 and `/` included) as is.
-- @tparam string s
-- @treturn string
function _M.json_quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        local b = byte(c)
        return SHORT_ESCAPES[b] or (b < 0x20 and string.format("\\u%04x", b)) or c
    end) .. '"'
end

return _M
