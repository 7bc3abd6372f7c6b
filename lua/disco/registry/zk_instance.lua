--- The JSON of an instance node under `/services/{app}/{host}:{port}`.
--
-- Encoding writes exactly what Dubbo 3 (through Curator's
-- JsonInstanceSerializer, compatible mode) writes: compact JSON, fields in
-- the order name, id, address, port, sslPort, payload, registrationTimeUTC,
-- serviceType, uriSpec; the payload's first property is `@class`; metadata
-- keys sorted. Decoding accepts the variants found in the wild (Dubbo 3,
-- Dubbo 2.7 with a null payload id and unsorted metadata, dubbo-go without
-- sslPort/serviceType/uriSpec and with `tag`) and refuses anything else with
-- a reason, so that one bad node can be skipped while its siblings are kept.
-- See WIRE.md §1–§2.
-- @module disco.registry.zk_instance

local cjson = require "cjson.safe"

local _M = {}

--- The payload class Java casts the payload to.
_M.PAYLOAD_CLASS = "org.apache.dubbo.registry.zookeeper.ZookeeperInstance"

--- Instance nodes larger than this are refused unread: a real one is about
-- a kilobyte, and a consumer must not parse megabytes per instance.
_M.MAX_BYTES = 64 * 1024

local byte, format, concat, sort = string.byte, string.format, table.concat, table.sort

local SHORT_ESCAPES = {
    [0x22] = '\\"', [0x5c] = "\\\\", [0x08] = "\\b", [0x0c] = "\\f",
    [0x0a] = "\\n", [0x0d] = "\\r", [0x09] = "\\t",
}

-- A JSON string as Jackson writes it: `"`, `\` and control characters
-- escaped, everything else (UTF-8 included, and `/`) as is. cjson would
-- also escape `/`, which Java does not.
local function quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        local b = byte(c)
        return SHORT_ESCAPES[b] or (b < 0x20 and format("\\u%04x", b)) or c
    end) .. '"'
end
_M.quote = quote

local function integer(n)
    return format("%d", n)
end

--- Encodes `instance` (`name`, `host`, `port`, `metadata`,
-- `registration_time` in ms) as Dubbo 3 writes it.
-- @treturn string compact JSON
function _M.encode(instance)
    local id = instance.host .. ":" .. integer(instance.port)
    local keys = {}
    for k in pairs(instance.metadata or {}) do
        keys[#keys + 1] = k
    end
    sort(keys)
    local pairs_out = {}
    for i, k in ipairs(keys) do
        pairs_out[i] = quote(k) .. ":" .. quote(tostring(instance.metadata[k]))
    end
    return concat({
        '{"name":', quote(instance.name),
        ',"id":', quote(id),
        ',"address":', quote(instance.host),
        ',"port":', integer(instance.port),
        ',"sslPort":null',
        ',"payload":{"@class":', quote(_M.PAYLOAD_CLASS),
        ',"id":', quote(id),
        ',"name":', quote(instance.name),
        ',"metadata":{', concat(pairs_out, ","), "}}",
        ',"registrationTimeUTC":', integer(instance.registration_time or 0),
        ',"serviceType":"DYNAMIC","uriSpec":null}',
    })
end

--- Encodes `instance` for a register or an update: stamped with the time
-- now, as Dubbo stamps every registration (the caller's table is left
-- as it is).
-- @treturn string compact JSON
function _M.encode_registration(instance)
    local copy = {}
    for k, v in pairs(instance) do
        copy[k] = v
    end
    copy.registration_time = os.time() * 1000
    return _M.encode(copy)
end

local function is_null(v)
    return v == nil or v == cjson.null
end

--- Decodes the data of instance node `node_name` ("host:port").
-- @treturn table `{ name, host, port, metadata, registration_time, id,
-- flavor = "dubbo3" | "dubbo2" | "dubbo-go", tag }`, or nil and the reason
function _M.decode(data, node_name)
    if type(data) ~= "string" or data == "" then
        return nil, "empty node data"
    end
    if #data > _M.MAX_BYTES then
        return nil, format("node data is %d bytes, over the %d-byte limit", #data, _M.MAX_BYTES)
    end
    local doc, err = cjson.decode(data)
    if doc == nil then
        return nil, "not JSON: " .. tostring(err)
    end
    if type(doc) ~= "table" then
        return nil, "not a JSON object"
    end
    if type(doc.name) ~= "string" or doc.name == "" then
        return nil, "no application name ('name')"
    end
    if type(doc.address) ~= "string" or doc.address == "" then
        return nil, "no address"
    end
    local port = doc.port
    if type(port) ~= "number" or port % 1 ~= 0 or port < 1 or port > 65535 then
        return nil, "bad port " .. tostring(port)
    end
    local payload = doc.payload
    if type(payload) ~= "table" then
        return nil, "no payload object"
    end
    -- The decoded object itself becomes the instance's metadata (no copy:
    -- at 100,000 instances a second table each is megabytes of garbage).
    local metadata = payload.metadata
    if is_null(metadata) then
        metadata = {}
    elseif type(metadata) ~= "table" then
        return nil, "payload metadata is not an object"
    else
        for k, v in pairs(metadata) do
            local t = type(v)
            -- Jackson reads scalars into Map<String,String> as their text;
            -- a null is no entry. (Changing or clearing the field being
            -- visited is allowed during a traversal.)
            if type(k) ~= "string" then
                return nil, "metadata key " .. tostring(k) .. " is not a string"
            elseif t == "number" or t == "boolean" then
                metadata[k] = tostring(v)
            elseif is_null(v) then
                metadata[k] = nil
            elseif t ~= "string" then
                return nil, "metadata value of '" .. tostring(k) .. "' is not a string"
            end
        end
    end
    local registered = doc.registrationTimeUTC
    if is_null(registered) or type(registered) ~= "number" or registered <= 0 then
        registered = nil
    end
    local flavor = "dubbo3"
    if doc.serviceType == nil and doc.sslPort == nil and doc.uriSpec == nil then
        flavor = "dubbo-go"
    elseif is_null(payload.id) then
        flavor = "dubbo2"
    end
    return {
        name = doc.name,
        host = doc.address,
        port = port,
        metadata = metadata,
        registration_time = registered,
        id = node_name or (doc.address .. ":" .. integer(port)),
        flavor = flavor,
        tag = type(doc.tag) == "string" and doc.tag or nil,
    }
end

return _M
