--- Registry URLs.
--
--   zookeeper://h1:2181,h2:2181/chroot?session_timeout=30000&auth=digest:user:pass&root=/services
--   memory://name
--   etcd://127.0.0.1:2379,127.0.0.1:22379/prefix?ttl=10
--
-- @module disco.registry.url

local _M = {}

local function unescape(s)
    return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

local function parse_query(query)
    local params = {}
    for pair in query:gmatch("[^&]+") do
        local key, value = pair:match("^([^=]*)=(.*)$")
        if not key then
            key, value = pair, ""
        end
        if key == "" then
            return nil, "empty parameter name in '" .. query .. "'"
        end
        params[unescape(key)] = unescape(value)
    end
    return params
end

local function parse_hosts(list)
    local hosts = {}
    for host in list:gmatch("[^,]+") do
        local name, port = host:match("^%[([%x:]+)%]:(%d+)$")
        if not name then
            name, port = host:match("^([%w%.%-_]+):(%d+)$")
        end
        port = tonumber(port)
        if not name or port < 1 or port > 65535 then
            return nil, "bad host '" .. host .. "' (expected host:port)"
        end
        hosts[#hosts + 1] = host
    end
    if #hosts == 0 then
        return nil, "no host given"
    end
    return hosts
end

--- Parses a registry URL.
-- @treturn table `{ scheme=, hosts={"h:p",...}, chroot=, name=, params={} }`
-- (`hosts` and `chroot` for zookeeper, `name` for memory; for etcd
-- `hosts` and `prefix`, also given as `chroot` so that the runtime hands
-- it to the plugin), or nil and an error naming what is wrong
function _M.parse(url)
    if type(url) ~= "string" then
        return nil, "registry URL must be a string, got " .. type(url)
    end
    local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
    if not scheme then
        return nil, "bad registry URL '" .. url .. "' (expected scheme://...)"
    end
    scheme = scheme:lower()
    local body, query = rest:match("^([^?]*)%??(.*)$")
    local params, perr = parse_query(query)
    if not params then
        return nil, "bad registry URL '" .. url .. "': " .. perr
    end
    if scheme == "memory" then
        if not body:match("^[%w_%-%.]+$") then
            return nil, "bad registry URL '" .. url .. "': memory://NAME with a plain name"
        end
        return { scheme = scheme, name = body, params = params }
    elseif scheme == "zookeeper" then
        local host_list, chroot = body:match("^([^/]*)(/?.*)$")
        local hosts, herr = parse_hosts(host_list)
        if not hosts then
            return nil, "bad registry URL '" .. url .. "': " .. herr
        end
        if chroot == "/" then
            chroot = ""
        end
        if chroot ~= "" and (chroot:match("//") or chroot:match("/$")) then
            return nil, "bad registry URL '" .. url .. "': bad chroot '" .. chroot .. "'"
        end
        return { scheme = scheme, hosts = hosts, chroot = chroot, params = params }
    elseif scheme == "etcd" then
        local host_list, prefix = body:match("^([^/]*)(/?.*)$")
        local hosts, herr = parse_hosts(host_list)
        if not hosts then
            return nil, "bad registry URL '" .. url .. "': " .. herr
        end
        if prefix == "/" then
            prefix = ""
        end
        if prefix ~= "" and (prefix:match("//") or prefix:match("/$")) then
            return nil, "bad registry URL '" .. url .. "': bad prefix '" .. prefix .. "'"
        end
        return { scheme = scheme, hosts = hosts, prefix = prefix, chroot = prefix, params = params }
    end
    return nil, "unknown registry scheme '" .. scheme .. "' in '" .. url
        .. "' (zookeeper://, etcd:// or memory://)"
end

return _M
