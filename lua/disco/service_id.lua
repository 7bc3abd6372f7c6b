--- Dubbo service IDs: `protocol:interface[:version][:group]`, the unit a
-- consumer subscribes to, and the keys Dubbo derives from them:
-- the *matchKey* `[group/]interface[:version][:protocol]` that keys services
-- inside MetadataInfo, and the *serviceKey* `[group/]interface[:version]`.
-- An ID is a table `{ protocol=, interface=, version=, group= }`; empty parts
-- are nil. See DESIGN.md §1 and WIRE.md §4.
-- @module disco.service_id

local _M = {}

local function nonempty(s)
    if s == nil or s == "" or type(s) ~= "string" then
        return nil
    end
    return s
end

-- Splits `s` on `sep` (a single plain character), keeping empty parts.
local function split(s, sep)
    local parts, start = {}, 1
    while true do
        local i = s:find(sep, start, true)
        if not i then
            parts[#parts + 1] = s:sub(start)
            return parts
        end
        parts[#parts + 1] = s:sub(start, i - 1)
        start = i + 1
    end
end

--- Parses `protocol:interface[:version][:group]` (`dubbo:com.acme.Foo::g`
-- for a group without a version).
-- @tparam string s
-- @treturn table the ID, or nil and an error
function _M.parse(s)
    if type(s) ~= "string" then
        return nil, "service id: expected a string, got " .. type(s)
    end
    local parts = split(s, ":")
    if #parts < 2 or #parts > 4 then
        return nil, "service id: expected protocol:interface[:version][:group], got '" .. s .. "'"
    end
    local t = {
        protocol = nonempty(parts[1]), interface = nonempty(parts[2]),
        version = nonempty(parts[3]), group = nonempty(parts[4]),
    }
    if not t.protocol then
        return nil, "service id: missing the protocol in '" .. s .. "'"
    end
    if not t.interface then
        return nil, "service id: missing the interface in '" .. s .. "'"
    end
    return t
end

--- Formats an ID: `protocol:interface[:version][:group]`.
-- @tparam table t
-- @treturn string
function _M.format(t)
    local s = (t.protocol or "") .. ":" .. t.interface
    local version, group = nonempty(t.version), nonempty(t.group)
    if group then
        return s .. ":" .. (version or "") .. ":" .. group
    elseif version then
        return s .. ":" .. version
    end
    return s
end

--- Dubbo's serviceKey `[group/]interface[:version]` (`URL.buildKey`).
-- @tparam table t an ID, or a ServiceInfo-like table (`name` for the interface)
-- @treturn string
function _M.service_key(t)
    local s = t.interface or t.name
    local group, version = nonempty(t.group), nonempty(t.version)
    if group then
        s = group .. "/" .. s
    end
    if version then
        s = s .. ":" .. version
    end
    return s
end

--- Dubbo's matchKey `[group/]interface[:version][:protocol]`
-- (`ServiceInfo.getMatchKey`).
-- @tparam table t an ID, or a ServiceInfo-like table (`name` for the interface)
-- @treturn string
function _M.match_key(t)
    local s = _M.service_key(t)
    local protocol = nonempty(t.protocol)
    if protocol then
        s = s .. ":" .. protocol
    end
    return s
end

--- Parses a matchKey back into an ID. A matchKey is ambiguous when it has a
-- single `:` suffix; since MetadataInfo services always carry a protocol,
-- `iface:x` is read as protocol `x` (and `iface:v:p` as version and protocol).
-- @tparam string mk
-- @treturn table the ID, or nil and an error
function _M.from_match_key(mk)
    if type(mk) ~= "string" or mk == "" then
        return nil, "match key: expected a non-empty string"
    end
    local group, rest = mk:match("^([^/]*)/(.*)$")
    if not group then
        rest = mk
    end
    local parts = split(rest, ":")
    local t = { group = nonempty(group), interface = nonempty(parts[1]) }
    if #parts == 2 then
        t.protocol = nonempty(parts[2])
    elseif #parts == 3 then
        t.version, t.protocol = nonempty(parts[2]), nonempty(parts[3])
    elseif #parts > 3 then
        return nil, "match key: too many ':' in '" .. mk .. "'"
    end
    if not t.interface then
        return nil, "match key: missing the interface in '" .. mk .. "'"
    end
    return t
end

-- Whether the subscribed `want` (group or version) accepts `have`: nil and
-- "" are equal, `*` accepts anything, and a comma-separated list accepts any
-- of its members (as Dubbo's ProtocolServiceKey does for groups).
local function accepts(want, have)
    want, have = nonempty(want), nonempty(have)
    if want == have or want == "*" then
        return true
    end
    if want and want:find(",", 1, true) then
        for item in (want .. ","):gmatch("([^,]*),") do
            if nonempty(item) == have then
                return true
            end
        end
    end
    return false
end

--- Whether `service` (a ServiceInfo-like table: `name` or `interface`,
-- `group`, `version`, `protocol`) is what the subscribed ID `t` asks for.
-- Interfaces must be equal; protocols too when `t` names one (a service
-- without a protocol counts as `dubbo`); versions and groups are equal when
-- both are empty, and `t` may use `*` or a comma-separated list of groups.
-- @treturn boolean
function _M.matches(t, service)
    if (service.name or service.interface) ~= t.interface then
        return false
    end
    local protocol = nonempty(t.protocol)
    if protocol and protocol ~= (nonempty(service.protocol) or "dubbo") then
        return false
    end
    return accepts(t.version, service.version) and accepts(t.group, service.group)
end

return _M
