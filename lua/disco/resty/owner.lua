--- The owner: the one process of an nginx instance that runs the disco
-- runtime (worker 0, or the privileged agent where it exists), created in
-- init_worker after the fork, stepped from an `ngx.timer.every`, and
-- publishing every subscription's list into the shared dict.
--
-- Nothing here blocks the nginx event loop: `rt:step()` is one
-- non-blocking loop iteration, ZooKeeper I/O runs on the library's
-- threads, and closing hands zookeeper_close to a thread too (the owner
-- steps the loop until those closes are done, sleeping between steps).
--
-- Ownership is a generation number in the dict (`owner/gen`): each owner
-- takes the next one when it starts; an owner that finds a newer one there
-- (the new generation after a HUP reload) stops publishing and closes. A
-- respawned worker 0 claims a new generation and publishes once its
-- subscriptions resolved; until then the workers keep reading what the dict
-- holds.
-- @module disco.resty.owner

local shared = require "disco.resty.shared"

local hrtime = require("disco.core").hrtime
local ngx = ngx
local pcall = pcall
local tostring = tostring

local _M = {}
local owner = {}
owner.__index = owner
_M.owner = owner -- the methods, for the unit spec

local NGX_LEVELS = {
    error = ngx.ERR, warn = ngx.WARN, info = ngx.INFO, debug = ngx.DEBUG, trace = ngx.DEBUG,
}

-- The weight of a consumer entry: the URL parameter `weight` (the
-- service's), else the instance metadata `weight`, else 100.
local function weight_of(entry)
    local params = entry.service and entry.service.params
    local w = params and params.weight
    if w == nil then
        local meta = entry.instance and entry.instance.metadata
        w = meta and meta.weight
    end
    w = tonumber(w)
    if not w or w < 0 or w % 1 ~= 0 then
        return 100
    end
    return w
end
_M.weight_of = weight_of

--- The nodes of a consumer list (sorted by URL): one per host:port
-- (several URLs of one address would count it twice), in address order.
-- Also fills `addresses`: node "host:port" -> instance address, for the
-- balancer's reports.
function _M.nodes_of(list, addresses)
    local nodes, seen = {}, {}
    for _, entry in ipairs(list) do
        local host = entry.host
        local key = (host:find(":", 1, true) and ("[" .. host .. "]") or host) .. ":" .. entry.port
        if not seen[key] then
            seen[key] = true
            nodes[#nodes + 1] = {
                host = host, port = entry.port, weight = weight_of(entry),
                metadata = { app = entry.app, protocol = entry.protocol },
                key = key,
            }
            local inst = entry.instance
            if addresses and inst then
                addresses[key] = inst.id or (inst.host .. ":" .. inst.port)
            end
        end
    end
    table.sort(nodes, function(a, b) return a.key < b.key end)
    for _, node in ipairs(nodes) do
        node.key = nil
    end
    return nodes
end

-- Where the plugins are when nobody said: next to the Lua tree this module
-- was loaded from (a source checkout: ROOT/lua/disco/... and ROOT/plugins;
-- an install: PREFIX/share/lua/5.1/disco/... and PREFIX/share/disco/plugins).
function _M.default_plugin_paths()
    local paths = {}
    local from_env = os.getenv("DISCO_PLUGIN_PATH")
    if from_env then
        for dir in from_env:gmatch("[^:]+") do
            paths[#paths + 1] = dir
        end
    end
    local file = package.searchpath("disco.resty.owner", package.path)
    if file then
        local root = file:match("^(.*)/lua/disco/resty/owner%.lua$")
        local prefix = file:match("^(.*)/share/lua/5%.1/disco/resty/owner%.lua$")
        for _, dir in ipairs({ root and (root .. "/plugins"),
                               prefix and (prefix .. "/share/disco/plugins") }) do
            local probe = io.open(dir .. "/registry/zookeeper.lua", "r")
            if probe then
                probe:close()
                paths[#paths + 1] = dir
            end
        end
    end
    return paths
end

local function set_state(self, state)
    if self.dict:get(shared.OWNER_GEN) == self.gen then
        self.dict:safe_set("owner/state", state)
    end
end

--- Claims the dict for this process: the next generation, and who holds
-- it. Creates the counters so that bumping them later allocates nothing.
local function claim(self, mode)
    local dict = self.dict
    for _, name in ipairs(shared.COUNTERS) do
        shared.ensure(dict, "c/" .. name, 0)
    end
    shared.ensure(dict, shared.SEQ, 0)
    assert(shared.ensure(dict, shared.OWNER_GEN, 0))
    local gen = assert(dict:incr(shared.OWNER_GEN, 1))
    self.gen = gen
    dict:safe_set("owner/pid", ngx.worker.pid())
    dict:safe_set("owner/since", ngx.now())
    dict:safe_set("owner/beat", ngx.now())
    dict:safe_set("owner/mode", mode)
    dict:safe_set("owner/state", "starting")
    shared.bump(dict, "claims")
    return gen
end

--- The function the owner's step hands each feedback record to (one per
-- worker, address and flush interval): the consumer's report_calls, for
-- the validation chain (recent_call), with the node's "host:port" mapped
-- to its instance address.
function _M.reporter(self)
    local addresses = self.addresses
    return function(address, ok_count, failed_count, ms, ok_age_ms, failed_age_ms)
        if self.consumer then
            self.consumer:report_calls(addresses[address] or address, ok_count, failed_count, ms,
                                       ok_age_ms, failed_age_ms)
        end
    end
end

--- Starts the owner in this process (init_worker of the owning process).
-- @tparam table conf the checked configuration (disco.resty.options)
-- @tparam string mode "worker0" or "agent" (shown in the status)
-- @tparam[opt] table loaded the upstream files' content as this nginx
-- generation loaded them (path -> text; see disco.resty.upstream_keeper)
-- @return the owner
function _M.start(conf, mode, loaded)
    local dict = ngx.shared[conf.dict]
    local self = setmetatable({
        conf = conf,
        dict = dict,
        mode = mode,
        texts = {},     -- sid -> the text last published by this owner
        pending = {},   -- sid -> a text whose publish failed, retried
        held = {},      -- sid -> { text =, connected_at = }: an empty list held
        addresses = {}, -- node "host:port" -> instance address
        published = 0,  -- subscriptions published at least once
        stopped = false,
        steps = 0,
        busy_ms = 0,    -- time spent in steps (loop time of this process)
        last_retry = 0,
    }, owner)
    self.report = _M.reporter(self)
    claim(self, mode)
    if next(conf.upstream_files or {}) then
        self.keeper = require("disco.resty.upstream_keeper").new(conf, dict, loaded, function()
            return dict:get(shared.OWNER_GEN) == self.gen
        end)
    end
    ngx.log(ngx.NOTICE, "disco: owner started (", mode, ", pid ", ngx.worker.pid(),
            ", generation ", self.gen, ")")
    local ok, err = pcall(self.open, self)
    if not ok then
        -- A bad registry URL or a missing plugin: nothing to step. Loud,
        -- and the workers keep serving what the dict holds.
        ngx.log(ngx.ERR, "disco: the owner cannot start: ", tostring(err))
        set_state(self, "failed: " .. tostring(err))
        self:close_runtime()
        self.stopped = true
        return self
    end
    local timer_ok, terr = ngx.timer.every(conf.step_interval, function(premature)
        self:step(premature)
    end)
    if not timer_ok then
        ngx.log(ngx.ERR, "disco: cannot start the owner's step timer: ", terr)
        self:stop("no step timer")
    end
    return self
end

--- Creates the runtime, the consumer and the subscriptions.
function owner:open()
    local conf = self.conf
    local rconf = { name = "resty", plugin_watch = false }
    for k, v in pairs(conf.runtime) do
        rconf[k] = v
    end
    rconf.plugin_paths = rconf.plugin_paths or _M.default_plugin_paths()
    local rt = require("disco").runtime(rconf)
    self.rt = rt
    -- The loop's lines go to nginx's error log (the sink runs on the loop
    -- thread, inside rt:step(), where ngx.log may be called).
    rt.loop:set_log_sink(function(level, component, message)
        ngx.log(NGX_LEVELS[level] or ngx.ERR, "disco [", component, "] ", message)
    end)
    local cconf = { registry = conf.registry }
    for k, v in pairs(conf.consumer) do
        cconf[k] = v
    end
    self.consumer = rt:consumer(cconf)
    self.subs = {}
    for _, sub in ipairs(conf.subscriptions) do
        self:subscribe(sub.id, sub.opts)
    end
end

--- Subscribes to `id` (again: a previous subscription is cancelled).
function owner:subscribe(id, opts)
    local old = self.subs[id]
    if old then
        pcall(old.sub.cancel, old.sub)
    end
    local sub = self.consumer:subscribe(id, function(_, list)
        self:on_list(id, list)
    end, opts)
    self.subs[id] = { sub = sub, opts = opts }
end

--- Whether the registry's session is connected (a registry without a
-- session, such as memory://, always is).
function owner:registry_connected()
    local registry = self.consumer and self.consumer.registry
    local session_of = registry and registry.session
    if type(session_of) ~= "function" then
        return true
    end
    local ok, session = pcall(session_of)
    if not ok or session == nil then
        return false
    end
    local got, state = pcall(session.state, session)
    return got and state == "connected"
end

--- The consumer's listener: publishes what it gives (the consumer's
-- empty-push protection and validation decide what an empty list means),
-- except two empty lists the consumer cannot vouch for, which are held:
-- one delivered while the registry is not connected (a mapping that failed
-- at start gives no application), and a new owner's first list when the
-- dict holds a non-empty one (the old owner's; this owner never saw those
-- addresses, so its validation chain never confirmed their removal). A
-- held list is published once the registry has been connected for
-- `empty_grace` seconds and the list is still empty (`check_held`); any
-- non-empty list replaces it at once.
function owner:on_list(id, list)
    if self.stopped then
        return
    end
    local nodes = _M.nodes_of(list, self.addresses)
    local text, err = shared.encode(nodes)
    if not text then
        ngx.log(ngx.ERR, "disco: cannot encode the list of ", id, ": ", err)
        return
    end
    if #nodes > 0 then
        self.held[id] = nil
        return self:accept(id, text)
    end
    if self.held[id] then
        return
    end
    local reason
    if not self:registry_connected() then
        reason = "the registry is not connected"
    elseif self.texts[id] == nil and not self.pending[id]
        and shared.current_count(self.dict, id) > 0 then
        reason = "the first list of this owner would empty the previous owner's"
    end
    if not reason then
        return self:accept(id, text)
    end
    self.held[id] = { text = text }
    ngx.log(ngx.WARN, "disco: an empty list of ", id, " is held (", reason, "): the dict keeps ",
            shared.current_count(self.dict, id), " nodes until the registry has been connected for ",
            self.conf.empty_grace, " s with the list still empty")
end

--- Publishes the held empty lists whose grace has passed. When the
-- registry connects, each held subscription is made again: a mapping that
-- failed while it was unreachable is not retried by the consumer, so the
-- old subscription would stay empty.
function owner:check_held(now)
    local connected = self:registry_connected()
    for id, held in pairs(self.held) do
        if not connected then
            held.connected_at = nil
        elseif not held.connected_at then
            held.connected_at = now
            ngx.log(ngx.NOTICE, "disco: the registry is connected: subscribing to ", id, " again")
            local opts = self.subs[id] and self.subs[id].opts
            local ok, err = pcall(self.subscribe, self, id, opts)
            if not ok then
                ngx.log(ngx.ERR, "disco: cannot subscribe to ", id, " again: ", tostring(err))
            end
        elseif now - held.connected_at >= self.conf.empty_grace * 1000 then
            self.held[id] = nil
            ngx.log(ngx.WARN, "disco: ", id, " is still empty after ", self.conf.empty_grace,
                    " s connected: publishing the empty list")
            self:accept(id, held.text)
        end
    end
end

--- Publishes `text` as the list of `id` unless it is the current one.
function owner:accept(id, text)
    if text == self.texts[id] then
        return
    end
    if self.keeper then
        self:keep_upstream(id, text)
    end
    if self.texts[id] == nil and not self.pending[id] then
        self.published = self.published + 1
        -- A new owner (reload, respawn) whose first list is what the dict
        -- holds already adopts it: no new version for the workers to read.
        if text == shared.current_text(self.dict, id) then
            self.texts[id] = text
            ngx.log(ngx.INFO, "disco: ", id, " is current in the dict already")
            return self:maybe_running()
        end
    end
    self.pending[id] = text
    self:publish(id)
end

--- Hands a list to the upstream keeper (rendered-upstream mode): the file
-- follows every list this owner accepts, whether or not the dict took it.
function owner:keep_upstream(id, text)
    local nodes, err = shared.decode(text)
    if not nodes then
        ngx.log(ngx.ERR, "disco: cannot render the upstream file of ", id, ": ", err)
        return
    end
    local ok, kerr = pcall(self.keeper.list, self.keeper, id, nodes, hrtime())
    if not ok then
        ngx.log(ngx.ERR, "disco: the upstream file of ", id, " failed: ", tostring(kerr))
    end
end

function owner:publish(id)
    local text = self.pending[id]
    if self.dict:get(shared.OWNER_GEN) ~= self.gen then
        -- A newer owner exists; the next step stops this one (not from
        -- here: this may run inside rt:step(), which must not close).
        return
    end
    local version, err = shared.publish(self.dict, id, text)
    if not version then
        -- Loud, and the previous list stays: retried every retry_interval.
        ngx.log(ngx.ERR, "disco: publish of ", id, " failed: ", err)
        return
    end
    self.pending[id] = nil
    self.texts[id] = text
    ngx.log(ngx.INFO, "disco: published ", id, " version ", version)
    self:maybe_running()
end

-- "running" once every subscription's list is in the dict.
function owner:maybe_running()
    if self.published == #self.conf.subscriptions and next(self.pending) == nil then
        set_state(self, "running")
    end
end

--- One step: the loop's ready events, the balancer's reports, retries.
function owner:step(premature)
    if self.stopped then
        return
    end
    if premature or ngx.worker.exiting() then
        return self:stop("worker exiting")
    end
    local dict = self.dict
    local gen = dict:get(shared.OWNER_GEN)
    if gen ~= self.gen then
        return self:stop("superseded by generation " .. tostring(gen))
    end
    local start = hrtime()
    local ok, err = pcall(self.rt.step, self.rt)
    if not ok then
        ngx.log(ngx.ERR, "disco: owner step failed: ", tostring(err))
    end
    local _, calls, malformed = shared.drain_feedback(dict, self.conf.feedback_batch, self.report)
    if calls > 0 then
        shared.bump(dict, "feedback_handled", calls)
    end
    if malformed > 0 then
        -- Only a foreign writer (or a worker of an older disco still
        -- finishing after a reload) writes those: skipped, counted, loud.
        shared.bump(dict, "feedback_malformed", malformed)
        ngx.log(ngx.WARN, "disco: ", malformed, " malformed feedback records skipped")
    end
    if next(self.held) then
        self:check_held(start)
    end
    if next(self.pending) and start - self.last_retry >= self.conf.retry_interval * 1000 then
        self.last_retry = start
        for id in pairs(self.pending) do
            self:publish(id)
        end
    end
    if self.keeper then
        local kok, kerr = pcall(self.keeper.step, self.keeper, start, self.conf.retry_interval * 1000)
        if not kok then
            ngx.log(ngx.ERR, "disco: the upstream keeper's step failed: ", tostring(kerr))
        end
    end
    local elapsed = hrtime() - start
    self.steps = self.steps + 1
    self.busy_ms = self.busy_ms + elapsed
    -- Numbers replacing numbers: no allocation, nothing to evict.
    dict:safe_set("owner/beat", ngx.now())
    dict:safe_set("owner/steps", self.steps)
    dict:safe_set("owner/busy_ms", self.busy_ms)
    if elapsed > self.conf.slow_step_ms then
        shared.bump(dict, "slow_steps")
        ngx.log(ngx.WARN, "disco: an owner step took ", elapsed, " ms")
    end
end

-- Closes the runtime without blocking nginx: the sessions start closing
-- (zookeeper_close runs on a thread), the loop is stepped until nothing is
-- left (sleeping between steps, up to 5 s), then closed.
function owner:close_runtime()
    local rt = self.rt
    if not rt then
        return
    end
    self.rt = nil
    if self.consumer then
        pcall(self.consumer.close, self.consumer)
    end
    pcall(rt.plugins.close, rt.plugins)
    local deadline = ngx.now() + 5
    while ngx.now() < deadline do
        local ok, more = pcall(rt.step, rt)
        if not ok or not more then
            break
        end
        if not pcall(ngx.sleep, 0.01) then
            break -- no sleeping here: let close() finish the rest
        end
        ngx.update_time()
    end
    local ok, err = pcall(rt.close, rt)
    if not ok then
        ngx.log(ngx.ERR, "disco: closing the runtime failed: ", tostring(err))
    end
end

--- Stops publishing and closes the runtime. Idempotent.
function owner:stop(reason)
    if self.stopped then
        return
    end
    self.stopped = true
    ngx.log(ngx.NOTICE, "disco: owner (generation ", self.gen, ") stops: ", reason)
    set_state(self, "stopped: " .. reason)
    self:close_runtime()
    ngx.log(ngx.NOTICE, "disco: owner (generation ", self.gen, ") closed")
end

return _M
