--- The chaos suite's topology: a 3-server ZooKeeper ensemble on loopback,
-- providers (`disco provide`) and one consumer (spec/chaos/consumer.lua
-- under `disco run`), each its own process and each behind its own
-- fault_proxy, so that every client reaches every server through a route
-- the test can delay, blackhole or reset. Also the independent views the
-- test checks the consumer against: a fresh read of ZooKeeper and the
-- providers' real liveness (process running, dubbo heartbeat answered).
local cjson = require "cjson"
local files = require "disco.testing.files"
local helpers = require "spec.helpers"
local ports = require "disco.testing.ports"
local process = require "disco.testing.process"
local zookeeper = require "disco.testing.zookeeper"
local proxy = require "spec.support.chaos.proxy"

local _M = {}

_M.APP = "chaos"
_M.IFACE = "com.acme.Chaos"
_M.SERVICE_ID = "dubbo:" .. _M.IFACE .. ":1.0.0"

local now = helpers.core.hrtime

local Cluster = {}
Cluster.__index = Cluster

--- A cluster not started yet. `opts`: `providers` (3), `session_ms`,
-- `probe_ms`.
function _M.new(opts)
    return setmetatable({
        n_providers = opts.providers or 3,
        session_ms = opts.session_ms,
        probe_ms = opts.probe_ms,
        dir = helpers.tmpdir(),
        providers = {},
        proxies = {},
        procs = {}, -- every process started, for stop_all
        events = {}, -- the consumer's parsed output lines
        lists = {}, -- { t =, ports = { [port] = true }, n = }
        sessions = {},
        reasons = {},
        log_offset = 0,
        partial = "",
    }, Cluster)
end

function Cluster:_url(via)
    return "zookeeper://" .. via:connect_string() .. "?session_timeout=" .. self.session_ms
end

function Cluster:_proxy(name)
    local targets = {}
    for i, m in ipairs(self.ensemble.members) do
        targets[i] = m.port
    end
    local p = proxy.start(targets, self.dir .. "/proxy-" .. name .. ".log")
    p.name = name
    self.procs[#self.procs + 1] = p.proc
    self.proxies[name] = p
    return p
end

--- Starts the ensemble, the proxies, the providers and the consumer, and
-- waits until the consumer lists every provider.
function Cluster:start()
    self.ensemble = zookeeper.ensemble(3, { tick_time = 500 })
    self.ensemble:start()
    self.loop = assert(helpers.core.new_loop())
    -- The test's own ZooKeeper client reconnects noisily through every
    -- server fault; its log goes to a file beside the others.
    local log = assert(io.open(self.dir .. "/checker.log", "a"))
    self.checker_log = log
    self.loop:set_log_sink(function(level, component, message)
        log:write(level, " [", component, "] ", message, "\n")
    end)
    self.zk = assert(self.loop:zk({ hosts = self.ensemble.connect_string, session_timeout = 10000 }))
    for i = 1, self.n_providers do
        local p = { index = i, port = ports.pick_port(), name = "provider" .. i }
        p.proxy = self:_proxy(p.name)
        self.providers[i] = p
        self:start_provider(p)
    end
    for _, p in ipairs(self.providers) do
        self:await_registered(p)
    end
    self.consumer_proxy = self:_proxy("consumer")
    self.consumer_log = self.dir .. "/consumer.log"
    self.consumer = process.spawn({
        argv = { helpers.disco_bin, "run", "spec/chaos/consumer.lua", self:_url(self.consumer_proxy),
                 _M.SERVICE_ID, _M.APP, tostring(self.probe_ms) },
        log = self.consumer_log,
        env = { DISCO_LOG_LEVEL = "warn" },
    })
    self.procs[#self.procs + 1] = self.consumer
    self.consumer_started = now()
    local deadline = now() + 30000
    while now() < deadline do
        self:poll()
        local last = self.lists[#self.lists]
        -- Its session too: the expiry fault needs it.
        if last and last.n == self.n_providers and #self.sessions > 0 then
            return self
        end
        process.sleep(50)
    end
    error("the consumer never listed every provider and its session:\n" .. self:consumer_tail())
end

--- Starts (or restarts) provider `p`; it counts as live from now.
function Cluster:start_provider(p)
    p.log = self.dir .. "/" .. p.name .. ".log"
    local f = io.open(p.log, "a")
    f:write("--- start at ", now(), "\n")
    f:close()
    p.log_offset = #(helpers.read_file(p.log) or "")
    p.proc = process.spawn({
        argv = { helpers.disco_bin, "provide", "--registry", self:_url(p.proxy), "--app", _M.APP,
                 "--host", "127.0.0.1", "--port", tostring(p.port), "--service", _M.IFACE .. ":1.0.0",
                 "--method", "ping", "--storage", "local" },
        log = p.log,
    })
    self.procs[#self.procs + 1] = p.proc
end

--- Waits (bounded) until provider `p` printed its "registered" line.
function Cluster:await_registered(p, ms)
    local deadline = now() + (ms or 30000)
    while now() < deadline do
        local text = (helpers.read_file(p.log) or ""):sub(p.log_offset + 1)
        if text:find("registered ", 1, true) then
            return true
        end
        if not self:proc_alive(p.proc) then
            break
        end
        process.sleep(25)
    end
    error(p.name .. " did not register:\n" .. (helpers.read_file(p.log) or ""))
end

function Cluster.proc_alive(_, proc)
    return proc ~= nil and process.alive(proc.pid, proc.start_time)
end

--- Whether a process runs (alive and not stopped by a signal).
function Cluster:proc_running(proc)
    if not self:proc_alive(proc) then
        return false
    end
    local st = process.stat(proc.pid)
    return st ~= nil and st.state ~= "T" and st.state ~= "t"
end

--- Reads the consumer's new output lines into events, lists, sessions.
function Cluster:poll()
    local text = files.read_file(self.consumer_log, self.log_offset) or ""
    self.log_offset = self.log_offset + #text
    text = self.partial .. text
    local last_nl = 0
    for line, stop in text:gmatch("([^\n]*)\n()") do
        last_nl = stop - 1
        local ok, ev = pcall(cjson.decode, line)
        if ok and type(ev) == "table" and ev.ev then
            if ev.ev == "list" then
                local set = {}
                for _, port in ipairs(type(ev.ports) == "table" and ev.ports or {}) do
                    set[port] = true
                end
                self.lists[#self.lists + 1] = { t = ev.t, ports = set, n = ev.n }
            elseif ev.ev == "session" then
                self.sessions[#self.sessions + 1] = ev
            elseif ev.ev == "reasons" then
                self.reasons[#self.reasons + 1] = ev
            end
        end
    end
    self.partial = text:sub(last_nl + 1)
end

--- The last lines of the consumer's output, for failure messages.
function Cluster:consumer_tail()
    local text = helpers.read_file(self.consumer_log) or ""
    return text:sub(-3000)
end

--- Ports the consumer lists now (its last delivered list).
function Cluster:consumer_ports()
    self:poll()
    local last = self.lists[#self.lists]
    return last and last.ports or {}
end

--- Whether provider `p` really serves: running and answering a dubbo
-- heartbeat on its port within `ms`.
function Cluster:provider_answers(p, ms)
    if not self:proc_running(p.proc) then
        return false
    end
    local client = assert(self.loop:dubbo_client({ host = "127.0.0.1", port = p.port, timeout = ms }))
    local done, answered = false, false
    client:heartbeat(function(err)
        done, answered = true, err == nil
    end, ms)
    helpers.run_until(self.loop, function() return done end, ms + 1000)
    client:close()
    self.loop:step()
    return answered
end

--- A fresh read of the registry: `{ [port] = instance JSON table }`, or
-- nil and an error.
function Cluster:zk_instances()
    local path = "/services/" .. _M.APP
    local res, cerr
    local sent, serr = self.zk:children(path, nil, function(err, r) cerr, res = err or false, r end)
    if not sent then
        return nil, serr -- the test's own session is between two handles
    end
    if not helpers.run_until(self.loop, function() return cerr ~= nil end, 5000) then
        return nil, "getChildren timed out"
    end
    if cerr then
        return nil, cerr
    end
    local out, pending, failure = {}, #res.children, nil
    for _, child in ipairs(res.children) do
        local ok, gerr = self.zk:get(path .. "/" .. child, nil, function(err, r)
            pending = pending - 1
            if err then
                -- A node that went between the two reads is simply gone.
                if not err:match("^ENONODE") then
                    failure = err
                end
                return
            end
            local ok, inst = pcall(cjson.decode, r.data or "")
            local port = tonumber(child:match(":(%d+)$"))
            if not ok or type(inst) ~= "table" or inst.port ~= port then
                failure = "bad instance data at " .. child .. ": " .. tostring(r.data)
            else
                out[port] = inst
            end
        end)
        if not ok then
            return nil, gerr
        end
    end
    if not helpers.run_until(self.loop, function() return pending == 0 end, 10000) then
        return nil, "getData timed out"
    end
    if failure then
        return nil, failure
    end
    return out
end

--- The consumer's open file descriptors and resident memory (KiB).
function Cluster:consumer_resources()
    local pid = self.consumer.pid
    local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
    local fds = tonumber(p:read("*a"))
    p:close()
    local status = helpers.read_file("/proc/" .. pid .. "/status") or ""
    return fds, tonumber(status:match("VmRSS:%s*(%d+)"))
end

-- What in a process's output means it broke: a Lua error that reached a
-- callback, a sanitizer report, a crash.
local BROKEN = { "stack traceback", "AddressSanitizer", "LeakSanitizer", "runtime error:",
                 "Segmentation fault", "PANIC" }

--- Lines of the consumer's and providers' output, written since the last
-- call, that show a failure (see BROKEN).
function Cluster:broken_lines()
    self.scan_offsets = self.scan_offsets or {}
    local found = {}
    local logs = { self.consumer_log }
    for _, p in ipairs(self.providers) do
        logs[#logs + 1] = p.log
    end
    for _, path in ipairs(logs) do
        local offset = self.scan_offsets[path] or 0
        local text = files.read_file(path, offset) or ""
        local complete = text:match("^.*\n") or ""
        self.scan_offsets[path] = offset + #complete
        for line in complete:gmatch("[^\n]+") do
            for _, needle in ipairs(BROKEN) do
                if line:find(needle, 1, true) then
                    found[#found + 1] = path:match("[^/]+$") .. ": " .. line
                    break
                end
            end
        end
    end
    return found
end

--- Stops the providers, then the consumer, with SIGTERM as an operator
-- would; returns what went wrong: a process that does not exit within
-- 15 s, registrations left in ZooKeeper.
function Cluster:shutdown()
    local problems = {}
    for _, p in ipairs(self.providers) do
        process.signal(p.proc.pid, "TERM")
    end
    for _, p in ipairs(self.providers) do
        if not process.wait_dead(p.proc.pid, 15000, p.proc.start_time) then
            problems[#problems + 1] = p.name .. " did not exit within 15 s of SIGTERM"
        end
    end
    local left, err
    local deadline = now() + 10000
    repeat
        left, err = self:zk_instances()
        if left and next(left) == nil then
            break
        end
        process.sleep(100)
    until now() > deadline
    if not left then
        problems[#problems + 1] = "registry read failed after the providers stopped: " .. tostring(err)
    elseif next(left) ~= nil then
        for port in pairs(left) do
            problems[#problems + 1] = "ZooKeeper still lists " .. port .. " 10 s after its provider stopped"
        end
    end
    process.signal(self.consumer.pid, "TERM")
    if not process.wait_dead(self.consumer.pid, 15000, self.consumer.start_time) then
        problems[#problems + 1] = "the consumer did not exit within 15 s of SIGTERM"
    end
    return problems
end

--- Copies the processes' output and the servers' logs to `dest` (for a
-- failed run: the run's temporary directory goes when it ends).
function Cluster:keep_logs(dest)
    local parts = { "rm -rf " .. process.quote(dest), "mkdir -p " .. process.quote(dest),
                    "cp " .. process.quote(self.dir) .. "/*.log " .. process.quote(dest) .. "/" }
    for _, m in ipairs(self.ensemble and self.ensemble.members or {}) do
        parts[#parts + 1] = "cp " .. process.quote(m.log_path) .. " "
            .. process.quote(dest .. "/zookeeper-" .. m.myid .. ".log")
    end
    process.shell(table.concat(parts, " && "))
end

--- Ends every process this cluster started, by pid, and the ensemble.
function Cluster:stop_all()
    for _, proc in ipairs(self.procs) do
        if process.alive(proc.pid, proc.start_time) then
            process.signal(proc.pid, "CONT")
            process.signal(proc.pid, "KILL")
            process.wait_dead(proc.pid, 5000, proc.start_time)
        end
    end
    if self.zk then
        self.zk:close()
    end
    if self.loop then
        self.loop:close()
    end
    if self.checker_log then
        self.checker_log:close()
    end
    if self.ensemble then
        for _, m in ipairs(self.ensemble.members) do
            if m:running() and m.paused then
                m:resume()
            end
        end
        self.ensemble:destroy()
    end
end

return _M
