--- Process helpers for test fixtures.
--
-- Plain Lua (io, os and /proc only) so that fixtures work before the C core
-- is built. Every command is started detached, in its own session and
-- process group, next to a small shell watchdog that kills it when the Lua
-- process that started it goes away. A test runner that is SIGKILLed
-- therefore leaves nothing running behind it.
--
-- Process identity is a (pid, start time) pair read from /proc/<pid>/stat:
-- a pid alone may be reused by an unrelated process, and these helpers must
-- never signal a process the caller did not start.
--
-- @module disco.testing.process

-- Its reader needs no C core.
local read_file = require("disco.file_replace").read

local _M = {}

local io_open = io.open
local os_execute = os.execute
local tonumber = tonumber
local type = type
local string_format = string.format
local table_concat = table.concat

-- How often the watchdog checks its owner and its child, in seconds. Short
-- enough that an orphaned server dies before the next test run binds ports,
-- long enough that the shell loop costs nothing.
local WATCHDOG_INTERVAL = "0.25"

-- How long the watchdog lets an orphaned child handle SIGTERM before it kills
-- the whole group, in tenths of a second.
local WATCHDOG_GRACE_TENTHS = 20

--- Quote a string for a POSIX shell.
-- Single quotes protect every character except the single quote itself,
-- which is closed, escaped and reopened. NUL cannot be passed in an argv.
-- @tparam string s
-- @treturn string the quoted word
function _M.quote(s)
    if type(s) == "number" then
        s = tostring(s)
    end
    if type(s) ~= "string" then
        error("process.quote: expected a string, got " .. type(s), 2)
    end
    if s:find("\0", 1, true) then
        error("process.quote: argument contains a NUL byte", 2)
    end
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

local quote = _M.quote

--- Parse /proc/<pid>/stat.
-- The command name is in parentheses and may itself contain spaces or
-- parentheses, so fields are counted from the last ')'.
-- @tparam number|string pid a pid, or "self"
-- @treturn table|nil `{pid=, state=, ppid=, pgrp=, session=, start_time=}`
function _M.stat(pid)
    local data = read_file("/proc/" .. tostring(pid) .. "/stat")
    if not data then
        return nil
    end
    local own_pid, rest = data:match("^(%d+) %(.*%) (.*)$")
    if not own_pid then
        return nil
    end
    local fields = {}
    for word in rest:gmatch("%S+") do
        fields[#fields + 1] = word
    end
    -- rest starts at field 3 (state); start time is field 22.
    return {
        pid = tonumber(own_pid),
        state = fields[1],
        ppid = tonumber(fields[2]),
        pgrp = tonumber(fields[3]),
        session = tonumber(fields[4]),
        start_time = fields[20],
    }
end

--- The pid of the calling Lua process.
-- @treturn number
function _M.self_pid()
    local st = _M.stat("self")
    if not st then
        error("process.self_pid: cannot read /proc/self/stat")
    end
    return st.pid
end

--- Milliseconds since boot, from /proc/uptime.
-- Monotonic enough for deadlines (10 ms resolution) without a C module;
-- os.clock() counts CPU time and os.time() whole seconds.
-- @treturn number
function _M.now_ms()
    local data = read_file("/proc/uptime")
    local secs = data and tonumber(data:match("^(%S+)"))
    if not secs then
        return os.time() * 1000
    end
    return secs * 1000
end

local function check_pid(pid, who)
    pid = tonumber(pid)
    -- 0, -1 and 1 would address a process group, every process or init.
    if not pid or pid ~= math.floor(pid) or pid < 2 then
        error(who .. ": invalid pid " .. tostring(pid), 3)
    end
    return pid
end

--- Whether a process exists and is not a zombie.
-- @tparam number pid
-- @tparam[opt] string start_time when given, the process must also have
--   this start time (field 22 of its stat), so a reused pid counts as dead
-- @treturn boolean
function _M.alive(pid, start_time)
    pid = tonumber(pid)
    if not pid or pid < 1 then
        return false
    end
    local st = _M.stat(pid)
    if not st or st.state == "Z" or st.state == "X" then
        return false
    end
    if start_time and st.start_time ~= start_time then
        return false
    end
    return true
end

local sleep_impl

local function resolve_sleep()
    local ok, core = pcall(require, "disco.core")
    if ok and type(core) == "table" and type(core.sleep) == "function" then
        return function(ms)
            core.sleep(ms)
        end
    end
    return function(ms)
        os_execute(string_format("sleep %.3f", ms / 1000))
    end
end

--- Block for `ms` milliseconds.
-- Uses disco.core's sleep when the bindings are built, else sleep(1).
-- @tparam number ms
function _M.sleep(ms)
    if not sleep_impl then
        sleep_impl = resolve_sleep()
    end
    if ms > 0 then
        sleep_impl(ms)
    end
end

--- Calls `fn()` every 50 ms, without driving any loop (for conditions
-- other processes make true), until it returns a true value, which it
-- returns; raises after `timeout_ms`, naming `what`.
function _M.poll(what, timeout_ms, fn)
    local deadline = _M.now_ms() + timeout_ms
    repeat
        local v = fn()
        if v then
            return v
        end
        _M.sleep(50)
    until _M.now_ms() > deadline
    error("timed out after " .. timeout_ms .. " ms waiting for " .. what, 2)
end

local function check_signal(name, who)
    if type(name) ~= "string" then
        error(who .. ": signal name expected", 3)
    end
    name = name:upper():gsub("^SIG", "")
    if not name:match("^%u[%u%d]*$") then
        error(who .. ": invalid signal name " .. name, 3)
    end
    return name
end

local function run_kill(args)
    -- The exit status of os.execute differs between Lua 5.1 and 5.2
    -- semantics, so the shell reports success in a word we can read.
    local p = io.popen("kill " .. args .. " 2>&1 && echo __ok")
    local out = p:read("*a") or ""
    p:close()
    if out:find("__ok", 1, true) then
        return true
    end
    return nil, (out:gsub("%s+$", ""))
end

--- Send a signal to one process.
-- @tparam number pid
-- @tparam string name e.g. "TERM", "KILL", "STOP", "CONT"
-- @treturn true|nil
-- @treturn[opt] string error message
function _M.signal(pid, name)
    pid = check_pid(pid, "process.signal")
    name = check_signal(name, "process.signal")
    return run_kill(string_format("-s %s %d", name, pid))
end

--- Send a signal to every process of a process group.
-- @tparam number pgid
-- @tparam string name
-- @treturn true|nil
-- @treturn[opt] string error message
function _M.kill_group(pgid, name)
    pgid = check_pid(pgid, "process.kill_group")
    name = check_signal(name, "process.kill_group")
    return run_kill(string_format("-s %s -- -%d", name, pgid))
end

--- Wait until a process is gone (or a zombie).
-- @tparam number pid
-- @tparam number timeout_ms
-- @tparam[opt] string start_time as for @{alive}
-- @treturn boolean true when it died in time
function _M.wait_dead(pid, timeout_ms, start_time)
    local deadline = _M.now_ms() + (timeout_ms or 0)
    local step = 10
    while _M.alive(pid, start_time) do
        if _M.now_ms() >= deadline then
            return false
        end
        _M.sleep(step)
        -- Back off: most exits are fast, a slow one need not be polled hard.
        if step < 100 then
            step = step * 2
        end
    end
    return true
end

--- Pids of processes whose command line contains `needle`.
-- The caller's own process is never listed.
-- @tparam string needle plain substring
-- @treturn {number,...}
function _M.find(needle)
    local self_pid = _M.self_pid()
    local found = {}
    local p = io.popen("ls /proc")
    for name in p:lines() do
        local pid = tonumber(name)
        if pid and pid ~= self_pid then
            local cmdline = read_file("/proc/" .. name .. "/cmdline")
            if cmdline and cmdline:gsub("%z", " "):find(needle, 1, true) then
                found[#found + 1] = pid
            end
        end
    end
    p:close()
    return found
end

--- Run a short shell command in the foreground (not detached, no watchdog)
-- and report whether it succeeded, with its output.
-- The marker avoids depending on how this Lua reports exit statuses.
-- @tparam string cmd a shell command line; quote its words with @{quote}
-- @treturn boolean whether it exited with status 0
-- @treturn string its stdout and stderr
function _M.shell(cmd)
    -- Like spawn(): sanitizer runtimes preloaded into the test process
    -- (`make asan`) must not reach the commands (curl, etcdctl hang).
    local p = io.popen("{ unset LD_PRELOAD; " .. cmd .. "; } 2>&1 && echo __disco_ok")
    local out = p:read("*a") or ""
    p:close()
    local ok = out:find("__disco_ok\n$") ~= nil
    return ok, (out:gsub("__disco_ok\n$", ""))
end

-- The watchdog. It runs as the session leader of the new group, starts the
-- command as its child and polls both the owner and the child. Identities
-- compare start times, so a recycled owner pid is not mistaken for the
-- owner. When the owner disappears it asks the child to stop, then kills
-- the whole group (itself included). When the child exits it reaps it and
-- exits too.
local WATCHDOG = [[
owner=%d
owner_start=%s
stat_of() {
    st=; stt=
    { read -r line < /proc/$1/stat; } 2>/dev/null || return 1
    line=${line##*) }
    set -- $line
    st=$1; stt=${20}
}
live() { stat_of "$1" && [ "$st" != Z ] && [ "$st" != X ]; }
owner_live() { stat_of "$owner" && [ "$st" != Z ] && [ "$stt" = "$owner_start" ]; }
( %s ) </dev/null >>%s 2>&1 &
child=$!
echo "$child $$"
exec >/dev/null 2>&1
while live "$child" && owner_live; do sleep %s; done
if live "$child"; then
    kill -s TERM "$child"
    n=0
    while live "$child" && [ "$n" -lt %d ]; do sleep 0.1; n=$((n + 1)); done
    kill -s KILL 0
fi
wait "$child"
]]

local function record_pgid(pgid)
    local path = os.getenv("DISCO_TEST_PIDFILE")
    if not path or path == "" then
        return
    end
    local f = io_open(path, "a")
    if f then
        f:write(pgid, "\n")
        f:close()
    end
end

--- Start a command detached, under a watchdog.
-- @tparam table opts
-- @tparam {string,...} opts.argv the command and its arguments
-- @tparam[opt] string opts.cwd working directory of the command
-- @tparam[opt] string opts.log file that receives stdout and stderr
--   (appended to); /dev/null by default
-- @tparam[opt] {[string]=string} opts.env extra environment variables
-- @tparam[opt] number opts.owner_pid the process whose death kills the
--   command; the calling Lua process by default
-- @treturn table `{pid=, pgid=, start_time=, leader_start=}`: `pid` is the
--   command itself (not a shell), `pgid` its process group (the watchdog)
function _M.spawn(opts)
    if type(opts) ~= "table" or type(opts.argv) ~= "table" or #opts.argv == 0 then
        error("process.spawn: opts.argv must be a non-empty list", 2)
    end
    local owner = opts.owner_pid or _M.self_pid()
    local owner_stat = _M.stat(owner)
    if not owner_stat or owner_stat.state == "Z" then
        error("process.spawn: owner process " .. tostring(owner) .. " is not alive", 2)
    end

    local words = {}
    for i, arg in ipairs(opts.argv) do
        words[i] = quote(arg)
    end
    -- Sanitizer runtimes preloaded into the test process (`make asan`)
    -- must not reach the commands it starts, a JVM above all.
    local parts = { "unset LD_PRELOAD;" }
    for k, v in pairs(opts.env or {}) do
        if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
            error("process.spawn: invalid environment variable name " .. tostring(k), 2)
        end
        parts[#parts + 1] = "export " .. k .. "=" .. quote(v) .. ";"
    end
    if opts.cwd then
        parts[#parts + 1] = "cd " .. quote(opts.cwd) .. " &&"
    end
    parts[#parts + 1] = "exec " .. table_concat(words, " ")

    local script = string_format(WATCHDOG, owner_stat.pid, quote(owner_stat.start_time),
        table_concat(parts, " "), quote(opts.log or "/dev/null"),
        WATCHDOG_INTERVAL, WATCHDOG_GRACE_TENTHS)

    -- setsid -f always forks, so the watchdog leads a new session and group
    -- even if this shell happens to lead its own. The watchdog prints the
    -- pids and then closes the pipe, so reading one line does not wait for
    -- the command to exit.
    local p = io.popen("setsid -f sh -c " .. quote(script) .. " </dev/null 2>/dev/null")
    local line = p:read("*l")
    p:close()
    local pid, pgid = (line or ""):match("^(%d+) (%d+)$")
    pid, pgid = tonumber(pid), tonumber(pgid)
    if not pid then
        error("process.spawn: could not start " .. tostring(opts.argv[1]), 2)
    end
    record_pgid(pgid)

    local child = _M.stat(pid)
    local leader = _M.stat(pgid)
    return {
        pid = pid,
        pgid = pgid,
        -- A command that failed to exec may already be gone; "" then never
        -- matches a live process.
        start_time = child and child.start_time or "",
        leader_start = leader and leader.start_time or "",
    }
end

--- Whether a process group started by @{spawn} may still be signalled.
-- True while its watchdog or its command is alive with the recorded start
-- time: then the group exists and is ours. Once both are gone the group id
-- may be reused, so nobody should signal it.
-- @tparam table handle as returned by @{spawn}
-- @treturn boolean
function _M.group_is_ours(handle)
    return _M.alive(handle.pgid, handle.leader_start)
        or _M.alive(handle.pid, handle.start_time)
end

return _M
