--- registry/etcd's connection to etcd's JSON gateway: unary calls
-- (`/v3/kv/range`, `/v3/kv/txn`, ...) and streamed ones (`/v3/watch`), on
-- HTTP clients taken from ctx (so the host closes them with the instance).
--
-- With several endpoints (`etcd://h1:p1,h2:p2/...`) one is used at a time;
-- a transport error (refused, reset, timed out) moves the next request to
-- the next endpoint. etcd's members serve the same store, so any of them
-- answers any request.
local codec = require "disco.registry.etcd_codec"

local _M = {}

-- Unary calls are small and etcd answers them in milliseconds: 10 s
-- without a byte on a connection means the member is in trouble. (No
-- deadline per request: under a burst, say 1,000 registrations at once,
-- requests queue for the connections, and the wait is no failure.)
local READ_TIMEOUT_MS = 10000
local CONNECT_TIMEOUT_MS = 3000
-- A gateway answer is a few kilobytes per key; ranges of thousands of
-- instances stay well under this.
local MAX_BODY_BYTES = 64 * 1024 * 1024
-- Each watch holds one streamed connection for its lifetime.
local MAX_STREAMS = 1024

local JSON = { ["Content-Type"] = "application/json" }

local Gateway = {}
Gateway.__index = Gateway

local function split_host(hostport)
    local host, port = hostport:match("^%[([%x:]+)%]:(%d+)$")
    if not host then
        host, port = hostport:match("^(.+):(%d+)$")
    end
    return host, tonumber(port)
end

--- `hosts`: list of "host:port" (IP literals).
function _M.new(ctx, hosts, name)
    local endpoints = {}
    for i, hp in ipairs(hosts) do
        local host, port = split_host(hp)
        endpoints[i] = { host = host, port = port, hostport = hp }
    end
    return setmetatable({ ctx = ctx, endpoints = endpoints, current = 1, name = name or "etcd",
                          closed = false, state = "connecting", connects = 0, disconnects = 0 },
                        Gateway)
end

-- The connection state the registry reports (`disco serve`'s readiness
-- and metrics): "connected" once etcd answered a call, "connecting" after
-- a transport error until it answers again. (The heartbeat makes a call
-- every third of the TTL, so the state follows etcd even when idle.)
-- Back after a transport error, `on_reconnect` (if set) runs: the watch
-- streams are then re-opened from their revisions, since a stream that
-- went silent through the outage (a black-holed connection) would never
-- notice by itself (it has no read timeout).
function Gateway:_answered()
    if self.state ~= "connected" then
        local back = self.connects > 0
        self.state = "connected"
        self.connects = self.connects + 1
        if back and self.on_reconnect then
            self.on_reconnect()
        end
    end
end

-- The client of the current endpoint for `kind`, opened on first use:
-- "unary" (calls), "stream" (watches) or "lease" (the heartbeat, on a
-- connection of its own so that it never waits behind a burst of calls:
-- a keepalive queued past the TTL would lose the lease).
function Gateway:_client(kind)
    local ep = self.endpoints[self.current]
    local client = ep[kind]
    if client then
        return client, ep
    end
    local err
    client, err = self.ctx:http_client({
        host = ep.host, port = ep.port,
        name = self.name .. " " .. ep.hostport .. (kind ~= "unary" and (" (" .. kind .. ")") or ""),
        connect_timeout = CONNECT_TIMEOUT_MS,
        -- A watch may be silent for as long as nothing changes.
        read_timeout = kind == "stream" and 0 or READ_TIMEOUT_MS,
        max_connections = (kind == "stream" and MAX_STREAMS) or (kind == "lease" and 1) or 8,
        max_body_bytes = MAX_BODY_BYTES,
    })
    if not client then
        return nil, ep, err
    end
    ep[kind] = client
    return client, ep
end

-- A transport error on `ep`: later requests go to the next endpoint.
function Gateway:_failed(ep, err)
    if self.state == "connected" then
        self.state = "connecting"
        self.disconnects = self.disconnects + 1
    end
    if self.endpoints[self.current] == ep and #self.endpoints > 1 then
        self.current = self.current % #self.endpoints + 1
        self.ctx.log:warn("%s: %s; switching to %s", ep.hostport, tostring(err),
                          self.endpoints[self.current].hostport)
    end
end

local function transport_error(err)
    return not err:match("^EETCD") and not err:match("^EPROTO") and not err:match("^EMSGSIZE")
end

-- Nothing reached etcd: the request may go to another endpoint as is.
local function not_sent(err)
    return err:match("^ECONNREFUSED") ~= nil or err:match("^ETIMEDOUT: connect") ~= nil
end

--- POSTs `body` to `path`; cb(err, doc) with the decoded answer, on a
-- later loop turn. A request that could not connect is tried on each
-- other endpoint once. Nothing is called once the gateway is closed.
-- `kind`: the client to use, "unary" by default (see _client).
function Gateway:call(path, body, cb, kind, tried)
    local function answer(err, doc)
        if not self.closed then
            cb(err, doc)
        end
    end
    if self.closed then
        return -- the instance is going: its clients are (being) closed
    end
    tried = tried or 1
    kind = kind or "unary"
    local client, ep, cerr = self:_client(kind)
    if not client then
        return self.ctx:after(0, function() answer(cerr or "EINVAL: no HTTP client") end)
    end
    local req, rerr = client:request({ method = "POST", path = path, headers = JSON, body = body },
                                     function(err, res)
        if err then
            if transport_error(err) then
                self:_failed(ep, err)
                if not_sent(err) and tried < #self.endpoints and not self.closed then
                    return self:call(path, body, cb, kind, tried + 1)
                end
            end
            return answer(err)
        end
        self:_answered()
        local doc, derr = codec.decode(res.body)
        if not doc then
            return answer(derr)
        end
        if res.status ~= 200 then
            return answer("EETCD: HTTP " .. tostring(res.status) .. " from " .. path)
        end
        answer(nil, doc)
    end)
    if not req then
        self.ctx:after(0, function() answer(rerr) end)
    end
end

--- POSTs `body` to the streamed `path`: `on_line(err, doc)` for each JSON
-- line, then `on_end(err)` once when the stream ends (err nil for a clean
-- end). Returns a handle with `cancel()` (no callback afterwards).
function Gateway:stream(path, body, on_line, on_end)
    local handle = { cancelled = false }
    local function ended(err)
        if not handle.cancelled and not self.closed then
            handle.cancelled = true
            on_end(err)
        end
    end
    if self.closed then
        function handle.cancel() handle.cancelled = true end
        return handle
    end
    local client, ep, cerr = self:_client("stream")
    if not client then
        self.ctx:after(0, function() ended(cerr or "EINVAL: no HTTP client") end)
        function handle.cancel() handle.cancelled = true end
        return handle
    end
    local status
    local req, rerr = client:request({
        method = "POST", path = path, headers = JSON, body = body,
        on_headers = function(st) status = st end,
        split = "\n",
        on_data = function(line)
            if handle.cancelled or self.closed or line == "" then
                return
            end
            -- (Streams leave the connection state to the unary calls: a
            -- stream answering must not re-open the streams from inside
            -- its own delivery.)
            if status ~= 200 then
                return on_line("EETCD: HTTP " .. tostring(status) .. " from " .. path .. ": " .. line:sub(1, 200))
            end
            local doc, derr = codec.decode(line)
            on_line(derr, doc)
        end,
    }, function(err)
        if err and transport_error(err) then
            self:_failed(ep, err)
        end
        ended(err)
    end)
    if not req then
        self.ctx:after(0, function() ended(rerr) end)
    end
    function handle.cancel()
        if not handle.cancelled then
            handle.cancelled = true
            if req then
                req:cancel()
            end
        end
    end
    return handle
end

--- Stops every callback; the clients themselves are the host's (ctx).
function Gateway:close()
    self.closed = true
end

return _M
