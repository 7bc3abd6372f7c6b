-- bench/peer_process.lua: runs the consumers of the comparator contract
-- (bench/README.md) — disco (bench/peers/disco_consumer.lua), Java
-- (bench/peers/run-java) and kazoo (bench/peers/run-kazoo) — as separate
-- processes under disco.testing.process's watchdog, with stdout in a file
-- read line by line and stdin on a FIFO that this process holds open: closing
-- it is the peer's EOF.
--
--   local peers = require "peer_process"
--   local p = peers.start("java", "watch", { "--zk", hosts, "--app", app, "--service", iface })
--   local line = p:wait_line("^ready ", 60000, loop)   -- { text =, at = hrtime ms }
--   p:rss_kib(); p:stop()
--   peers.cold("kazoo", args, 120000, loop)  -- { ms =, wall_ms =, instances =, addresses = } or { unsupported = true }
--   peers.stop_all()                         -- in every cleanup path
--   peers.remove_files()                     -- after a successful run
--   peers.prepare()                          -- compiles the Java peer first (untimed)
local core = require "disco.core"
local ffi = require "ffi"
local process = require "disco.testing.process"

local q = process.quote

local _M = {}

_M.KINDS = { "disco", "java", "kazoo" }

pcall(ffi.cdef, [[
int open(const char *path, int flags, ...);
int close(int fd);
]])
-- x86_64 and aarch64 Linux values.
local O_RDWR, O_CLOEXEC = 2, 0x80000

local peer = {}
peer.__index = peer
local started = {}
local seq = 0
local dir

local function tmpdir()
    if not dir then
        dir = string.format("%s/disco-bench-%d", os.getenv("DISCO_TEST_TMPDIR") or "/tmp", core.getpid())
        assert(process.shell("mkdir -p " .. q(dir)))
    end
    return dir
end

local function argv_of(kind, mode, args)
    local argv
    if kind == "disco" then
        argv = { (os.getenv("BUILD") or "build") .. "/disco", "run", "bench/peers/disco_consumer.lua", mode }
    elseif kind == "java" then
        argv = { "bench/peers/run-java", mode }
    elseif kind == "kazoo" then
        argv = { "bench/peers/run-kazoo", mode }
    else
        error("unknown peer kind " .. tostring(kind), 2)
    end
    for _, a in ipairs(args) do
        argv[#argv + 1] = tostring(a)
    end
    return argv
end

--- Compiles the Java peer now, so that no timed run includes javac.
function _M.prepare()
    local ok, out = process.shell("timeout 300 bench/peers/run-java compile")
    assert(ok, "compiling the Java peer failed:\n" .. out)
end

--- Starts peer `kind` ("disco", "java", "kazoo") in `mode` with `args`.
function _M.start(kind, mode, args)
    seq = seq + 1
    local base = string.format("%s/%s-%s-%d", tmpdir(), kind, mode, seq)
    local self = setmetatable({ kind = kind, out = base .. ".out", err = base .. ".err",
                                fifo = base .. ".in", buf = "", lines = {}, next = 1 }, peer)
    assert(process.shell("rm -f " .. q(self.fifo) .. " && mkfifo " .. q(self.fifo)))
    -- Read-write, so that opening does not wait for the reader; close on
    -- exec, so that the other peers do not hold it open past our close.
    self.stdin_fd = ffi.C.open(self.fifo, O_RDWR + O_CLOEXEC)
    assert(self.stdin_fd >= 0, "cannot open " .. self.fifo)
    local words = argv_of(kind, mode, args)
    local script = "exec \"$@\" <" .. q(self.fifo) .. " >" .. q(self.out) .. " 2>" .. q(self.err)
    self.started = core.hrtime()
    self.proc = process.spawn({ argv = { "sh", "-c", script, "sh", unpack(words) } })
    started[self] = true
    return self
end

-- Reads what the peer wrote since the last call into self.lines.
function peer:poll()
    if not self.reader then
        self.reader = io.open(self.out, "rb")
        if not self.reader then
            return
        end
    end
    self.reader:seek("cur", 0) -- clears a sticky EOF
    local chunk = self.reader:read("*a")
    if chunk and chunk ~= "" then
        local now = core.hrtime()
        self.buf = self.buf .. chunk
        while true do
            local nl = self.buf:find("\n", 1, true)
            if not nl then
                break
            end
            self.lines[#self.lines + 1] = { text = self.buf:sub(1, nl - 1), at = now }
            self.buf = self.buf:sub(nl + 1)
        end
    end
end

function peer:alive()
    return process.alive(self.proc.pid, self.proc.start_time)
end

function peer:stderr_tail()
    local f = io.open(self.err, "rb")
    local s = f and f:read("*a") or ""
    if f then
        f:close()
    end
    return s:sub(-2000)
end

--- The next unread line matching `pattern` (a Lua pattern, or a function
-- of the text) — others are skipped — waiting up to `ms`; drives `loop`
-- (non-blocking) between looks when given; `what` names it in errors.
-- Raises when the peer exits or the time is up.
function peer:wait_line(pattern, ms, loop, what)
    what = what or tostring(pattern)
    local match = type(pattern) == "function" and pattern or function(text) return text:match(pattern) end
    local deadline = core.hrtime() + ms
    local exited = false
    while true do
        self:poll()
        while self.next <= #self.lines do
            local line = self.lines[self.next]
            self.next = self.next + 1
            if match(line.text) then
                return line
            end
        end
        if exited then
            error(string.format("%s peer exited before '%s':\n%s", self.kind, what,
                                self:stderr_tail()), 2)
        end
        -- One more look after it exited: its last lines may be unread.
        exited = not self:alive()
        if core.hrtime() > deadline then
            error(string.format("%s peer: no '%s' within %d ms:\n%s", self.kind, what, ms,
                                self:stderr_tail()), 2)
        end
        if loop then
            loop:step()
        end
        core.sleep(1)
    end
end

--- VmRSS of the peer in KiB, nil once it exited.
function peer:rss_kib()
    local f = io.open("/proc/" .. self.proc.pid .. "/status", "r")
    if not f then
        return nil
    end
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("VmRSS:%s+(%d+) kB"))
end

--- Closes stdin (the peer's signal to exit), then TERM, then KILL of its
-- group, each waited for a bounded time.
function peer:stop()
    if not started[self] then
        return
    end
    started[self] = nil
    if self.stdin_fd then
        ffi.C.close(self.stdin_fd)
        self.stdin_fd = nil
    end
    local pid, st = self.proc.pid, self.proc.start_time
    if not process.wait_dead(pid, 3000, st) then
        process.signal(pid, "TERM")
        if not process.wait_dead(pid, 3000, st) and process.group_is_ours(self.proc) then
            process.kill_group(self.proc.pgid, "KILL")
        end
    end
    if self.reader then
        self.reader:close()
        self.reader = nil
    end
    os.remove(self.fifo)
end

--- Stops every peer still running.
function _M.stop_all()
    for p in pairs(started) do
        p:stop()
    end
end

--- Removes the peers' output files (keep them when a run failed: their
-- stderr explains it).
function _M.remove_files()
    if dir then
        process.shell("rm -rf " .. q(dir))
        dir = nil
    end
end

--- One cold run: `{ ms =, wall_ms =, instances =, addresses = }` (wall_ms:
-- from the spawn to the result line), or `{ unsupported = true }`.
function _M.cold(kind, args, ms, loop)
    local p = _M.start(kind, "cold", args)
    local ok, line = pcall(p.wait_line, p, function(text)
        return text:match("^result ") or text == "unsupported"
    end, ms, loop, "result")
    p:stop()
    if not ok then
        error(line, 0)
    end
    if line.text == "unsupported" then
        return { unsupported = true }
    end
    local n, a, t = line.text:match("^result instances=(%d+) addresses=(%d+) ms=([%d.]+)")
    assert(n, kind .. ": unexpected line " .. line.text)
    return { ms = tonumber(t), wall_ms = line.at - p.started, instances = tonumber(n), addresses = tonumber(a) }
end

return _M
