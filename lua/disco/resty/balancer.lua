--- Balancing an nginx upstream over a disco list: `balance()` in
-- balancer_by_lua picks a node, and on a retry the next node this request
-- has not tried; `log()` in log_by_lua counts each attempt's outcome per
-- address in this worker (disco.resty.feedback), and a timer hands the
-- counts to the owner every `feedback_flush` seconds (through a bounded
-- list in the shared dict), which gives them to `consumer:report_calls`
-- for the validation chain (validation/recent_call).
--
--    upstream hello {
--        server 0.0.0.1;   # a placeholder, never used
--        balancer_by_lua_block {
--            require("disco.resty.balancer").balance("rest:com.acme.Hello")
--        }
--    }
--    location / {
--        access_by_lua_block {   -- 503 when the list is empty
--            require("disco.resty.balancer").precheck("rest:com.acme.Hello")
--        }
--        proxy_pass http://hello;
--        log_by_lua_block { require("disco.resty.balancer").log() }
--    }
--
-- Nodes must be IP addresses (ngx.balancer does not resolve names).
-- @module disco.resty.balancer

local feedback = require "disco.resty.feedback"
local picker = require "disco.resty.picker"
local resty = require "disco.resty"

local ngx = ngx
local str_find = string.find
local tonumber = tonumber

local _M = {}

-- Per worker and service ID: where round robin goes on.
local rr_states = {}

-- The `tried` set of a first try: empty, shared, never written (the
-- pickers only read it).
local NONE_TRIED = setmetatable({}, { __newindex = function()
    error("disco.resty.balancer: NONE_TRIED is read only", 2)
end })

-- ngx.balancer, loaded on the first balance() (it exists only inside nginx).
local balancer_api
local function load_balancer_api()
    balancer_api = require "ngx.balancer"
    return balancer_api
end

-- "host:port" of a node, for the log (never built on the request path).
local function address(node)
    return node and (node.host .. ":" .. node.port) or "?"
end

local PICKERS = {
    round_robin = picker.get("round_robin"),
    weighted = picker.get("weighted"),
}

local function check_opts(opts)
    if opts == nil then
        return "round_robin", nil
    end
    if type(opts) ~= "table" then
        error("disco.resty.balancer: options must be a table", 3)
    end
    local pick = opts.pick or "round_robin"
    if not PICKERS[pick] then
        error("disco.resty.balancer: pick must be round_robin or weighted, got '"
              .. tostring(pick) .. "'", 3)
    end
    local tries = opts.tries
    if tries ~= nil and (type(tries) ~= "number" or tries < 1 or tries % 1 ~= 0) then
        error("disco.resty.balancer: tries must be a positive integer", 3)
    end
    return pick, tries
end

--- Answers 503 now when `sid` has no node (access_by_lua): the balancer
-- phase cannot answer anything but 500 or 502.
function _M.precheck(sid)
    local nodes = resty.nodes(sid)
    if not nodes or #nodes == 0 then
        ngx.log(ngx.WARN, "disco: no node for ", sid)
        return ngx.exit(503)
    end
end

--- Picks the peer of this try (balancer_by_lua). The first try takes the
-- list, allows up to `tries` tries in all (default: one per node), and
-- picks; a retry picks among the nodes not tried yet. No node, or none
-- left: the request fails (500: nginx lets the balancer phase answer no
-- other status; `precheck` in access_by_lua answers 503 first).
-- @tparam string sid the service ID
-- @tparam[opt] table opts `pick` ("round_robin" default, or "weighted"),
-- `tries` (the most tries per request)
function _M.balance(sid, opts)
    local ngx_balancer = balancer_api or load_balancer_api()
    local pick, tries = check_opts(opts)
    local ctx = ngx.ctx
    local st = ctx.disco_balancer
    if not st then
        local nodes = resty.nodes(sid)
        if not nodes or #nodes == 0 then
            ngx.log(ngx.ERR, "disco: no node for ", sid)
            return ngx.exit(ngx.ERROR)
        end
        -- `tried` is created on the first retry: most requests never need it.
        st = { nodes = nodes, tried = false, last = 0 }
        ctx.disco_balancer = st
        local more = #nodes - 1
        if tries and tries - 1 < more then
            more = tries - 1
        end
        if more > 0 then
            ngx_balancer.set_more_tries(more)
        end
    else
        local state, code = ngx_balancer.get_last_failure()
        ngx.log(ngx.INFO, "disco: ", address(st.nodes[st.last]), " failed (", tostring(state), " ",
                tostring(code), "), trying another node of ", sid)
    end
    local tried = st.tried
    if not tried then
        tried = NONE_TRIED
        if st.last > 0 then
            tried = { [st.last] = true }
            st.tried = tried
        end
    end
    local rr = rr_states[sid]
    if not rr then
        rr = {}
        rr_states[sid] = rr
    end
    local i = PICKERS[pick](st.nodes, rr, tried)
    if not i then
        ngx.log(ngx.ERR, "disco: every node of ", sid, " was tried")
        return ngx.exit(ngx.ERROR)
    end
    if tried ~= NONE_TRIED then
        tried[i] = true
    end
    st.last = i
    local node = st.nodes[i]
    local ok, err = ngx_balancer.set_current_peer(node.host, node.port)
    if not ok then
        ngx.log(ngx.ERR, "disco: cannot use ", address(node), ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- "host:port" of a node as $upstream_addr writes it (an IPv6 host in
-- brackets), made once per node: log() reports the single attempt of most
-- requests without reading $upstream_addr. Weak keys: the nodes of a list
-- a newer version replaced go with it.
local peer_names = setmetatable({}, { __mode = "k" })

local function peer_name(node)
    local name = peer_names[node]
    if not name then
        local host = node.host
        name = (str_find(host, ":", 1, true) and ("[" .. host .. "]") or host) .. ":" .. node.port
        peer_names[node] = name
    end
    return name
end
_M.peer_name = peer_name -- for the unit spec

-- Whether an attempt's status means the node answered. nginx reports 502
-- for a connection that failed and 504 for a timeout; a node that answered
-- anything else (even 500) is alive.
local function answered(status)
    status = tonumber(status)
    return status ~= nil and status ~= 502 and status ~= 504
end

-- This worker's aggregator, created by the first log() (not in
-- init_worker: a worker that proxies nothing runs no flush timer).
local aggregator

local function start_aggregator(conf, dict)
    local agg = feedback.new(dict, conf.feedback_cap, ngx.now)
    aggregator = agg
    local ok, err = ngx.timer.every(conf.feedback_flush, function(premature)
        agg.flush()
        if premature then
            -- The worker is exiting (reload, stop): this was the timer's
            -- last run, so the requests it still finishes report at once.
            agg.flush_each = true
        end
    end)
    if not ok then
        ngx.log(ngx.WARN, "disco: no feedback flush timer (", err, "): reporting every call at once")
        agg.flush_each = true
    end
    return agg
end

--- Counts every attempt of this request (log_by_lua) in this worker's
-- aggregator: its address, whether the node answered, and its time in ms,
-- from $upstream_status and $upstream_response_time (and $upstream_addr
-- when there was more than one attempt); the flush timer hands the counts
-- to the owner. Does nothing for requests that did not go through
-- `balance()`, or when `feedback = false`.
function _M.log()
    local st = ngx.ctx.disco_balancer
    if not st then
        return
    end
    local conf = resty.config()
    if not conf or not conf.feedback then
        return
    end
    local var = ngx.var
    local record = (aggregator or start_aggregator(conf, resty.dict())).record
    local statuses = var.upstream_status
    -- One attempt (most requests): balance() ran once (a retry makes
    -- `tried`) and picked a node, and the status list has one entry (no
    -- separator): the attempt went to that node. No $upstream_addr read,
    -- no splitting, no tables.
    if not st.tried and st.last > 0 and statuses and not str_find(statuses, " ", 1, true) then
        local secs = tonumber(var.upstream_response_time)
        record(peer_name(st.nodes[st.last]), answered(statuses), secs and secs * 1000)
        return
    end
    local addrs = var.upstream_addr
    if not addrs then
        return
    end
    local times = var.upstream_response_time
    if not str_find(addrs, " ", 1, true) then
        local secs = tonumber(times)
        record(addrs, answered(statuses), secs and secs * 1000)
        return
    end
    -- "a, b : c": commas separate tries, colons internal redirects.
    local status_list, time_list = {}, {}
    for s in (statuses or ""):gmatch("[^,:%s]+") do
        status_list[#status_list + 1] = s
    end
    for t in (times or ""):gmatch("[^,:%s]+") do
        time_list[#time_list + 1] = t
    end
    local n = 0
    addrs = addrs:gsub("%s+:%s+", ", ")
    for addr in addrs:gmatch("[^,%s]+") do
        n = n + 1
        local secs = tonumber(time_list[n])
        record(addr, answered(status_list[n]), secs and secs * 1000)
    end
end

return _M
