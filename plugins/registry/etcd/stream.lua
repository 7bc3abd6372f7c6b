--- A resumable watch of one key range: `/v3/watch` from a start revision,
-- with each change's previous value (prev_kv).
--
-- The stream remembers the revision after the last event it delivered. If
-- the connection drops or etcd restarts, it re-creates the watch from that
-- revision: etcd replays exactly the events after it, so nothing is missed
-- and nothing is delivered twice. If that revision has been compacted
-- away, etcd cancels the watch with `compact_revision`; the stream then
-- stops and calls `on_compacted`, and its owner re-lists and opens a new
-- stream from the revision after its range.
local codec = require "disco.registry.etcd_codec"

local _M = {}

-- Reconnection back-off: short first (a dropped connection to a live
-- member), growing while etcd stays away.
local RETRY_FIRST_MS = 100
local RETRY_MAX_MS = 2000

local Stream = {}
Stream.__index = Stream

--- Opens a watch of [key, range_end) (range_end nil: the key alone) from
-- `start_revision`. `handlers`: `on_events(events)` (etcd's events of one
-- answer), `on_compacted(compact_revision)`.
function _M.open(ctx, gw, key, range_end, start_revision, handlers)
    local self = setmetatable({
        ctx = ctx, gw = gw, key = key, range_end = range_end,
        next_revision = start_revision, handlers = handlers,
        closed = false, retry_ms = RETRY_FIRST_MS,
        reconnects = 0,
    }, Stream)
    self:_connect()
    return self
end

function Stream:_connect()
    if self.closed then
        return
    end
    local body = codec.watch_request(self.key, self.range_end, self.next_revision)
    self.req = self.gw:stream("/v3/watch", body, function(err, doc)
        self:_line(err, doc)
    end, function(err)
        self:_ended(err)
    end)
end

function Stream:_retry(why)
    if self.closed then
        return
    end
    if self.req then
        self.req.cancel()
        self.req = nil
    end
    self.reconnects = self.reconnects + 1
    local wait = self.retry_ms
    self.retry_ms = math.min(self.retry_ms * 2, RETRY_MAX_MS)
    self.ctx.log:info("watch of %s: %s; resuming from revision %d in %d ms",
                      self.key, tostring(why), self.next_revision, wait)
    self.retrying = true
    self.ctx:after(wait, function()
        self.retrying = false
        self:_connect()
    end)
end

--- Re-opens the watch from the revision after the last event delivered
-- (etcd is reachable again after an outage); nothing when a reconnection
-- is already on its way.
function Stream:resume()
    if self.closed or self.retrying then
        return
    end
    if self.req then
        self.req.cancel()
        self.req = nil
    end
    self.reconnects = self.reconnects + 1
    self:_connect()
end

function Stream:_line(err, doc)
    if self.closed then
        return
    end
    if err then
        return self:_retry(err)
    end
    local r = doc.result
    if type(r) ~= "table" then
        return self:_retry("EPROTO: watch answer without a result")
    end
    local compacted = codec.revision(r.compact_revision)
    if r.canceled then
        if compacted > 0 then
            self:close()
            return self.handlers.on_compacted(compacted)
        end
        return self:_retry("EETCD: watch cancelled by etcd (" .. tostring(r.cancel_reason) .. ")")
    end
    if r.created then
        self.retry_ms = RETRY_FIRST_MS
    end
    local events = r.events
    if type(events) == "table" and #events > 0 then
        local top = 0
        for _, ev in ipairs(events) do
            local rev = codec.revision(ev.kv and ev.kv.mod_revision)
            if rev > top then
                top = rev
            end
        end
        if top >= self.next_revision then
            self.next_revision = top + 1
        end
        return self.handlers.on_events(events)
    end
    -- A progress notification: nothing up to its revision changed here.
    -- (A `created` answer's revision is the store's, not how far this
    -- watch has been replayed, so it moves nothing.)
    local header_rev = codec.revision(r.header and r.header.revision)
    if not r.created and header_rev >= self.next_revision then
        self.next_revision = header_rev + 1
    end
end

function Stream:_ended(err)
    if self.closed then
        return
    end
    self.req = nil
    self:_retry(err or "stream ended")
end

--- Stops the watch. Idempotent; nothing is called afterwards.
function Stream:close()
    if not self.closed then
        self.closed = true
        if self.req then
            self.req.cancel()
            self.req = nil
        end
    end
end

return _M
