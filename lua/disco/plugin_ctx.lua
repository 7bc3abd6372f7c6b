--- The context a plugin instance receives in `init(ctx, conf)`.
--
-- Everything a plugin needs that outlives a function call (timers, event
-- subscriptions, and later watches and sockets) comes from here, so the host
-- owns it: `release()` takes all of it down when the instance is replaced
-- or unloaded, whether or not the plugin cleaned up after itself.
-- @module disco.plugin_ctx

local _M = {}
local ctx_mt = {}
ctx_mt.__index = ctx_mt

--- Creates the context of one plugin instance.
-- @tparam table opts `name` ("kind/name"), `kind`, `conf`, `loop`,
-- `events` (the dispatcher), `log` (a logger), `owners` (the host's table
-- of handle -> owning context), and `guard(fn)`, which wraps
-- every callback into the plugin so the host can hold events back while it
-- swaps instances
function _M.new(opts)
    return setmetatable({
        name = opts.name,
        kind = opts.kind,
        conf = opts.conf,
        log = opts.log,
        _loop = opts.loop,
        _events = opts.events,
        _guard = opts.guard,
        _owners = opts.owners, -- handle -> owning context, shared by the host
        _timers = {},
        _subscriptions = {},
        _handles = {},  -- sessions and other closable handles this instance owns
        _adopted = {},  -- handle -> the context it was taken from (reload)
        _released = false,
    }, ctx_mt)
end

local function check_open(self)
    if self._released then
        error("plugin '" .. self.name .. "': this instance was unloaded or replaced", 3)
    end
end

local function new_timer(self, ms, repeat_ms, fn)
    check_open(self)
    if type(ms) ~= "number" or ms < 0 then
        error("timer delay must be a number of milliseconds >= 0", 3)
    end
    if type(fn) ~= "function" then
        error("timer callback must be a function", 3)
    end
    local timer = assert(self._loop:timer(self.name))
    local timers = self._timers
    assert(timer:start(ms, repeat_ms, function(t)
        if repeat_ms == 0 then
            timers[t] = nil
            t:close()
        end
        fn()
    end))
    timers[timer] = true
    return timer
end

--- Calls `fn()` once after `ms` milliseconds. Errors in `fn` are logged
-- with the plugin's name.
function ctx_mt:after(ms, fn)
    return new_timer(self, ms, 0, fn)
end

--- Calls `fn()` every `ms` milliseconds until the timer is closed or the
-- instance is released.
function ctx_mt:every(ms, fn)
    return new_timer(self, ms, ms, fn)
end

--- Subscribes to an event type (or "*"), like `dispatcher:on`. Events that
-- arrive while the host swaps this plugin are held and delivered once to
-- whichever instance runs after the swap.
function ctx_mt:on(event_type, listener, opts)
    check_open(self)
    if type(listener) ~= "function" then
        error("listener must be a function", 2)
    end
    opts = opts or {}
    local sub_opts = { priority = opts.priority, name = opts.name or self.name }
    local sub = self._events:on(event_type, self._guard(listener), sub_opts)
    local subs = self._subscriptions
    subs[#subs + 1] = { sub = sub, type = event_type, listener = listener,
                        priority = opts.priority or 0, order = #subs + 1 }
    return sub
end

--- Fires an event through the runtime's dispatcher.
function ctx_mt:emit(event_type, fields, opts)
    check_open(self)
    return self._events:emit(event_type, fields, opts)
end

--- Opens a ZooKeeper session owned by the host (see `loop:zk` in
-- docs/lua-api.md for `opts`). It is closed when this instance goes,
-- unless the next version adopts it in `restore`.
-- @return the session, or nil and the error
function ctx_mt:zk(opts)
    check_open(self)
    local session, err = self._loop:zk(opts)
    if not session then
        return nil, err
    end
    self._handles[session] = true
    self._owners[session] = self
    return session
end

--- Opens a dubbo protocol client owned by the host (see
-- `loop:dubbo_client` in docs/lua-api.md for `opts`). It is closed when
-- this instance goes; `ctx:release(client)` closes it earlier.
-- @return the client, or nil and the error
function ctx_mt:dubbo_client(opts)
    check_open(self)
    local client, err = self._loop:dubbo_client(opts)
    if not client then
        return nil, err
    end
    self._handles[client] = true
    self._owners[client] = self
    return client
end

--- Opens an HTTP client owned by the host (see `loop:http_client` in
-- docs/lua-api.md for `opts`). It is closed when this instance goes
-- (pending requests answer "ECANCELED: client closed"); `ctx:release`
-- closes it earlier.
-- @return the client, or nil and the error
function ctx_mt:http_client(opts)
    check_open(self)
    local client, err, ename = self._loop:http_client(opts)
    if not client then
        return nil, err, ename
    end
    self._handles[client] = true
    self._owners[client] = self
    return client
end

--- Closes a handle this instance took from `ctx` (a session, a client)
-- before the instance goes, and forgets it.
function ctx_mt:release(handle)
    if self._handles[handle] then
        self._handles[handle] = nil
        self._owners[handle] = nil
    end
    handle:close()
end

--- Takes over a handle the previous version of this plugin owned (handed
-- over through `save`/`restore`), so that replacing the plugin does not
-- close it. If the reload then fails, the handle goes back to the old
-- version.
function ctx_mt:adopt(handle)
    check_open(self)
    local owner = self._owners[handle]
    if owner == self then
        return handle
    end
    if owner then
        owner._handles[handle] = nil
        self._adopted[handle] = owner
    end
    self._handles[handle] = true
    self._owners[handle] = self
    return handle
end

--- Host only: gives adopted handles back to their previous owner (the
-- reload that adopted them failed).
function ctx_mt:_return_adopted()
    for handle, owner in pairs(self._adopted) do
        self._handles[handle] = nil
        owner._handles[handle] = true
        self._owners[handle] = owner
    end
    self._adopted = {}
end

--- Host only: the reload succeeded; adopted handles are this instance's.
function ctx_mt:_keep_adopted()
    self._adopted = {}
end

--- After a bulk load (thousands of registry entries read at once): asks
-- the host for one full garbage collection and a trim of the C heap once
-- such loads have been quiet a moment (`disco.memory`).
function ctx_mt:settle_memory()
    check_open(self)
    require("disco.memory").settle(self._loop)
end

--- Loop time in milliseconds.
function ctx_mt:now()
    return self._loop:now()
end

--- Host only: delivers an event held during a swap to this instance's own
-- active subscriptions for its type, in their dispatch order.
function ctx_mt:_deliver(event)
    local due = {}
    for _, entry in ipairs(self._subscriptions) do
        if entry.sub.active and (entry.type == event.type or entry.type == "*") then
            due[#due + 1] = entry
        end
    end
    table.sort(due, function(a, b)
        if a.priority ~= b.priority then
            return a.priority > b.priority
        end
        return a.order < b.order
    end)
    for _, entry in ipairs(due) do
        local ok, err = xpcall(entry.listener, debug.traceback, event)
        if not ok then
            self.log:error("listener failed on held %s: %s", event.type, err)
        end
    end
end

--- Host only: closes every timer and cancels every subscription. Idempotent.
function ctx_mt:_release()
    if self._released then
        return
    end
    self._released = true
    for timer in pairs(self._timers) do
        timer:close()
    end
    self._timers = {}
    for _, entry in ipairs(self._subscriptions) do
        entry.sub:cancel()
    end
    self._subscriptions = {}
    for handle in pairs(self._handles) do
        handle:close()
        self._owners[handle] = nil
    end
    self._handles = {}
end

--- How many handles the instance holds (for tests and stats).
function ctx_mt:_resource_count()
    local n = #self._subscriptions
    for _ in pairs(self._timers) do
        n = n + 1
    end
    for _ in pairs(self._handles) do
        n = n + 1
    end
    return n
end

return _M
