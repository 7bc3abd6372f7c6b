--- A loopback ensemble of ZooKeeper servers for the test fixture: ports for
-- every member, a quorum start, leader checks and a check that it serves.
--
-- Public through @{disco.testing.zookeeper}. Members are
-- @{disco.testing.zookeeper.server} objects driven through its internal
-- methods.
--
-- @module disco.testing.zookeeper.ensemble

local files = require("disco.testing.files")
local ports = require("disco.testing.ports")
local process = require("disco.testing.process")
local commands = require("disco.testing.zookeeper.commands")
local server = require("disco.testing.zookeeper.server")

local _M = {}

local now_ms = process.now_ms
local remove_temp_dir = files.remove_temp_dir
local new_server = server.new_server
local bind_failure = server.bind_failure
local math_max = math.max
local math_min = math.min
local open_session = commands.open_session
local string_format = string.format
local table_concat = table.concat
local tostring = tostring
local type = type

local QUORUM_MODES = server.QUORUM_MODES
local MAX_START_ATTEMPTS = server.MAX_START_ATTEMPTS
local DEFAULT_START_TIMEOUT_MS = server.DEFAULT_START_TIMEOUT_MS
local POLL_MS = server.POLL_MS
local PROBE_TIMEOUT_MS = server.PROBE_TIMEOUT_MS
local live = server.live

-- How long one member may take to grant a session before it is asked again.
local SESSION_PROBE_MS = 5000

local Ensemble = {}
Ensemble.__index = Ensemble

function Ensemble:_assign_ports()
    local parts = {}
    for i, m in ipairs(self.members) do
        m:_set_port(ports.pick_port())
        m.peer_port = ports.pick_port()
        m.election_port = ports.pick_port()
        self._quorum.servers[i] = {
            id = m.myid, peer_port = m.peer_port, election_port = m.election_port,
        }
        parts[i] = m.connect_string
    end
    self.connect_string = table_concat(parts, ",")
end

-- Hard-kill every member (after a failed start).
function Ensemble:_reap_all()
    for _, m in ipairs(self.members) do
        m:_reap()
    end
end

-- Wait until every running member reports a quorum mode and exactly one of
-- them leads. Returns the leader, or nil, message, kind.
function Ensemble:_await_leader(deadline)
    local last
    while true do
        local leaders, settled, running = {}, true, 0
        for _, m in ipairs(self.members) do
            if m._proc then
                if not m:running() or bind_failure(m:_recent_log()) then
                    local reason, kind = m:_diagnose()
                    return nil, m:_failure(reason), kind
                end
                running = running + 1
                local mode, err = m:mode(PROBE_TIMEOUT_MS)
                if mode == "leader" then
                    leaders[#leaders + 1] = m
                elseif not QUORUM_MODES[mode] then
                    settled = false
                    last = string_format("member %d: %s", m.myid, tostring(mode or err))
                end
            end
        end
        if settled and #leaders == 1 then
            return leaders[1]
        end
        if settled then
            last = string_format("%d leaders among %d running members", #leaders, running)
        end
        if now_ms() >= deadline then
            return nil, "zookeeper fixture: ensemble has no single leader: "
                .. tostring(last), "timeout"
        end
        process.sleep(POLL_MS)
    end
end

--- Start every member that is not running and wait for a quorum.
-- Returns once all members serve as leader or follower with exactly one
-- leader. A bind failure restarts the whole ensemble on fresh ports.
-- @tparam[opt] number timeout_ms default 30000
-- @return self
-- @raise on failure, with the failing member's log tail
function Ensemble:start(timeout_ms)
    if self._destroyed then
        error("zookeeper fixture: ensemble used after destroy()", 2)
    end
    local t0 = now_ms()
    local deadline = t0 + (timeout_ms or self.start_timeout_ms)
    local attempt = 0
    while true do
        attempt = attempt + 1
        -- Launch all before waiting on any: no member can serve alone.
        for _, m in ipairs(self.members) do
            if not m:running() then
                m:_reap()
                m:_launch()
            end
        end
        local ok, err, kind = true, nil, nil
        for _, m in ipairs(self.members) do
            ok, err, kind = m:_await(deadline, QUORUM_MODES)
            if not ok then
                break
            end
        end
        if ok then
            ok, err, kind = self:_await_leader(deadline)
        end
        if ok then
            self.start_ms = now_ms() - t0
            return self
        end
        self:_reap_all()
        if kind ~= "bind" or attempt >= MAX_START_ATTEMPTS or now_ms() >= deadline then
            error(err, 2)
        end
        self:_assign_ports()
    end
end

--- Wait until the running members agree on exactly one leader.
-- @tparam[opt] number timeout_ms default 30000
-- @return the leader member
-- @raise on timeout
function Ensemble:wait_for_leader(timeout_ms)
    local leader, err = self:_await_leader(now_ms() + (timeout_ms or self.start_timeout_ms))
    if not leader then
        error(err, 2)
    end
    return leader
end

--- Wait until the ensemble serves: the running members agree on exactly
-- one leader, and every one of them grants a new session (see
-- @{disco.testing.zookeeper.commands.open_session}). A leader alone is not
-- enough: a member that rejoins syncs first, and Debian's ZooKeeper 3.8.0
-- has elected a leader and then committed nothing for 30 s and more after
-- a sync (docs/testing.md, "Heal").
--
-- Unlike @{wait_for_leader} this does not raise, so that the caller can
-- decide what to do with an ensemble that does not serve.
-- @tparam[opt] number timeout_ms default 30000
-- @return the leader member, or nil
-- @treturn[opt] string which members granted no session, and why
function Ensemble:await_serving(timeout_ms)
    local deadline = now_ms() + (timeout_ms or self.start_timeout_ms)
    while true do
        local leader, err = self:_await_leader(deadline)
        if not leader then
            return nil, err
        end
        local refused = {}
        for _, m in ipairs(self.members) do
            if m._proc then
                local left = math_max(deadline - now_ms(), POLL_MS)
                local session, why = open_session(m.port, math_min(left, SESSION_PROBE_MS))
                if not session then
                    refused[#refused + 1] = string_format("member %d: %s", m.myid, why)
                end
            end
        end
        if #refused == 0 then
            return leader
        end
        if now_ms() >= deadline then
            return nil, string_format("zookeeper fixture: member %d leads, but no new session on %s",
                leader.myid, table_concat(refused, ", "))
        end
        process.sleep(POLL_MS)
    end
end

--- The member that currently says it leads, without waiting.
-- @return a member, or nil
function Ensemble:leader()
    for _, m in ipairs(self.members) do
        if m:running() and m:mode(PROBE_TIMEOUT_MS) == "leader" then
            return m
        end
    end
    return nil
end

--- Stop every member (SIGTERM to all, then wait). Keeps the data.
-- @return self
function Ensemble:stop()
    for _, m in ipairs(self.members) do
        m:_request_stop()
    end
    for _, m in ipairs(self.members) do
        m:_finish_stop()
    end
    return self
end

--- Run one zkCli command against the ensemble (see
-- @{disco.testing.zookeeper.commands.cli}).
-- @tparam {string,...} args
-- @tparam[opt] table opts
-- @treturn string|nil output
-- @treturn[opt] string error
function Ensemble:cli(args, opts)
    return commands.cli(self.connect_string, args, opts)
end

--- Stop every member and remove all their directories. Idempotent.
function Ensemble:destroy()
    if self._destroyed then
        return
    end
    self:stop()
    for _, m in ipairs(self.members) do
        m:destroy()
    end
    self._destroyed = true
    live[self] = nil
end

--- An ensemble of `n` servers on loopback, not started yet.
-- Each member is a server object (same methods) with its own directory,
-- `myid`, client port, `peer_port` and `election_port`.
-- @tparam[opt=3] number n
-- @tparam[opt] table opts as for @{disco.testing.zookeeper.server.server}
--   (except `port`), plus `init_limit` (10) and `sync_limit` (4);
--   `tick_time` defaults to 500
-- @return an ensemble object with `members`, `connect_string`, `start`,
--   `stop`, `destroy`, `leader`, `wait_for_leader`, `await_serving`, `cli`
function _M.ensemble(n, opts)
    n = n or 3
    opts = opts or {}
    if type(n) ~= "number" or n < 1 then
        error("zookeeper.ensemble: member count must be positive", 2)
    end
    if opts.port then
        error("zookeeper.ensemble: ports are always chosen automatically", 2)
    end
    local quorum = {
        init_limit = opts.init_limit or 10,
        sync_limit = opts.sync_limit or 4,
        servers = {},
    }
    local self = setmetatable({
        members = {},
        size = n,
        start_timeout_ms = opts.start_timeout_ms or DEFAULT_START_TIMEOUT_MS,
        _quorum = quorum,
    }, Ensemble)
    local member_opts = {}
    for k, v in pairs(opts) do
        member_opts[k] = v
    end
    member_opts.tick_time = opts.tick_time or 500
    -- Members are created with a throwaway port; _assign_ports sets all.
    member_opts.port = 0
    local ok, err = pcall(function()
        for i = 1, n do
            local m = new_server(member_opts)
            m.myid = i
            m._quorum = quorum
            m._auto_port = false
            self.members[i] = m
        end
    end)
    if not ok then
        for _, m in ipairs(self.members) do
            remove_temp_dir(m.dir)
        end
        error(err, 2)
    end
    self:_assign_ports()
    live[self] = true
    return self
end

return _M
