--- The lease of registry/etcd: its "session". Every registration of this
-- plugin is a key bound to one lease, kept alive by a heartbeat at a third
-- of its TTL; when the process dies the heartbeat stops and etcd deletes
-- the keys once the TTL runs out.
--
-- If the lease is lost anyway (etcd said it is gone: expired while this
-- process was paused or cut off), a new one is granted and every
-- registration is written again, but only where its key is missing: an
-- address re-registered meanwhile by another process is left to it.
--
-- The state (`lease.state`: the lease ID and the registrations) is plain
-- data, handed to the next version of the plugin on a reload.
local codec = require "disco.registry.etcd_codec"

local _M = {}

local Lease = {}
Lease.__index = Lease

--- `ttl_s`: the lease's TTL in seconds.
function _M.new(ctx, gw, ttl_s)
    return setmetatable({
        ctx = ctx, gw = gw,
        state = { id = nil, ttl = ttl_s, regs = {} },
        waiting = nil, -- callbacks waiting for a grant in flight
        counters = { grants = 0, keepalives = 0, losses = 0 },
    }, Lease)
end

--- Takes over the state of the previous version (reload).
function Lease:adopt(state, counters)
    self.state = state
    self.counters = counters or self.counters
end

--- cb(err, id) with a live lease, granted on first use.
function Lease:ensure(cb)
    local state = self.state
    if state.id then
        return self.ctx:after(0, function() cb(nil, state.id) end)
    end
    if self.waiting then
        self.waiting[#self.waiting + 1] = cb
        return
    end
    self.waiting = { cb }
    self.gw:call("/v3/lease/grant", codec.encode({ TTL = tostring(state.ttl) }), function(err, doc)
        local waiting = self.waiting
        self.waiting = nil
        if not err and (type(doc.ID) ~= "string" or doc.ID == "0") then
            err = "EPROTO: lease grant answered without an ID"
        end
        if not err then
            state.id = doc.ID
            self.counters.grants = self.counters.grants + 1
            self.ctx.log:info("lease %s granted (TTL %s s)", doc.ID, tostring(doc.TTL))
        end
        for _, w in ipairs(waiting) do
            w(err, state.id)
        end
    end)
end

--- Starts the heartbeat: a keepalive of the lease while there is one,
-- else a status request, so that the gateway's connection state stays
-- current for a plugin that only watches.
function Lease:start()
    if self.timer then
        return
    end
    local every = math.max(100, math.floor(self.state.ttl * 1000 / 3))
    self.timer = self.ctx:every(every, function() self:_keepalive() end)
end

function Lease:_keepalive()
    local state = self.state
    local id = state.id
    if self.beating then
        return
    end
    self.beating = true
    if not id then
        return self.gw:call("/v3/maintenance/status", "{}", function()
            self.beating = false
        end, "lease")
    end
    self.gw:call("/v3/lease/keepalive", codec.encode({ ID = id }), function(err, doc)
        self.beating = false
        if err then
            -- etcd unreachable: the lease may well survive; try again at
            -- the next beat.
            return self.ctx.log:warn("lease %s keepalive failed: %s", id, err)
        end
        local r = type(doc.result) == "table" and doc.result or doc
        if codec.revision(r.TTL) > 0 then
            self.counters.keepalives = self.counters.keepalives + 1
            return
        end
        self:lost(id)
    end, "lease")
end

--- etcd says lease `id` is gone, and its keys with it: a new lease, and
-- the registrations written again where nobody else wrote since. Nothing
-- when `id` is not the current lease any more (already replaced).
function Lease:lost(id)
    local state = self.state
    if state.id ~= id then
        return
    end
    self.counters.losses = self.counters.losses + 1
    self.ctx.log:warn("lease %s lost; registering again under a new lease", id)
    state.id = nil
    self:ensure(function(err, new_id)
        if err then
            return self.ctx.log:warn("no new lease yet: %s", err)
        end
        for key, value in pairs(state.regs) do
            local body = codec.txn_request({ codec.compare(key, "CREATE", 0) },
                                           { { put = { key, value, new_id } } })
            self.gw:call("/v3/kv/txn", body, function(terr, doc)
                if terr then
                    return self.ctx.log:warn("re-registering %s failed: %s", key, terr)
                end
                if not doc.succeeded then
                    state.regs[key] = nil
                    self.ctx.log:warn("registration %s lost: the address was registered again by another "
                                      .. "process; left to it", key)
                else
                    self.ctx.log:info("registration %s written again under lease %s", key, new_id)
                end
            end)
        end
    end)
end

--- Stops the heartbeat (the instance goes; the lease runs out by itself
-- unless the next version adopts it).
function Lease:stop()
    if self.timer then
        self.timer:close()
        self.timer = nil
    end
end

return _M
