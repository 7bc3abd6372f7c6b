--- The dubbo clients a consumer uses to call MetadataServices: one
-- connection per address, made on first use and kept for the next calls.
-- @module disco.metadata.client_pool

local _M = {}
local pool = {}
pool.__index = pool

--- `opts.timeout` (ms per call, default 5000), `opts.heartbeat` (ms).
function _M.new(loop, opts)
    opts = opts or {}
    return setmetatable({ loop = loop, clients = {}, timeout = opts.timeout or 5000,
                          heartbeat = opts.heartbeat }, pool)
end

--- The client of host:port, or nil and an error.
function pool:get(host, port)
    local address = host .. ":" .. port
    local client = self.clients[address]
    if client and not client:is_closed() then
        return client
    end
    local err
    client, err = self.loop:dubbo_client({ host = host, port = port, timeout = self.timeout,
                                           heartbeat = self.heartbeat })
    if not client then
        return nil, err
    end
    self.clients[address] = client
    return client
end

--- Closes the client of host:port (its instances are gone).
function pool:drop(host, port)
    local address = host .. ":" .. port
    local client = self.clients[address]
    if client then
        self.clients[address] = nil
        client:close()
    end
end

--- Closes every client; idempotent.
function pool:close()
    for address, client in pairs(self.clients) do
        self.clients[address] = nil
        client:close()
    end
end

return _M
