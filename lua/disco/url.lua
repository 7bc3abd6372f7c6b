--- Dubbo URLs: `protocol://user:pass@host:port/path?k=v&...`.
--
-- A URL is a table `{ protocol=, username=, password=, host=, port=, path=,
-- params = {k=v}, keys = {k1, k2, ...} }` with methods (`get`, `set`,
-- `remove`, `copy`, `to_string`). `keys` keeps the order of the
-- parameters, so `url.format(url.parse(s)) == s` for every `s` written the
-- way `format` writes it. The path is stored without its leading `/`, as
-- Dubbo does (`dubbo://h:20880/com.acme.Foo` has path `com.acme.Foo`); a nil
-- path means there was no `/` at all, an empty one a bare trailing `/`.
--
-- Encoding. Dubbo itself writes parameters raw (`URL.toString`) and, for
-- registry paths, encodes whole URLs with `URLEncoder` (form encoding). disco
-- writes a parameter key or value with `%XX` (uppercase hex, UTF-8 bytes) for
-- every byte outside `A-Z a-z 0-9 - . _ ~ ! $ ' ( ) * , ; : / @`, so `,` (as
-- in `methods=a,b`) and `:`/`/` stay readable while `& = + % # ? space` and
-- non-ASCII bytes are escaped. Reading decodes `%XX` and, in parameters
-- only, `+` as a space (what `URLDecoder` does); a `%` not followed by two hex
-- digits is kept as is, since Dubbo's raw `toString` can produce one.
-- User name and password are escaped the same way, plus `:` `@` `/`; the
-- path is kept exactly as given.
-- @module disco.url

local byte, char, format, concat, sort = string.byte, string.char, string.format, table.concat, table.sort

local _M = {}

local methods = {}
local mt = { __index = methods }

local function hex_byte(c)
    return format("%%%02X", byte(c))
end

local UNSAFE_PARAM = "[^%w%-%._~!$'()*,;:/@]"

local function encode_param(s)
    -- Most values need no escape: a search, without gsub's copy.
    if not s:find(UNSAFE_PARAM) then
        return s
    end
    return (s:gsub(UNSAFE_PARAM, hex_byte))
end

local function encode_userinfo(s)
    return (s:gsub("[^%w%-%._~!$'()*,;]", hex_byte))
end

local function hex_char(h)
    return char(tonumber(h, 16))
end

local function decode(s)
    if not s:find("%", 1, true) then
        return s
    end
    return (s:gsub("%%(%x%x)", hex_char))
end

local function decode_param(s)
    if s:find("+", 1, true) then
        s = s:gsub("%+", " ")
    end
    return decode(s)
end

--- Encodes a parameter key or value the way `format` does.
_M.encode = encode_param
--- Decodes a parameter key or value (`%XX`, and `+` as a space).
_M.decode = decode_param

local function fail(what, s)
    return nil, "url: " .. what .. " in '" .. s .. "'"
end

local function parse_query(u, query, s)
    local params, keys = u.params, u.keys
    for part in query:gmatch("[^&]+") do
        local eq = part:find("=", 1, true)
        local key, value
        if eq then
            key, value = decode_param(part:sub(1, eq - 1)), decode_param(part:sub(eq + 1))
        else
            -- Dubbo's URL.valueOf reads a bare `k` as `k=k`.
            key = decode_param(part)
            value = key
        end
        if key == "" then
            return fail("empty parameter name", s)
        end
        if params[key] == nil then
            keys[#keys + 1] = key
        end
        params[key] = value
    end
    return u
end

local function parse_host_port(u, hostport, s)
    local host, port
    if hostport:sub(1, 1) == "[" then
        local rest
        host, rest = hostport:match("^%[([^%]]*)%](.*)$")
        if not host or host == "" then
            return fail("bad IPv6 host", s)
        end
        if rest ~= "" then
            port = rest:match("^:(%d+)$")
            if not port then
                return fail("bad port after IPv6 host", s)
            end
        end
    else
        local colon = hostport:find(":", 1, true)
        if colon then
            host, port = hostport:sub(1, colon - 1), hostport:sub(colon + 1)
            if port:find(":", 1, true) then
                return fail("more than one ':' in the host (an IPv6 host must be in brackets)", s)
            end
            if not port:match("^%d+$") then
                return fail("bad port '" .. port .. "'", s)
            end
        else
            host = hostport
        end
    end
    if port then
        port = tonumber(port)
        if port > 65535 then
            return fail("port " .. port .. " out of range", s)
        end
    end
    u.host = host ~= "" and host or nil
    u.port = port
    return u
end

--- Parses a Dubbo URL.
-- @tparam string s
-- @treturn table the URL, or nil and an error naming the problem
function _M.parse(s)
    if type(s) ~= "string" then
        return nil, "url: expected a string, got " .. type(s)
    end
    local protocol, rest = s:match("^([^:/?@]*)://(.*)$")
    if not protocol then
        return fail("missing '://'", s)
    end
    if not protocol:match("^%a[%w+.%-_]*$") then
        return fail("bad protocol '" .. protocol .. "'", s)
    end
    local u = setmetatable({ protocol = protocol, params = {}, keys = {} }, mt)
    local q = rest:find("?", 1, true)
    local query
    if q then
        rest, query = rest:sub(1, q - 1), rest:sub(q + 1)
    end
    local slash = rest:find("/", 1, true)
    local authority = rest
    if slash then
        authority, u.path = rest:sub(1, slash - 1), rest:sub(slash + 1)
    end
    local at = authority:match("^.*()@")
    if at then
        local userinfo = authority:sub(1, at - 1)
        authority = authority:sub(at + 1)
        local colon = userinfo:find(":", 1, true)
        if colon then
            u.username = decode(userinfo:sub(1, colon - 1))
            u.password = decode(userinfo:sub(colon + 1))
        else
            u.username = decode(userinfo)
        end
    end
    local ok, err = parse_host_port(u, authority, s)
    if not ok then
        return nil, err
    end
    if query then
        ok, err = parse_query(u, query, s)
        if not ok then
            return nil, err
        end
    end
    return u
end

--- Builds a URL. `params` (a map) is added in sorted key order.
-- @tparam table t `{ protocol=, host=, port=, path=, params=, username=, password= }`
-- @treturn table the URL (raises on a wrong type: a programmer error)
function _M.new(t)
    if type(t) ~= "table" then
        error("url.new: expected a table, got " .. type(t), 2)
    end
    if type(t.protocol) ~= "string" or not t.protocol:match("^%a[%w+.%-_]*$") then
        error("url.new: protocol must be a name like 'dubbo', got " .. tostring(t.protocol), 2)
    end
    if t.host ~= nil and type(t.host) ~= "string" then
        error("url.new: host must be a string", 2)
    end
    if t.port ~= nil and (type(t.port) ~= "number" or t.port % 1 ~= 0 or t.port < 0 or t.port > 65535) then
        error("url.new: port must be an integer from 0 to 65535, got " .. tostring(t.port), 2)
    end
    if t.path ~= nil and type(t.path) ~= "string" then
        error("url.new: path must be a string", 2)
    end
    local path = t.path
    if path and path:sub(1, 1) == "/" then
        path = path:sub(2)
    end
    local u = setmetatable({
        protocol = t.protocol, host = t.host ~= "" and t.host or nil, port = t.port, path = path,
        username = t.username, password = t.password, params = {}, keys = {},
    }, mt)
    if t.params ~= nil then
        if type(t.params) ~= "table" then
            error("url.new: params must be a table", 2)
        end
        local keys = {}
        for k in pairs(t.params) do
            keys[#keys + 1] = k
        end
        sort(keys)
        for _, k in ipairs(keys) do
            u:set(k, t.params[k])
        end
    end
    return u
end

--- Formats a URL (the inverse of `parse`).
-- @tparam table u
-- @treturn string
function _M.format(u)
    local out = { u.protocol, "://" }
    if u.username then
        out[#out + 1] = encode_userinfo(u.username)
        if u.password then
            out[#out + 1] = ":" .. encode_userinfo(u.password)
        end
        out[#out + 1] = "@"
    end
    local host = u.host or ""
    if host:find(":", 1, true) then
        host = "[" .. host .. "]"
    end
    out[#out + 1] = host
    if u.port then
        out[#out + 1] = format(":%d", u.port)
    end
    if u.path then
        out[#out + 1] = "/" .. u.path
    end
    local keys, params = u.keys, u.params
    if #keys > 0 then
        local q = {}
        for i, k in ipairs(keys) do
            q[i] = encode_param(k) .. "=" .. encode_param(params[k])
        end
        out[#out + 1] = "?" .. concat(q, "&")
    end
    return concat(out)
end

--- The value of parameter `k`, or nil.
function methods:get(k)
    return self.params[k]
end

--- Sets parameter `k` to `v` (a string, or a number or boolean converted
-- with tostring): replaced in place if present, else appended. `v == nil`
-- removes it.
-- @treturn table the URL itself
function methods:set(k, v)
    if type(k) ~= "string" or k == "" then
        error("url: parameter name must be a non-empty string", 2)
    end
    if v == nil then
        return self:remove(k)
    end
    if type(v) ~= "string" then
        v = tostring(v)
    end
    if self.params[k] == nil then
        self.keys[#self.keys + 1] = k
    end
    self.params[k] = v
    return self
end

--- Removes parameter `k`.
-- @treturn table the URL itself
function methods:remove(k)
    if self.params[k] ~= nil then
        self.params[k] = nil
        local keys = self.keys
        for i = 1, #keys do
            if keys[i] == k then
                table.remove(keys, i)
                break
            end
        end
    end
    return self
end

--- A copy that can be changed without touching this URL.
function methods:copy()
    local params, keys = {}, {}
    for i, k in ipairs(self.keys) do
        keys[i] = k
        params[k] = self.params[k]
    end
    return setmetatable({
        protocol = self.protocol, username = self.username, password = self.password,
        host = self.host, port = self.port, path = self.path, params = params, keys = keys,
    }, mt)
end

--- `host:port` (IPv6 in brackets), or the host alone without a port.
function methods:address()
    local host = self.host or ""
    if host:find(":", 1, true) then
        host = "[" .. host .. "]"
    end
    if self.port then
        return host .. ":" .. self.port
    end
    return host
end

methods.to_string = _M.format
mt.__tostring = _M.format

--- Whether `v` is a URL made by this module.
function _M.is_url(v)
    return getmetatable(v) == mt
end

return _M
