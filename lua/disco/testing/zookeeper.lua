--- Real ZooKeeper servers for integration tests.
--
-- Like Curator's TestingServer or kazoo.testing: a standalone server or a
-- loopback ensemble, each member in its own temporary directory, started
-- from Debian's zookeeper package with a small JVM footprint.
--
-- A server only counts as started when *its own* process serves: its pid is
-- alive, its log says it bound the client port, `conf` on that port reports
-- its own data directory and `srvr` reports a mode. The port alone proves
-- nothing: when the port is taken, the new JVM dies with a BindException
-- while `ruok` keeps answering `imok` from the other process.
--
-- Every process is started through @{disco.testing.process}, so a watchdog
-- kills it if the test runner dies, and its process group is listed in
-- `$DISCO_TEST_PIDFILE` when that is set. Nothing here signals a process it
-- did not start: identities are (pid, start time) pairs.
--
--     local zookeeper = require("disco.testing.zookeeper")
--     local zk = zookeeper.server():start()
--     -- ... connect to zk.connect_string ...
--     zk:destroy()
--
-- @module disco.testing.zookeeper

local process = require("disco.testing.process")

local _M = {}

local quote = process.quote
local now_ms = process.now_ms
local string_format = string.format
local table_concat = table.concat
local tonumber = tonumber
local tostring = tostring
local type = type

local MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
local CLI_CLASS = "org.apache.zookeeper.ZooKeeperMain"

--- Default classpath. zookeeper.jar's manifest pulls in its other jars;
-- slf4j-log4j12 and log4j 1.2 are needed or the server logs nothing, and the
-- readiness check reads the log.
_M.DEFAULT_CLASSPATH = {
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
}

--- Default JVM options: a small heap, one GC thread, the C1 compiler only
-- (faster start, plenty for a test server), and no hsperfdata files in /tmp.
_M.DEFAULT_JAVA_OPTS = {
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-Xss512k",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.net.preferIPv4Stack=true",
}

--- Four-letter words the servers accept. `dump` (sessions and their
-- ephemerals) and `wchc`/`wchs` (watches) let specs check server-side state
-- without a client.
_M.FOUR_LETTER_WORDS = "srvr,ruok,mntr,conf,cons,stat,dump,wchs,wchc,envi,isro"

local PORT_MIN, PORT_MAX = 20000, 59999
-- A bind failure on an auto-chosen port is retried with fresh ports this many
-- times in all; more failures mean something else is wrong.
local MAX_START_ATTEMPTS = 5
local DEFAULT_START_TIMEOUT_MS = 30000
-- How long a stopped server may take to exit after SIGTERM before the group
-- is killed. A JVM normally exits in well under a second.
local STOP_GRACE_MS = 10000
local POLL_MS = 50
-- Readiness probes must not hang on a server that is still starting.
local PROBE_TIMEOUT_MS = 1000
local LOG_TAIL_LINES = 25

-- Servers and ensembles not destroyed yet, for destroy_all().
local live = {}

-- Ports handed out by this process. A port is kept for the lifetime of the
-- Lua process so that two fixtures never race for the same port before
-- either has bound it.
local reserved = {}

local function read_file(path, offset)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    if offset and offset > 0 then
        f:seek("set", offset)
    end
    local data = f:read("*a")
    f:close()
    return data
end

local function file_size(path)
    local f = io.open(path, "rb")
    if not f then
        return 0
    end
    local size = f:seek("end")
    f:close()
    return size or 0
end

local function write_file(path, data)
    local f, err = io.open(path, "wb")
    if not f then
        error("zookeeper fixture: cannot write " .. path .. ": " .. tostring(err), 3)
    end
    f:write(data)
    f:close()
end

-- Run a shell command and report whether it succeeded, with its output.
-- The marker avoids depending on how this Lua reports exit statuses.
local function shell(cmd)
    local p = io.popen("{ " .. cmd .. "; } 2>&1 && echo __disco_ok")
    local out = p:read("*a") or ""
    p:close()
    local ok = out:find("__disco_ok\n$") ~= nil
    return ok, (out:gsub("__disco_ok\n$", ""))
end

local function tail(text, n)
    if not text or text == "" then
        return "(empty)"
    end
    local lines = {}
    for line in text:gmatch("[^\n]+") do
        lines[#lines + 1] = line
    end
    local first = math.max(1, #lines - n + 1)
    return table_concat(lines, "\n", first)
end

local function random_u32()
    local f = io.open("/dev/urandom", "rb")
    if f then
        local b = f:read(4)
        f:close()
        if b and #b == 4 then
            local b1, b2, b3, b4 = b:byte(1, 4)
            return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
        end
    end
    -- Not cryptographic, only needs to differ between concurrent runs.
    return (process.self_pid() * 7919 + math.floor(now_ms())) % 4294967296
end

-- Every local TCP port in use in this network namespace, in any state.
local function ports_in_use()
    local used, readable = {}, false
    for _, path in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
        local f = io.open(path, "r")
        if f then
            readable = true
            for line in f:lines() do
                local hex = line:match("^%s*%d+:%s+%x+:(%x+)%s")
                if hex then
                    used[tonumber(hex, 16)] = true
                end
            end
            f:close()
        end
    end
    return used, readable
end

local function port_answers(port)
    local ok = shell(string_format(
        "timeout 1 bash -c %s",
        quote("exec 3<>/dev/tcp/127.0.0.1/" .. port)))
    return ok
end

-- Candidate port ranges: 20000-59999 minus the kernel's ephemeral range,
-- because an outgoing connection may take an ephemeral port between our
-- choice and the server's bind. Falls back to the whole range when the
-- difference is too small.
local function port_ranges()
    local ranges = {}
    local data = read_file("/proc/sys/net/ipv4/ip_local_port_range")
    local lo, hi = (data or ""):match("(%d+)%s+(%d+)")
    lo, hi = tonumber(lo), tonumber(hi)
    local total = 0
    if lo and hi then
        if lo - 1 >= PORT_MIN then
            local top = math.min(lo - 1, PORT_MAX)
            ranges[#ranges + 1] = { PORT_MIN, top }
            total = total + top - PORT_MIN + 1
        end
        if hi + 1 <= PORT_MAX then
            local bottom = math.max(hi + 1, PORT_MIN)
            ranges[#ranges + 1] = { bottom, PORT_MAX }
            total = total + PORT_MAX - bottom + 1
        end
    end
    if total < 1000 then
        return { { PORT_MIN, PORT_MAX } }, PORT_MAX - PORT_MIN + 1
    end
    return ranges, total
end

--- Choose a free-looking loopback port and reserve it for this process.
-- A port nobody listens on now may still be taken before the server binds
-- it; the server's start() detects that and retries.
-- @treturn number
function _M.pick_port()
    local ranges, total = port_ranges()
    local used, readable = ports_in_use()
    for _ = 1, 500 do
        local k = random_u32() % total
        local port
        for _, r in ipairs(ranges) do
            local size = r[2] - r[1] + 1
            if k < size then
                port = r[1] + k
                break
            end
            k = k - size
        end
        if not reserved[port] and not used[port]
            and (readable or not port_answers(port)) then
            reserved[port] = true
            return port
        end
    end
    error("zookeeper fixture: no free port found in " .. PORT_MIN .. "-" .. PORT_MAX)
end

--- Send a four-letter word to a port on 127.0.0.1.
-- @tparam number port
-- @tparam string cmd e.g. "srvr", "conf", "ruok"
-- @tparam[opt=2000] number timeout_ms bound on connect plus answer
-- @treturn string|nil the answer
-- @treturn[opt] string "timeout", "connection refused" or "no answer"
function _M.four_letter(port, cmd, timeout_ms)
    port = tonumber(port)
    if not port or port < 1 or port > 65535 or port ~= math.floor(port) then
        error("zookeeper.four_letter: invalid port " .. tostring(port), 2)
    end
    if type(cmd) ~= "string" or not cmd:match("^%l%l%l%l$") then
        error("zookeeper.four_letter: invalid command " .. tostring(cmd), 2)
    end
    local secs = string_format("%.3f", (timeout_ms or 2000) / 1000)
    -- bash execs cat so that timeout signals the process that blocks on the
    -- socket; a cat left behind would hold our pipe open forever.
    local script = "exec 3<>/dev/tcp/127.0.0.1/" .. port
        .. " && printf %s " .. cmd .. " >&3 && exec cat <&3"
    local p = io.popen("timeout -k 1 " .. secs .. " bash -c " .. quote(script)
        .. " 2>/dev/null; printf '\\n__disco_rc=%d\\n' \"$?\"")
    local out = p:read("*a") or ""
    p:close()
    local answer, rc = out:match("^(.*)\n__disco_rc=(%d+)\n$")
    rc = tonumber(rc)
    if rc == 0 and answer ~= "" then
        return answer
    elseif rc == 0 then
        return nil, "no answer"
    elseif rc == 124 or rc == 137 then
        return nil, "timeout"
    end
    return nil, "connection refused"
end

--- Run one zkCli command (org.apache.zookeeper.ZooKeeperMain) and return
-- its output, for checking server state independently of disco's client.
-- Takes about half a second (a JVM start).
-- @tparam string connect_string
-- @tparam {string,...} args e.g. `{"create", "/x", "data"}`
-- @tparam[opt] table opts `timeout_ms` (15000), `classpath`, `java`
-- @treturn string|nil output (stdout and stderr, log lines excluded)
-- @treturn[opt] string error
function _M.cli(connect_string, args, opts)
    opts = opts or {}
    local secs = string_format("%.3f", (opts.timeout_ms or 15000) / 1000)
    local argv = {
        opts.java or "java", "-Xmx64m", "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
        "-cp", table_concat(opts.classpath or _M.DEFAULT_CLASSPATH, ":"),
        CLI_CLASS, "-server", connect_string,
    }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    local words = {}
    for i, a in ipairs(argv) do
        words[i] = quote(a)
    end
    -- No sanitizer preload (`make asan`) may reach the JVM.
    local p = io.popen("env -u LD_PRELOAD timeout -k 1 " .. secs .. " " .. table_concat(words, " ")
        .. " </dev/null 2>&1; printf '\\n__disco_rc=%d\\n' \"$?\"")
    local out = p:read("*a") or ""
    p:close()
    local text, rc = out:match("^(.*)\n__disco_rc=(%d+)\n$")
    rc = tonumber(rc)
    if rc == 124 or rc == 137 then
        return nil, "timeout"
    end
    local kept = {}
    for line in (text or ""):gmatch("[^\n]*") do
        -- Drop the client's log and connection chatter, keep the answer.
        if line ~= "" and not line:match("^log4j:")
            and not line:match("^Connecting to ")
            and not line:match("^WATCHER::$")
            and not line:match("^WatchedEvent state:") then
            kept[#kept + 1] = line
        end
    end
    return table_concat(kept, "\n")
end

local function copy_list(list)
    local out = {}
    for i, v in ipairs(list or {}) do
        out[i] = v
    end
    return out
end

-- Extra cfg lines: a list of "key=value" strings or a map, applied after the
-- defaults so they override them (later keys win in java.util.Properties).
local function cfg_lines(extra)
    local lines = {}
    if type(extra) ~= "table" then
        return lines
    end
    for _, line in ipairs(extra) do
        lines[#lines + 1] = tostring(line)
    end
    local keys = {}
    for k in pairs(extra) do
        if type(k) == "string" then
            keys[#keys + 1] = k
        end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
        lines[#lines + 1] = k .. "=" .. tostring(extra[k])
    end
    return lines
end

local function make_temp_dir(root)
    if root:sub(1, 1) ~= "/" then
        root = (os.getenv("PWD") or ".") .. "/" .. root
    end
    -- Java properties files treat a backslash as an escape.
    if root:find("[\\\n]") then
        error("zookeeper fixture: unusable temp root " .. root, 3)
    end
    local ok, out = shell("mktemp -d " .. quote(root .. "/disco-zk-XXXXXXXX"))
    local dir = ok and out:match("^(/[^\n]*/disco%-zk%-[%w]+)\n?$")
    if not dir then
        error("zookeeper fixture: mktemp failed under " .. root .. ": " .. out, 3)
    end
    return dir
end

local function remove_temp_dir(dir)
    -- Only ever delete what make_temp_dir created.
    if dir and dir:match("^/.*/disco%-zk%-[%w]+$") then
        shell("rm -rf -- " .. quote(dir))
    end
end

local Server = {}
Server.__index = Server

local function new_server(opts)
    local root = opts.tmp_root or os.getenv("DISCO_TEST_TMPDIR") or "/tmp"
    local dir = make_temp_dir(root)
    local self = setmetatable({
        dir = dir,
        data_dir = dir .. "/data",
        log_path = dir .. "/zookeeper.log",
        -- The JVM's own stdout and stderr (crashes, bad options).
        out_path = dir .. "/zookeeper.out",
        cfg_path = dir .. "/zoo.cfg",
        tick_time = opts.tick_time or 2000,
        start_timeout_ms = opts.start_timeout_ms or DEFAULT_START_TIMEOUT_MS,
        _java = opts.java or "java",
        _java_opts = copy_list(opts.java_opts or _M.DEFAULT_JAVA_OPTS),
        _classpath = copy_list(opts.classpath or _M.DEFAULT_CLASSPATH),
        _extra_cfg = cfg_lines(opts.cfg),
        _auto_port = opts.port == nil,
    }, Server)
    local ok, out = shell("mkdir " .. quote(self.data_dir))
    if not ok then
        remove_temp_dir(dir)
        error("zookeeper fixture: cannot create " .. self.data_dir .. ": " .. out, 3)
    end
    self:_set_port(opts.port or _M.pick_port())
    return self
end

function Server:_set_port(port)
    self.port = port
    self.connect_string = "127.0.0.1:" .. port
end

function Server:_config_text()
    local lines = {
        "# Written by disco.testing.zookeeper on every start.",
        "tickTime=" .. self.tick_time,
        "dataDir=" .. self.data_dir,
        "clientPort=" .. self.port,
        "clientPortAddress=127.0.0.1",
        -- Otherwise Jetty grabs :8080 and two servers collide.
        "admin.enableServer=false",
        "4lw.commands.whitelist=" .. _M.FOUR_LETTER_WORDS,
        -- The default of 60 per IP is easy to reach from loopback tests.
        "maxClientCnxns=0",
        -- Data still survives a killed JVM (it is in the page cache); only
        -- a machine crash could lose it, which tests do not simulate.
        "forceSync=no",
    }
    local quorum = self._quorum
    if quorum then
        lines[#lines + 1] = "initLimit=" .. quorum.init_limit
        lines[#lines + 1] = "syncLimit=" .. quorum.sync_limit
        for _, s in ipairs(quorum.servers) do
            lines[#lines + 1] = string_format("server.%d=127.0.0.1:%d:%d",
                s.id, s.peer_port, s.election_port)
        end
    end
    for _, line in ipairs(self._extra_cfg) do
        lines[#lines + 1] = line
    end
    return table_concat(lines, "\n") .. "\n"
end

function Server:_log4j_text()
    return table_concat({
        "log4j.rootLogger=INFO, FILE",
        "log4j.appender.FILE=org.apache.log4j.FileAppender",
        "log4j.appender.FILE.File=" .. self.log_path,
        -- Restarts append, so the log shows a server's whole history.
        "log4j.appender.FILE.Append=true",
        "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.FILE.layout.ConversionPattern="
            .. "%d{ISO8601} [myid:%X{myid}] %-5p [%t:%C{1}@%L] - %m%n",
        "",
    }, "\n")
end

function Server:_check_usable()
    if self._destroyed then
        error("zookeeper fixture: server used after destroy()", 3)
    end
end

-- Write the configuration and start the JVM without waiting for it.
function Server:_launch()
    write_file(self.cfg_path, self:_config_text())
    write_file(self.dir .. "/log4j.properties", self:_log4j_text())
    if self.myid then
        write_file(self.data_dir .. "/myid", self.myid .. "\n")
    end
    -- Only this run's part of the appended log counts as evidence.
    self._log_offset = file_size(self.log_path)
    self._out_offset = file_size(self.out_path)

    local argv = { self._java }
    for _, o in ipairs(self._java_opts) do
        argv[#argv + 1] = o
    end
    -- The directory comes first so that log4j finds our log4j.properties.
    argv[#argv + 1] = "-cp"
    argv[#argv + 1] = self.dir .. ":" .. table_concat(self._classpath, ":")
    argv[#argv + 1] = MAIN_CLASS
    argv[#argv + 1] = self.cfg_path
    self._proc = process.spawn({ argv = argv, cwd = self.dir, log = self.out_path })
    self.pid = self._proc.pid
    self.pgid = self._proc.pgid
    self.paused = false
end

-- The log written since the last launch.
function Server:_recent_log()
    return read_file(self.log_path, self._log_offset) or ""
end

local function bind_failure(log)
    return log:match("[^\n]*BindException[^\n]*")
        or log:match("[^\n]*Address already in use[^\n]*")
end

function Server:_failure(reason)
    return string_format(
        "zookeeper fixture: server in %s (client port %d) did not start: %s\n"
            .. "--- last lines of %s ---\n%s\n--- %s ---\n%s",
        self.dir, self.port, reason,
        self.log_path, tail(self:_recent_log(), LOG_TAIL_LINES),
        self.out_path, tail(read_file(self.out_path, self._out_offset), 10))
end

-- Why a launched server failed, for errors. Reaps the process first: only
-- then can an answer on the port be known to come from another process.
-- kind is "bind" when the log shows a bind failure (worth retrying on other
-- ports), else "exit".
function Server:_diagnose()
    self:_reap()
    local line = bind_failure(self:_recent_log())
    if not line then
        return "its JVM exited", "exit"
    end
    local reason = "its JVM failed to bind a port (" .. line:gsub("^%s+", "")
        .. "); another process holds it"
    local answer = _M.four_letter(self.port, "ruok", PROBE_TIMEOUT_MS)
    if answer then
        reason = reason .. " (port " .. self.port .. " still answers '"
            .. answer .. "', from that other process)"
    end
    return reason, "bind"
end

-- Wait until this server's own process serves with a mode in `modes`.
-- Returns true, or nil, message, kind ("bind", "exit" or "timeout").
function Server:_await(deadline, modes)
    local bind_line = "binding to port /127.0.0.1:" .. self.port
    local own_data = "dataDir=" .. self.data_dir .. "/version-2"
    local bound, confirmed = false, false
    local last = "no answer yet"
    while true do
        local log = self:_recent_log()
        -- A JVM that logged a bind failure is as good as dead: standalone
        -- servers exit right after, ensemble members may linger without a
        -- quorum port.
        if not self:running() or bind_failure(log) then
            local reason, kind = self:_diagnose()
            return nil, self:_failure(reason), kind
        end
        bound = bound or log:find(bind_line, 1, true) ~= nil
        if bound and not confirmed then
            local conf, err = self:four_letter("conf", PROBE_TIMEOUT_MS)
            confirmed = conf ~= nil and conf:find(own_data, 1, true) ~= nil
            last = conf and ("conf answered without " .. own_data) or ("conf: " .. err)
        end
        if confirmed then
            local answer, err = self:four_letter("srvr", PROBE_TIMEOUT_MS)
            local mode = answer and answer:match("Mode: (%a+)")
            if mode and modes[mode] then
                return true
            end
            last = "srvr: " .. (answer and answer:gsub("%s+$", "") or err)
        end
        if now_ms() >= deadline then
            local state = bound and last or ("log does not say '" .. bind_line .. "' yet")
            return nil, self:_failure("timed out (" .. state .. ")"), "timeout"
        end
        process.sleep(POLL_MS)
    end
end

-- Kill whatever is left of the process group and forget the process.
function Server:_reap()
    local proc = self._proc
    if not proc then
        return
    end
    if process.group_is_ours(proc) then
        process.kill_group(proc.pgid, "KILL")
    end
    process.wait_dead(proc.pid, 5000, proc.start_time)
    process.wait_dead(proc.pgid, 2000, proc.leader_start)
    self._proc = nil
    self.pid = nil
    self.pgid = nil
    self.paused = false
end

-- Ask the JVM to exit, without waiting.
function Server:_request_stop()
    local proc = self._proc
    if proc and process.alive(proc.pid, proc.start_time) then
        process.signal(proc.pid, "TERM")
        -- A paused JVM keeps SIGTERM pending until it runs again.
        process.signal(proc.pid, "CONT")
    end
end

function Server:_finish_stop()
    local proc = self._proc
    if proc then
        process.wait_dead(proc.pid, STOP_GRACE_MS, proc.start_time)
        self:_reap()
    end
end

local STANDALONE_MODES = { standalone = true }
local QUORUM_MODES = { leader = true, follower = true, observer = true }

--- Start the server and wait until it serves.
-- Restarts reuse the same directory and data. When the port was chosen
-- automatically and another process holds it, a new port is chosen and
-- `port`/`connect_string` change.
-- @tparam[opt] number timeout_ms default 30000
-- @return self
-- @raise on failure, with the tail of the server's log
function Server:start(timeout_ms)
    self:_check_usable()
    if self:running() then
        return self
    end
    -- A server that died on its own may have left its watchdog running.
    self:_reap()
    local t0 = now_ms()
    local deadline = t0 + (timeout_ms or self.start_timeout_ms)
    local modes = self._quorum and QUORUM_MODES or STANDALONE_MODES
    local attempt = 0
    while true do
        attempt = attempt + 1
        self:_launch()
        local ok, err, kind = self:_await(deadline, modes)
        if ok then
            self.start_ms = now_ms() - t0
            return self
        end
        self:_reap()
        -- Ensemble members share their ports with their peers' configs, so
        -- only the ensemble can choose new ones.
        if kind ~= "bind" or not self._auto_port or self._quorum
            or attempt >= MAX_START_ATTEMPTS or now_ms() >= deadline then
            error(err, 2)
        end
        self:_set_port(_M.pick_port())
    end
end

--- Stop the server: SIGTERM, wait, then SIGKILL its process group.
-- Keeps the data. Does nothing when it is not running.
-- @return self
function Server:stop()
    self:_request_stop()
    self:_finish_stop()
    return self
end

--- Kill the server with SIGKILL, like a crash. Keeps the data.
-- @return self
function Server:kill()
    local proc = self._proc
    if proc and process.alive(proc.pid, proc.start_time) then
        process.signal(proc.pid, "KILL")
    end
    self:_reap()
    return self
end

local function require_running(self, what)
    if not self:running() then
        error("zookeeper fixture: " .. what .. "() on a server that is not running", 3)
    end
end

--- Freeze the JVM with SIGSTOP, like a long GC pause or a hung VM.
-- Its port still accepts connections, but nothing answers.
-- @return self
function Server:pause()
    require_running(self, "pause")
    process.signal(self.pid, "STOP")
    self.paused = true
    return self
end

--- Continue a paused JVM with SIGCONT.
-- @return self
function Server:resume()
    require_running(self, "resume")
    process.signal(self.pid, "CONT")
    self.paused = false
    return self
end

--- Whether this server's JVM is alive (paused counts as alive).
-- @treturn boolean
function Server:running()
    local proc = self._proc
    return proc ~= nil and process.alive(proc.pid, proc.start_time)
end

--- Send a four-letter word to this server's client port.
-- @tparam string cmd
-- @tparam[opt=2000] number timeout_ms
-- @treturn string|nil answer
-- @treturn[opt] string error
function Server:four_letter(cmd, timeout_ms)
    return _M.four_letter(self.port, cmd, timeout_ms)
end

--- The server's mode from `srvr`: "standalone", "leader" or "follower".
-- @tparam[opt=2000] number timeout_ms
-- @treturn string|nil mode
-- @treturn[opt] string error, or the answer when it has no mode
function Server:mode(timeout_ms)
    local answer, err = self:four_letter("srvr", timeout_ms)
    if not answer then
        return nil, err
    end
    local mode = answer:match("Mode: (%a+)")
    if not mode then
        return nil, (answer:gsub("%s+$", ""))
    end
    return mode
end

--- Run one zkCli command against this server (see @{cli}).
-- @tparam {string,...} args
-- @tparam[opt] table opts
-- @treturn string|nil output
-- @treturn[opt] string error
function Server:cli(args, opts)
    opts = opts or {}
    opts.classpath = opts.classpath or self._classpath
    opts.java = opts.java or self._java
    return _M.cli(self.connect_string, args, opts)
end

--- Stop the server and remove its directory. Idempotent.
function Server:destroy()
    if self._destroyed then
        return
    end
    self:stop()
    remove_temp_dir(self.dir)
    self._destroyed = true
    live[self] = nil
end

--- A standalone server, not started yet.
-- @tparam[opt] table opts
-- @tparam[opt] number opts.port client port; chosen at random in
--   20000-59999 when absent (and then re-chosen on a bind failure)
-- @tparam[opt=2000] number opts.tick_time
-- @tparam[opt] {string,...} opts.java_opts replaces @{DEFAULT_JAVA_OPTS}
-- @tparam[opt] {string,...} opts.classpath replaces @{DEFAULT_CLASSPATH}
-- @tparam[opt] string opts.java the java binary ("java")
-- @tparam[opt] table opts.cfg extra zoo.cfg lines ({"k=v", ...} or {k=v})
-- @tparam[opt] string opts.tmp_root parent of the temp dir; default
--   `$DISCO_TEST_TMPDIR`, else /tmp
-- @tparam[opt=30000] number opts.start_timeout_ms
-- @return a server object; see the Server methods
function _M.server(opts)
    local self = new_server(opts or {})
    live[self] = true
    return self
end

local Ensemble = {}
Ensemble.__index = Ensemble

function Ensemble:_assign_ports()
    local parts = {}
    for i, m in ipairs(self.members) do
        m:_set_port(_M.pick_port())
        m.peer_port = _M.pick_port()
        m.election_port = _M.pick_port()
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

--- Run one zkCli command against the ensemble (see @{cli}).
-- @tparam {string,...} args
-- @tparam[opt] table opts
-- @treturn string|nil output
-- @treturn[opt] string error
function Ensemble:cli(args, opts)
    return _M.cli(self.connect_string, args, opts)
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
-- @tparam[opt] table opts as for @{server} (except `port`), plus
--   `init_limit` (10) and `sync_limit` (4); `tick_time` defaults to 500
-- @return an ensemble object with `members`, `connect_string`, `start`,
--   `stop`, `destroy`, `leader`, `wait_for_leader`, `cli`
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

--- Destroy every server and ensemble this process created and has not
-- destroyed yet; for a suite's teardown.
function _M.destroy_all()
    local all = {}
    for obj in pairs(live) do
        all[#all + 1] = obj
    end
    -- Ensembles first: they own their members.
    table.sort(all, function(a, b)
        return (a.members and 0 or 1) < (b.members and 0 or 1)
    end)
    for _, obj in ipairs(all) do
        obj:destroy()
    end
end

return _M
