--- Java `.properties` text, read as `java.util.Properties.load` reads it.
--
-- Dubbo's static service-name mapping is such a file
-- (`service-name-mapping.properties`, keys like `dubbo\:com.acme.Foo`), so
-- disco reads the format exactly: natural lines end at `\n`, `\r` or
-- `\r\n`; leading spaces, tabs and form feeds are dropped; a line whose
-- first other character is `#` or `!` is a comment (and never continues);
-- a line ending in an odd number of backslashes continues on the next one,
-- whose leading whitespace is dropped; the key ends at the first unescaped
-- `=`, `:` or whitespace, and whitespace plus at most one `=` or `:` after
-- it separate it from the value; `\t \n \r \f` and `\uXXXX` are escapes and
-- any other escaped character stands for itself. The text is taken as UTF-8
-- (Dubbo reads the file through a UTF-8 reader); `\uXXXX` is written as
-- UTF-8, a surrogate pair as one character. A later duplicate key wins.
-- @module disco.properties

local read_file = require("disco.file_replace").read

local byte, char, find, sub = string.byte, string.char, string.find, string.sub

local _M = {}

local WHITESPACE = { [" "] = true, ["\t"] = true, ["\f"] = true }
local ESCAPES = { t = "\t", n = "\n", r = "\r", f = "\f" }

local function utf8(code)
    if code < 0x80 then
        return char(code)
    elseif code < 0x800 then
        return char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
    elseif code < 0x10000 then
        return char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40,
                    0x80 + code % 0x40)
    end
    return char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
                0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

-- Splits `text` into natural lines (without their terminators).
local function natural_lines(text)
    local lines, pos, n = {}, 1, #text
    while pos <= n do
        local at = find(text, "[\r\n]", pos)
        if not at then
            lines[#lines + 1] = sub(text, pos)
            break
        end
        lines[#lines + 1] = sub(text, pos, at - 1)
        if byte(text, at) == 13 and byte(text, at + 1) == 10 then
            at = at + 1
        end
        pos = at + 1
    end
    return lines
end

local function strip_leading(line)
    return (line:gsub("^[ \t\f]+", ""))
end

-- Whether `piece` ends in an odd number of backslashes (a continuation).
local function continues(piece)
    local run = #piece:match("\\*$")
    return run % 2 == 1
end

-- Resolves the escapes of a key or value; nil and a message on a
-- malformed \uXXXX.
local function unescape(s)
    if not find(s, "\\", 1, true) then
        return s
    end
    local out, pos, n = {}, 1, #s
    local high -- a pending UTF-16 high surrogate
    local function flush_high()
        if high then
            out[#out + 1] = utf8(high)
            high = nil
        end
    end
    while pos <= n do
        local at = find(s, "\\", pos, true)
        if not at then
            flush_high()
            out[#out + 1] = sub(s, pos)
            break
        end
        if at > pos then
            flush_high()
            out[#out + 1] = sub(s, pos, at - 1)
        end
        local c = sub(s, at + 1, at + 1)
        if c == "u" then
            local hex = sub(s, at + 2, at + 5)
            if not hex:match("^%x%x%x%x$") then
                return nil, "malformed \\uxxxx encoding at '" .. sub(s, at, at + 5) .. "'"
            end
            local code = tonumber(hex, 16)
            if code >= 0xDC00 and code <= 0xDFFF and high then
                out[#out + 1] = utf8(0x10000 + (high - 0xD800) * 0x400 + (code - 0xDC00))
                high = nil
            else
                flush_high()
                if code >= 0xD800 and code <= 0xDBFF then
                    high = code
                else
                    out[#out + 1] = utf8(code)
                end
            end
            pos = at + 6
        else
            -- A lone backslash at the very end cannot come from a logical
            -- line (it would have continued it); it stands for nothing.
            flush_high()
            out[#out + 1] = ESCAPES[c] or c
            pos = at + 2
        end
    end
    flush_high()
    return table.concat(out)
end

-- Splits a logical line into its raw key and raw value.
local function split(line)
    local n = #line
    local key_end, value_start, has_sep = n, n + 1, false
    local backslash = false
    for i = 1, n do
        local c = sub(line, i, i)
        if not backslash and (c == "=" or c == ":") then
            key_end, value_start, has_sep = i - 1, i + 1, true
            break
        elseif not backslash and WHITESPACE[c] then
            key_end, value_start = i - 1, i + 1
            break
        end
        if c == "\\" then
            backslash = not backslash
        else
            backslash = false
        end
    end
    while value_start <= n do
        local c = sub(line, value_start, value_start)
        if not WHITESPACE[c] then
            if not has_sep and (c == "=" or c == ":") then
                has_sep = true
            else
                break
            end
        end
        value_start = value_start + 1
    end
    return sub(line, 1, key_end), sub(line, value_start)
end

--- Parses properties text.
-- @tparam string text
-- @treturn table key -> value (strings), or nil, `"EINVAL: line N: ..."`,
-- `"EINVAL"` when an escape is malformed
function _M.parse(text)
    if type(text) ~= "string" then
        error("properties text must be a string, got " .. type(text), 2)
    end
    local props = {}
    local lines = natural_lines(text)
    local i, count = 1, #lines
    while i <= count do
        local first = i
        local piece = strip_leading(lines[i])
        i = i + 1
        local c = sub(piece, 1, 1)
        if piece ~= "" and c ~= "#" and c ~= "!" then
            local parts = {}
            while continues(piece) do
                parts[#parts + 1] = sub(piece, 1, -2)
                if i > count then
                    piece = ""
                    break
                end
                piece = strip_leading(lines[i])
                i = i + 1
            end
            parts[#parts + 1] = piece
            local raw_key, raw_value = split(table.concat(parts))
            local key, kerr = unescape(raw_key)
            local value, verr = unescape(raw_value)
            if not key or not value then
                local msg = string.format("EINVAL: line %d: %s", first, kerr or verr)
                return nil, msg, "EINVAL"
            end
            props[key] = value
        end
    end
    return props
end

--- Reads and parses the properties file at `path`.
-- @treturn table key -> value, or nil, `"ENAME: message"`, `"ENAME"`
-- (`ENOENT` and the like when it cannot be read, `EINVAL` when malformed;
-- the message names the file)
function _M.load_file(path)
    if type(path) ~= "string" then
        error("properties file path must be a string, got " .. type(path), 2)
    end
    local text, err, ename = read_file(path)
    if not text then
        return nil, err, ename
    end
    local props, perr, pename = _M.parse(text)
    if not props then
        return nil, (perr:gsub("^EINVAL: ", "EINVAL: " .. path .. ": ")), pename
    end
    return props
end

return _M
