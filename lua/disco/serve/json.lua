--- JSON text for the admin endpoints of `disco serve`.
--
-- lua-cjson cannot tell an empty array from an empty object and orders
-- keys by hash, so the admin answers are written here: objects with their
-- keys sorted (stable output, easy to diff and to test), arrays marked with
-- `json.array(t)` (an empty one is `[]`), strings escaped as RFC 8259
-- requires. Values: nil (absent from an object), booleans, finite numbers,
-- strings, tables.
-- @module disco.serve.json

local _M = {}

local array_mt = { __name = "disco.serve.json.array" }

--- Marks `t` (default a new table) as a JSON array and returns it.
function _M.array(t)
    return setmetatable(t or {}, array_mt)
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return ESCAPES[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
end
_M.quote = quote

local encode

local function number(n)
    if n ~= n or n == math.huge or n == -math.huge then
        return "null"
    end
    if n % 1 == 0 and n > -2 ^ 53 and n < 2 ^ 53 then
        return string.format("%d", n)
    end
    return string.format("%.17g", n)
end

local function is_sequence(t)
    local n = #t
    for k in pairs(t) do
        if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
            return false
        end
    end
    return n > 0
end

encode = function(v, out, depth)
    if depth > 64 then
        error("json: nested too deeply", 0)
    end
    local t = type(v)
    if v == nil then
        out[#out + 1] = "null"
    elseif t == "boolean" then
        out[#out + 1] = tostring(v)
    elseif t == "number" then
        out[#out + 1] = number(v)
    elseif t == "string" then
        out[#out + 1] = quote(v)
    elseif t == "table" then
        if getmetatable(v) == array_mt or is_sequence(v) then
            out[#out + 1] = "["
            for i = 1, #v do
                if i > 1 then
                    out[#out + 1] = ","
                end
                encode(v[i], out, depth + 1)
            end
            out[#out + 1] = "]"
        else
            local keys = {}
            for k in pairs(v) do
                keys[#keys + 1] = tostring(k)
            end
            table.sort(keys)
            out[#out + 1] = "{"
            for i, k in ipairs(keys) do
                if i > 1 then
                    out[#out + 1] = ","
                end
                out[#out + 1] = quote(k)
                out[#out + 1] = ":"
                local value = v[k]
                if value == nil then
                    value = v[tonumber(k)]
                end
                encode(value, out, depth + 1)
            end
            out[#out + 1] = "}"
        end
    else
        error("json: cannot encode a " .. t, 0)
    end
end

--- The JSON text of `v`; raises on functions, userdata and cycles deeper
-- than 64 levels.
function _M.encode(v)
    local out = {}
    encode(v, out, 0)
    return table.concat(out)
end

return _M
