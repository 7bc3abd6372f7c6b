--- One ZooKeeper server of the test fixture: its directory, its
-- configuration, its JVM and the checks that it serves.
--
-- Public through @{disco.testing.zookeeper}; ensemble members are servers
-- too, so this module also lends @{disco.testing.zookeeper.ensemble} what it
-- shares with them (see the end of the file).
--
-- @module disco.testing.zookeeper.server

local files = require("disco.testing.files")
local ports = require("disco.testing.ports")
local process = require("disco.testing.process")
local commands = require("disco.testing.zookeeper.commands")
local jvm = require("disco.testing.zookeeper.jvm")
local server_process = require("disco.testing.server_process")

local _M = {}

local quote = process.quote
local now_ms = process.now_ms
local shell = process.shell
local read_file = files.read_file
local file_size = files.file_size
local write_file = files.write_file
local tail = files.tail
local make_temp_dir = files.make_temp_dir
local remove_temp_dir = files.remove_temp_dir
local string_format = string.format
local table_concat = table.concat
local tostring = tostring
local type = type

local MAIN_CLASS = jvm.MAIN_CLASS

--- Four-letter words the servers accept. `dump` (sessions and their
-- ephemerals) and `wchc`/`wchs` (watches) let specs check server-side state
-- without a client.
_M.FOUR_LETTER_WORDS = "srvr,ruok,mntr,conf,cons,stat,dump,wchs,wchc,envi,isro"

-- A bind failure on an auto-chosen port is retried with fresh ports this many
-- times in all; more failures mean something else is wrong.
local MAX_START_ATTEMPTS = 5
local DEFAULT_START_TIMEOUT_MS = 30000
local POLL_MS = 50
-- Readiness probes must not hang on a server that is still starting.
local PROBE_TIMEOUT_MS = 1000
local LOG_TAIL_LINES = 25

-- Servers and ensembles not destroyed yet, for destroy_all().
local live = {}

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

local Server = {}
Server.__index = Server
server_process.with_lifecycle(Server, "zookeeper fixture")

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
        _java_opts = copy_list(opts.java_opts or jvm.DEFAULT_JAVA_OPTS),
        _classpath = copy_list(opts.classpath or jvm.DEFAULT_CLASSPATH),
        _extra_cfg = cfg_lines(opts.cfg),
        _auto_port = opts.port == nil,
    }, Server)
    local ok, out = shell("mkdir " .. quote(self.data_dir))
    if not ok then
        remove_temp_dir(dir)
        error("zookeeper fixture: cannot create " .. self.data_dir .. ": " .. out, 3)
    end
    self:_set_port(opts.port or ports.pick_port())
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
    local answer = commands.four_letter(self.port, "ruok", PROBE_TIMEOUT_MS)
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
        self:_set_port(ports.pick_port())
    end
end

--- Send a four-letter word to this server's client port.
-- @tparam string cmd
-- @tparam[opt=2000] number timeout_ms
-- @treturn string|nil answer
-- @treturn[opt] string error
function Server:four_letter(cmd, timeout_ms)
    return commands.four_letter(self.port, cmd, timeout_ms)
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

--- Run one zkCli command against this server (see
-- @{disco.testing.zookeeper.commands.cli}).
-- @tparam {string,...} args
-- @tparam[opt] table opts
-- @treturn string|nil output
-- @treturn[opt] string error
function Server:cli(args, opts)
    opts = opts or {}
    opts.classpath = opts.classpath or self._classpath
    opts.java = opts.java or self._java
    return commands.cli(self.connect_string, args, opts)
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
-- @tparam[opt] {string,...} opts.java_opts replaces
--   @{disco.testing.zookeeper.jvm.DEFAULT_JAVA_OPTS}
-- @tparam[opt] {string,...} opts.classpath replaces
--   @{disco.testing.zookeeper.jvm.DEFAULT_CLASSPATH}
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

-- Shared with disco.testing.zookeeper.ensemble, whose members are servers
-- made by new_server and driven through the same internal methods.
_M.new_server = new_server
_M.bind_failure = bind_failure
_M.QUORUM_MODES = QUORUM_MODES
_M.MAX_START_ATTEMPTS = MAX_START_ATTEMPTS
_M.DEFAULT_START_TIMEOUT_MS = DEFAULT_START_TIMEOUT_MS
_M.POLL_MS = POLL_MS
_M.PROBE_TIMEOUT_MS = PROBE_TIMEOUT_MS
_M.live = live

return _M
