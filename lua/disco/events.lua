--- Typed events and the dispatcher every step of the flows goes through.
--
-- Each event has a type from `TYPES` (DESIGN.md §1), a `time` in
-- milliseconds and the fields that type requires. A dispatcher calls the
-- listeners of a type in a fixed order (priority, then registration) and
-- isolates them from each other: a listener that raises is logged with its
-- name and traceback, counted, and the others still run. The Pre* types are
-- vetoable: a listener returning `false, reason` stops the dispatch there,
-- which is how the fast-fail flows of DESIGN.md §2 learn that a step failed.
--
--    local events = require "disco.events"
--    local d = events.dispatcher({ loop = rt.loop, log = rt:logger("events") })
--    local sub = d:on("ServiceInstancePreRegistered", function(event)
--        if not event.instance.port then
--            return false, "no port"
--        end
--    end, { priority = 10, name = "port-check" })
--    local ok, reason, by = d:emit("ServiceInstancePreRegistered",
--                                  { instance = inst })
--
-- @module disco.events

local debug_getinfo = debug.getinfo
local debug_traceback = debug.traceback
local error = error
local pairs = pairs
local setmetatable = setmetatable
local string_format = string.format
local table_sort = table.sort
local tostring = tostring
local type = type
local xpcall = xpcall

local _M = {}

--- Every event type: `name -> { required = {field...}, pre = bool }`.
-- `required` lists the fields `new` insists on (a field is present when it
-- is not nil, so `false` counts as given); listeners may rely on them.
-- `pre` marks the vetoable types. Treat the table as read-only.
-- @table TYPES
-- @field ServiceConfigExported a service was exported. `service`: the
-- exported service's description (interface, group, version, protocol,
-- port, params), as the provider flow recorded it in p0.
-- @field ServiceConfigUnexported a service was unexported. `service`: as for
-- ServiceConfigExported.
-- @field ReferenceConfigInitialized a consumer reference was set up.
-- `service_id`: its Dubbo service ID, `protocol:interface[:version][:group]`.
-- @field ReferenceConfigDestroyed a consumer reference was torn down.
-- `service_id`: as above.
-- @field ShutdownHookRegistered the runtime installed its shutdown hook.
-- @field ShutdownHookUnregistered the runtime removed its shutdown hook.
-- @field ServiceDestroyed the runtime finished tearing down its services.
-- @field ServiceInstancePreRegistered (pre) the instance is about to be
-- registered; listeners may add metadata or veto. `instance`: the instance
-- table that will be written.
-- @field ServiceInstanceRegistered the instance was registered.
-- `instance`: as written.
-- @field ServiceInstancePreUnregistered (pre) the instance is about to be
-- unregistered; listeners may veto. `instance`: the registered instance.
-- @field ServiceInstanceUnregistered the instance was unregistered.
-- `instance`: the instance that was removed.
-- @field ServiceInstancesChanged the instance list of an application
-- changed. `service_name`: the application name; `instances`: its full
-- current list (a consumer needs the whole list, not a diff, to rebuild).
-- @field ServiceDiscoveryInitializing a service discovery is starting.
-- @field ServiceDiscoveryInitialized a service discovery is ready.
-- @field ServiceDiscoveryException a service discovery failed. `error`: the
-- error message (`"ENAME: msg"`) or object.
-- @field ServiceDiscoveryDestroying a service discovery is stopping.
-- @field ServiceDiscoveryDestroyed a service discovery has stopped.
-- @field PluginLoaded a plugin was loaded. `name`: the plugin's name;
-- `version`: its version (`false` when it declares none).
-- @field PluginReloaded a plugin was replaced by a new version. `name`;
-- `version`: the new one; `old_version`: the one it replaced.
-- @field PluginReloadFailed a reload failed and the old plugin keeps
-- running. `name`; `reason`: the error message; `stage`: where it failed
-- (such as "load", "validate" or "start"), so that operators can tell a
-- syntax error from a plugin refusing its configuration.
-- @field PluginLoadFailed a first load failed, so nothing of that plugin
-- runs. `name`, `reason`, `stage`: as for PluginReloadFailed.
-- @field PluginUnloaded a plugin was unloaded. `name`.
local TYPES = {
    -- Service events.
    ServiceConfigExported = { required = { "service" }, pre = false },
    ServiceConfigUnexported = { required = { "service" }, pre = false },
    ReferenceConfigInitialized = { required = { "service_id" }, pre = false },
    ReferenceConfigDestroyed = { required = { "service_id" }, pre = false },
    -- Runtime events.
    ShutdownHookRegistered = { required = {}, pre = false },
    ShutdownHookUnregistered = { required = {}, pre = false },
    ServiceDestroyed = { required = {}, pre = false },
    -- Instance events.
    ServiceInstancePreRegistered = { required = { "instance" }, pre = true },
    ServiceInstanceRegistered = { required = { "instance" }, pre = false },
    ServiceInstancePreUnregistered = { required = { "instance" }, pre = true },
    ServiceInstanceUnregistered = { required = { "instance" }, pre = false },
    ServiceInstancesChanged = { required = { "service_name", "instances" }, pre = false },
    -- Discovery events.
    ServiceDiscoveryInitializing = { required = {}, pre = false },
    ServiceDiscoveryInitialized = { required = {}, pre = false },
    ServiceDiscoveryException = { required = { "error" }, pre = false },
    ServiceDiscoveryDestroying = { required = {}, pre = false },
    ServiceDiscoveryDestroyed = { required = {}, pre = false },
    -- Plugin events: disco's own, so that every load, reload and failure of
    -- a plugin is observable like any other step.
    PluginLoaded = { required = { "name", "version" }, pre = false },
    PluginReloaded = { required = { "name", "version", "old_version" }, pre = false },
    PluginReloadFailed = { required = { "name", "reason", "stage" }, pre = false },
    PluginLoadFailed = { required = { "name", "reason", "stage" }, pre = false },
    PluginUnloaded = { required = { "name" }, pre = false },
}
_M.TYPES = TYPES

--- The wall clock `new` stamps events with, in milliseconds. Replaceable
-- (tests, hosts with a better clock); a dispatcher with a loop uses the
-- loop's clock instead.
function _M.clock()
    return os.time() * 1000
end

-- Private helpers take `level` as their caller would pass it to error() and
-- add one for their own frame, so that a programmer error points at the
-- user's line. Callers never tail-call them: that would drop a frame.
local function check_type(etype, level, allow_any)
    if allow_any and etype == "*" then
        return
    end
    if type(etype) ~= "string" then
        error("event type must be a string, got " .. type(etype), level + 1)
    end
    if TYPES[etype] == nil then
        error("unknown event type '" .. etype .. "'", level + 1)
    end
end

local function make(etype, fields, time, level)
    check_type(etype, level + 1)
    if fields ~= nil and type(fields) ~= "table" then
        error("event fields must be a table, got " .. type(fields), level + 1)
    end
    local event = {}
    if fields then
        for k, v in pairs(fields) do
            event[k] = v
        end
    end
    local required = TYPES[etype].required
    for i = 1, #required do
        if event[required[i]] == nil then
            error(string_format("event %s requires the field '%s'", etype, required[i]), level + 1)
        end
    end
    event.type = etype
    event.time = time
    return event
end

--- Creates an event: a fresh table with the fields copied, `type` and
-- `time` (ms, from `clock()`) set. Raises on an unknown type or a missing
-- required field: both are programmer errors.
-- @tparam string etype a key of `TYPES`
-- @tparam[opt] table fields
-- @treturn table the event
function _M.new(etype, fields)
    -- Not a tail call: the error levels count this frame.
    local event = make(etype, fields, _M.clock(), 2)
    return event
end

--- Whether `etype` is vetoable (a Pre* type). Raises on an unknown type,
-- so that a misspelt name is not silently "not vetoable".
-- @tparam string etype
-- @treturn boolean
function _M.is_pre(etype)
    check_type(etype, 2)
    return TYPES[etype].pre
end

-- The xpcall handler: the traceback is taken here, while the listener's
-- frames are still on the stack.
local function traceback(err)
    return debug_traceback(tostring(err), 2)
end

-- Higher priority first; equal priorities in registration order. `seq` is
-- unique, so this is a total order and the unstable table.sort is safe.
local function runs_before(a, b)
    if a.priority ~= b.priority then
        return a.priority > b.priority
    end
    return a.seq < b.seq
end

local subscription = {}
subscription.__index = subscription

--- Removes the listener. Idempotent. A dispatch in progress checks
-- `active` before each call, so a listener cancelled by an earlier one is
-- not called afterwards.
function subscription:cancel()
    if not self.active then
        return
    end
    self.active = false
    local d = self.dispatcher
    local list = d._subs[self.type]
    for i = 1, #list do
        if list[i] == self then
            table.remove(list, i)
            break
        end
    end
    d:_invalidate(self.type)
end

local dispatcher = {}
dispatcher.__index = dispatcher

local DISPATCHER_OPTS = { loop = true, log = true, max_depth = true }

--- Creates a dispatcher.
-- @tparam[opt] table opts `loop`: a `disco.core` loop (`rt.loop`), used to
-- defer events (a 0 ms timer) and to stamp `time` (`loop:now()`);
-- `log`: a `disco.log` logger for listener failures (default: io.stderr);
-- `max_depth`: how many dispatches may be nested (default 32).
-- @treturn disco.events.dispatcher
function _M.dispatcher(opts)
    if opts == nil then
        opts = {}
    elseif type(opts) ~= "table" then
        error("dispatcher options must be a table, got " .. type(opts), 2)
    end
    for key in pairs(opts) do
        if not DISPATCHER_OPTS[key] then
            error("unknown dispatcher option '" .. tostring(key) .. "'", 2)
        end
    end
    local max_depth = opts.max_depth or 32
    if type(max_depth) ~= "number" or max_depth < 1 or max_depth % 1 ~= 0 then
        error("max_depth must be a positive integer, got " .. tostring(max_depth), 2)
    end
    return setmetatable({
        loop = opts.loop,
        log = opts.log,
        max_depth = max_depth,
        closed = false,
        stats = { dispatched = 0, deferred = 0, listener_errors = 0, vetoes = 0 },
        _subs = {},      -- type or "*" -> subscriptions in registration order
        _snapshots = {}, -- type -> merged, sorted list; rebuilt after a change
        _seq = 0,
        _depth = 0,      -- dispatches in progress (nesting)
        _queue = {},     -- deferred events, FIFO
        _draining = false,
        _timer = nil,
    }, dispatcher)
end

-- The snapshot of a type is replaced, never modified, so a dispatch that
-- holds the old one is unaffected by listeners added meanwhile.
function dispatcher:_invalidate(etype)
    if etype == "*" then
        self._snapshots = {}
    else
        self._snapshots[etype] = nil
    end
end

local function snapshot(self, etype)
    local list = {}
    local own, any = self._subs[etype], self._subs["*"]
    if own then
        for i = 1, #own do
            list[#list + 1] = own[i]
        end
    end
    if any then
        for i = 1, #any do
            list[#list + 1] = any[i]
        end
    end
    table_sort(list, runs_before)
    self._snapshots[etype] = list
    return list
end

local function check_open(self, level)
    if self.closed then
        error("event dispatcher is closed", level + 1)
    end
end

local ON_OPTS = { priority = true, name = true }

--- Adds a listener for one type, or for every type with `"*"`.
-- `listener(event)` runs in priority order (higher first, default 0), then
-- in registration order; `"*"` listeners are merged into the same order.
-- @tparam string etype a key of `TYPES`, or `"*"`
-- @tparam function listener
-- @tparam[opt] table opts `priority` (number), `name` (string, shown in
-- logs and returned as `vetoed_by`; default `"<short_src>:<linedefined>"`)
-- @treturn table the subscription: `cancel()`, `active`, `errors`, `name`
function dispatcher:on(etype, listener, opts)
    check_open(self, 2)
    check_type(etype, 2, true)
    if type(listener) ~= "function" then
        error("listener must be a function, got " .. type(listener), 2)
    end
    if opts == nil then
        opts = {}
    elseif type(opts) ~= "table" then
        error("listener options must be a table, got " .. type(opts), 2)
    end
    for key in pairs(opts) do
        if not ON_OPTS[key] then
            error("unknown listener option '" .. tostring(key) .. "'", 2)
        end
    end
    local priority = opts.priority or 0
    if type(priority) ~= "number" then
        error("listener priority must be a number, got " .. type(priority), 2)
    end
    local name = opts.name
    if name == nil then
        local info = debug_getinfo(listener, "S")
        name = info.short_src .. ":" .. info.linedefined
    elseif type(name) ~= "string" then
        error("listener name must be a string, got " .. type(name), 2)
    end
    self._seq = self._seq + 1
    local sub = setmetatable({
        dispatcher = self,
        type = etype,
        listener = listener,
        priority = priority,
        name = name,
        seq = self._seq,
        active = true,
        errors = 0,
    }, subscription)
    local list = self._subs[etype]
    if list == nil then
        list = {}
        self._subs[etype] = list
    end
    list[#list + 1] = sub
    self:_invalidate(etype)
    return sub
end

-- Reports a listener failure. Protected itself: a broken logger must not
-- break the dispatch loop (which would leave `_depth` wrong).
local function report(self, sub, etype, err)
    sub.errors = sub.errors + 1
    self.stats.listener_errors = self.stats.listener_errors + 1
    local log = self.log
    if log then
        local ok = pcall(log.error, log, "listener %s failed on %s: %s", sub.name, etype, err)
        if ok then
            return
        end
    end
    pcall(function()
        io.stderr:write(string_format("[events] error: listener %s failed on %s: %s\n",
                                      sub.name, etype, tostring(err)))
    end)
end

-- Runs the listeners of `event` now. Nothing in the loop raises (listeners
-- and the report are protected), so `_depth` is always restored.
local function deliver(self, event, level)
    local depth = self._depth
    if depth >= self.max_depth then
        error("event dispatch nested deeper than " .. self.max_depth, level + 1)
    end
    local etype = event.type
    local list = self._snapshots[etype] or snapshot(self, etype)
    local pre = TYPES[etype].pre
    local stats = self.stats
    stats.dispatched = stats.dispatched + 1
    self._depth = depth + 1
    for i = 1, #list do
        local sub = list[i]
        if sub.active then
            local ok, ret, reason = xpcall(sub.listener, traceback, event)
            if not ok then
                report(self, sub, etype, ret)
            elseif pre and ret == false then
                self._depth = depth
                stats.vetoes = stats.vetoes + 1
                if reason == nil then
                    reason = "vetoed by " .. sub.name
                end
                if self.log then
                    pcall(self.log.debug, self.log, "%s vetoed by %s: %s",
                          etype, sub.name, tostring(reason))
                end
                return false, reason, sub.name
            end
        end
    end
    self._depth = depth
    return true
end

local arm

-- The timer callback: delivers the queue as it was when the turn began.
-- Events deferred meanwhile wait for the next turn, so listeners that keep
-- deferring cannot starve the loop.
local function drain(self)
    local queue = self._queue
    self._queue = {}
    self._draining = true
    for i = 1, #queue do
        if self.closed then
            break
        end
        deliver(self, queue[i], 1)
    end
    self._draining = false
    if not self.closed and #self._queue > 0 then
        -- 1 ms, not 0: libuv before 1.45 runs a 0 ms timer re-armed from its
        -- own callback again in the same pass, before any I/O is polled.
        arm(self, 1, 1)
    end
end

arm = function(self, ms, level)
    local timer = self._timer
    if timer == nil then
        local err
        timer, err = self.loop:timer("events")
        if not timer then
            error("cannot create the deferred-dispatch timer: " .. tostring(err), level + 1)
        end
        self._timer = timer
    end
    if not timer:is_active() then
        local ok, err = timer:start(ms, 0, function() drain(self) end)
        if not ok then
            error("cannot start the deferred-dispatch timer: " .. tostring(err), level + 1)
        end
    end
end

local DISPATCH_OPTS = { defer = true }

local function route(self, event, opts, level)
    if opts == nil then
        local ok, reason, by = deliver(self, event, level + 1)
        return ok, reason, by
    end
    if type(opts) ~= "table" then
        error("dispatch options must be a table, got " .. type(opts), level + 1)
    end
    for key in pairs(opts) do
        if not DISPATCH_OPTS[key] then
            error("unknown dispatch option '" .. tostring(key) .. "'", level + 1)
        end
    end
    if not opts.defer then
        local ok, reason, by = deliver(self, event, level + 1)
        return ok, reason, by
    end
    if TYPES[event.type].pre then
        error("cannot defer " .. event.type .. ": a veto could not reach the caller", level + 1)
    end
    if self.loop == nil then
        error("cannot defer " .. event.type .. ": the dispatcher has no loop", level + 1)
    end
    local queue = self._queue
    queue[#queue + 1] = event
    self.stats.deferred = self.stats.deferred + 1
    if not self._draining then
        arm(self, 0, level + 1)
    end
    return true
end

--- Dispatches an event built by `events.new`.
-- Synchronous by default: every listener has run when this returns. For a
-- Pre* event, the first listener returning exactly `false, reason` stops the
-- dispatch (`reason` defaults to "vetoed by <name>"); a listener that raises
-- does not veto. Other return values are ignored.
-- @tparam table event
-- @tparam[opt] table opts `defer = true`: queue the event for the next loop
-- turn and return true at once (raises for Pre* types and without a loop)
-- @treturn boolean ok
-- @treturn[opt] string reason why it was vetoed
-- @treturn[opt] string the name of the listener that vetoed
function dispatcher:dispatch(event, opts)
    check_open(self, 2)
    if type(event) ~= "table" then
        error("event must be a table, got " .. type(event), 2)
    end
    check_type(event.type, 2)
    local ok, reason, by = route(self, event, opts, 2)
    return ok, reason, by
end

--- `d:dispatch(events.new(etype, fields), opts)`, with `time` from the
-- dispatcher's loop when it has one.
-- @treturn boolean ok
-- @treturn[opt] string reason
-- @treturn[opt] string vetoed_by
function dispatcher:emit(etype, fields, opts)
    check_open(self, 2)
    local loop = self.loop
    local event = make(etype, fields, loop and loop:now() or _M.clock(), 2)
    local ok, reason, by = route(self, event, opts, 2)
    return ok, reason, by
end

--- Closes the dispatcher: the deferred timer is closed and events still
-- queued are dropped; further `on`, `dispatch` and `emit` raise. A dispatch
-- in progress finishes. Idempotent.
function dispatcher:close()
    if self.closed then
        return
    end
    self.closed = true
    self._queue = {}
    if self._timer then
        self._timer:close()
        self._timer = nil
    end
end

return _M
