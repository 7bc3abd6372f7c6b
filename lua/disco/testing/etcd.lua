--- A real etcd server for integration tests.
--
-- Debian's `etcd` (3.4) started on free loopback client and peer ports with
-- a data directory in a temporary directory, like
-- @{disco.testing.zookeeper}'s servers. A server only counts as started
-- when *its own* process serves: its pid is alive, its log says it serves
-- clients on its own port, and `/health` on that port answers true. A port
-- alone proves nothing: another process may hold it.
--
-- The process is started through @{disco.testing.process} (a watchdog kills
-- it if the test runner dies; its group is listed in `$DISCO_TEST_PIDFILE`)
-- and is only ever signalled by its recorded (pid, start time).
--
--     local etcd = require("disco.testing.etcd")
--     local server = etcd.server():start()
--     -- ... talk to server.endpoint ("127.0.0.1:PORT") ...
--     server:compact(server:revision())
--     server:restart()          -- same ports, same data
--     server:destroy()
--
-- @module disco.testing.etcd

local files = require("disco.testing.files")
local ports = require("disco.testing.ports")
local process = require("disco.testing.process")
local server_process = require("disco.testing.server_process")

local _M = {}

local quote = process.quote
local now_ms = process.now_ms
local shell = process.shell
local read_file = files.read_file
local file_size = files.file_size
local tail = files.tail
local string_format = string.format

_M.ETCD = "/usr/bin/etcd"
_M.ETCDCTL = "/usr/bin/etcdctl"

-- A bind failure on auto-chosen ports is retried with fresh ports this many
-- times in all; more failures mean something else is wrong.
local MAX_START_ATTEMPTS = 5
local DEFAULT_START_TIMEOUT_MS = 30000
local POLL_MS = 50
local PROBE_TIMEOUT_S = "1"
local LOG_TAIL_LINES = 25

-- Servers not destroyed yet, for destroy_all().
local live = {}

local Server = {}
Server.__index = Server
server_process.with_lifecycle(Server, "etcd fixture")

function Server:_set_ports(client, peer)
    self.port = client
    self.peer_port = peer
    self.endpoint = "127.0.0.1:" .. client
    self.url = "http://" .. self.endpoint
end

function Server:_check_usable()
    if self._destroyed then
        error("etcd fixture: server used after destroy()", 3)
    end
end

function Server:_argv()
    local peer = "http://127.0.0.1:" .. self.peer_port
    return {
        self._etcd,
        "--name", "disco-test",
        "--data-dir", self.data_dir,
        "--listen-client-urls", self.url,
        "--advertise-client-urls", self.url,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", "disco-test=" .. peer,
        "--initial-cluster-state", "new",
        -- Tests write little; a small snapshot interval keeps restarts fast.
        "--snapshot-count", "10000",
        "--logger", "zap",
        "--log-outputs", "stderr",
    }
end

function Server:_launch()
    -- Only this run's part of the appended log counts as evidence.
    self._log_offset = file_size(self.log_path)
    self._proc = process.spawn({ argv = self:_argv(), cwd = self.dir, log = self.log_path })
    self.pid = self._proc.pid
    self.pgid = self._proc.pgid
    self.paused = false
end

function Server:_recent_log()
    return read_file(self.log_path, self._log_offset) or ""
end

local function bind_failure(log)
    return log:match("[^\n]*address already in use[^\n]*")
end

function Server:_failure(reason)
    return string_format("etcd fixture: server in %s (client port %d, peer port %d) did not start: %s\n"
        .. "--- last lines of %s ---\n%s",
        self.dir, self.port, self.peer_port, reason, self.log_path,
        tail(self:_recent_log(), LOG_TAIL_LINES))
end

--- An HTTP request to this server's client port with curl; the body of
-- the answer, or nil and an error. For fixtures and specs only: the code
-- under test uses disco's own client.
-- @tparam string path e.g. "/health"
-- @tparam[opt] string body a POST body (JSON)
function Server:http(path, body)
    local cmd = "curl -sS -m " .. PROBE_TIMEOUT_S .. " "
    if body then
        cmd = cmd .. "-X POST -H 'Content-Type: application/json' --data-binary " .. quote(body) .. " "
    end
    local ok, out = shell(cmd .. quote(self.url .. path))
    if not ok then
        return nil, (out:gsub("%s+$", ""))
    end
    return out
end

-- Wait until this server's own process serves. Returns true, or nil,
-- message, kind ("bind", "exit" or "timeout").
function Server:_await(deadline)
    local serving = "serving client traffic"
    local own = "\"address\":\"127.0.0.1:" .. self.port .. "\""
    local last = "no answer yet"
    while true do
        local log = self:_recent_log()
        if not self:running() or bind_failure(log) then
            self:_reap()
            local line = bind_failure(self:_recent_log())
            if line then
                return nil, self:_failure("a port is held by another process (" .. line .. ")"), "bind"
            end
            return nil, self:_failure("etcd exited"), "exit"
        end
        local mine = false
        for line in log:gmatch("[^\n]*" .. serving .. "[^\n]*") do
            mine = mine or line:find(own, 1, true) ~= nil
        end
        if mine then
            local answer, err = self:http("/health")
            if answer and answer:find('"health":"true"', 1, true) then
                return true
            end
            last = "/health: " .. tostring(answer or err)
        end
        if now_ms() >= deadline then
            local state = mine and last or ("log does not say it serves clients on port " .. self.port)
            return nil, self:_failure("timed out (" .. state .. ")"), "timeout"
        end
        process.sleep(POLL_MS)
    end
end

--- Start the server and wait until it serves. A restart reuses the same
-- ports and data directory. When the ports were chosen automatically and
-- the first start finds one taken, new ones are chosen (and `port`,
-- `endpoint`, `url` change); a restart never moves.
-- @tparam[opt] number timeout_ms default 30000
-- @return self
-- @raise on failure, with the tail of the server's log
function Server:start(timeout_ms)
    self:_check_usable()
    if self:running() then
        return self
    end
    self:_reap()
    local t0 = now_ms()
    local deadline = t0 + (timeout_ms or self.start_timeout_ms)
    local attempt = 0
    while true do
        attempt = attempt + 1
        self:_launch()
        local ok, err, kind = self:_await(deadline)
        if ok then
            self.started = true
            self.start_ms = now_ms() - t0
            return self
        end
        self:_reap()
        if kind ~= "bind" or not self._auto_port or self.started
            or attempt >= MAX_START_ATTEMPTS or now_ms() >= deadline then
            error(err, 2)
        end
        -- A member that never started may restart on other ports; its
        -- data directory names its old peer URL, so it starts afresh.
        shell("rm -rf -- " .. quote(self.data_dir))
        self:_set_ports(ports.pick_port(), ports.pick_port())
    end
end

--- Stop and start again on the same ports with the same data.
-- @return self
function Server:restart(timeout_ms)
    self:stop()
    return self:start(timeout_ms)
end

--- The store's current revision (a number), or nil and an error.
function Server:revision()
    local answer, err = self:http("/v3/kv/range", '{"key":"AA=="}')
    local rev = answer and answer:match('"revision":"(%d+)"')
    if not rev then
        return nil, "etcd fixture: no revision in " .. tostring(answer or err)
    end
    return tonumber(rev)
end

--- Compacts the store's history up to `revision` (default: the current
-- one): watches asking for older revisions are then refused with
-- `compact_revision`.
-- @return true, or nil and the error
function Server:compact(revision)
    revision = revision or assert(self:revision())
    local answer, err = self:http("/v3/kv/compaction",
        string_format('{"revision":"%d","physical":true}', revision))
    if not answer or answer:find('"error"', 1, true) then
        return nil, "etcd fixture: compaction failed: " .. tostring(answer or err)
    end
    return true
end

--- Runs `etcdctl ARGS...` against this server: its output, or nil and
-- the output with the error.
-- @tparam {string,...} args e.g. {"get", "--prefix", "/x"}
function Server:ctl(args)
    local words = { "ETCDCTL_API=3", quote(_M.ETCDCTL), "--endpoints", quote(self.url),
                    "--command-timeout=3s" }
    for _, a in ipairs(args) do
        words[#words + 1] = quote(a)
    end
    local ok, out = shell(table.concat(words, " "))
    if not ok then
        return nil, out
    end
    return out
end

--- Stop the server and remove its directory. Idempotent.
function Server:destroy()
    if self._destroyed then
        return
    end
    self:stop()
    files.remove_temp_dir(self.dir)
    self._destroyed = true
    live[self] = nil
end

--- A server, not started yet.
-- @tparam[opt] table opts `port`, `peer_port` (chosen at random when
-- absent), `tmp_root` (default `$DISCO_TEST_TMPDIR`, else /tmp),
-- `start_timeout_ms` (30000), `etcd` (the binary)
function _M.server(opts)
    opts = opts or {}
    local root = opts.tmp_root or os.getenv("DISCO_TEST_TMPDIR") or "/tmp"
    local dir = files.make_temp_dir(root)
    local self = setmetatable({
        dir = dir,
        data_dir = dir .. "/data",
        log_path = dir .. "/etcd.log",
        start_timeout_ms = opts.start_timeout_ms or DEFAULT_START_TIMEOUT_MS,
        _etcd = opts.etcd or _M.ETCD,
        _auto_port = opts.port == nil and opts.peer_port == nil,
    }, Server)
    self:_set_ports(opts.port or ports.pick_port(), opts.peer_port or ports.pick_port())
    live[self] = true
    return self
end

--- Destroy every server this process created and has not destroyed yet.
function _M.destroy_all()
    local all = {}
    for server in pairs(live) do
        all[#all + 1] = server
    end
    for _, server in ipairs(all) do
        server:destroy()
    end
end

return _M
