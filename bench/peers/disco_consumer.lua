-- bench/peers/disco_consumer.lua: disco under the comparators' contract
-- (bench/README.md), so that disco, Java and kazoo are measured the same
-- way: a fresh process, stdout lines only, stdin EOF to stop.
--
--   build/disco run bench/peers/disco_consumer.lua cold --zk H:P --app APP --service IFACE --mode remote|local
--   build/disco run bench/peers/disco_consumer.lua watch --zk H:P --app APP --service IFACE
--   build/disco run bench/peers/disco_consumer.lua hold --zk H:P [--apps N]
--
-- cold and watch use a consumer (`rt:consumer`) subscribed to every
-- version and group of IFACE (`dubbo:IFACE:*:*`, as the peers match by
-- interface); the consumer's first list waits for every revision, so its
-- first call is the complete list. hold keeps the registry's parsed
-- instances of every application (`watch_instances`), as the consumer's
-- registry would. The storage type comes from the instances, so --mode is
-- only checked.
--
-- For work on disco itself, two optional variables: DISCO_PEER_PROFILE=FILE
-- runs LuaJIT's profiler (jit.p, mode DISCO_PEER_PROFILE_MODE, default
-- "Fl") into FILE, in cold mode from the start to the result, in watch
-- mode from the first list to stdin EOF; DISCO_PEER_CPU=FILE appends to
-- FILE the process CPU time spent over that span (and in watch mode the
-- number of changes seen; in cold mode also each thread's CPU since the
-- start, so that the loop's share is apart from libzookeeper's threads').
local rt = ...
local core = require "disco.core"
local ffi = require "ffi"
-- The modules of the consumer flow and of the registry's instance codec,
-- loaded before any clock starts, as the Python peer imports kazoo first;
-- plugins (the registry, mapping, validation) still load in the span.
require "disco.consumer"
require "disco.registry.zk_instance"

local MODE = arg[1]
local opts = {}
for i = 2, #arg - 1, 2 do
    local key = arg[i]:match("^%-%-(.+)$")
    if not key then
        io.stderr:write("expected an --option, got ", arg[i], "\n")
        return rt:stop(2)
    end
    opts[key] = arg[i + 1]
end

local function need(key)
    if not opts[key] then
        io.stderr:write("missing --", key, "\n")
        rt:stop(2)
        error("missing --" .. key, 0)
    end
    return opts[key]
end

local function out(...)
    io.stdout:write(...)
    io.stdout:write("\n")
    io.stdout:flush()
end

-- Stdin EOF, seen with a non-blocking poll(2) every 50 ms: the loop has no
-- reader for fd 0, and the callers keep a pipe open until they are done.
pcall(ffi.cdef, [[
struct pollfd { int fd; short events; short revents; };
int poll(struct pollfd *fds, unsigned long nfds, int timeout);
long read(int fd, void *buf, unsigned long count);
]])
pcall(ffi.cdef, "int getpid(void);")
local function stop_at_stdin_eof(on_eof)
    local pfd = ffi.new("struct pollfd[1]")
    local buf = ffi.new("char[256]")
    local timer
    timer = rt:every(50, function()
        pfd[0].fd, pfd[0].events, pfd[0].revents = 0, 1, 0 -- POLLIN
        while ffi.C.poll(pfd, 1, 0) > 0 do
            if ffi.C.read(0, buf, 256) <= 0 then
                timer:close()
                return on_eof()
            end
        end
    end, "stdin eof")
end

-- CPU of each thread of this process since it started (ms, from
-- /proc/self/task/TID/stat, clock ticks at 100 Hz): libzookeeper's I/O and
-- completion threads apart from the loop's.
local function thread_cpu()
    local list = {}
    -- /proc/self in the popen'd ls would be ls's own.
    local ls = io.popen("ls /proc/" .. ffi.C.getpid() .. "/task 2>/dev/null")
    for tid in ls:lines() do
        local f = io.open("/proc/self/task/" .. tid .. "/stat")
        local stat = f and f:read("*a") or ""
        if f then f:close() end
        local name, rest = stat:match("%((.-)%) (.*)")
        if rest then
            local fields = {}
            for field in rest:gmatch("%S+") do fields[#fields + 1] = field end
            -- After the name: state is field 3, utime 14 and stime 15.
            list[#list + 1] = { tid = tid, name = name, ms = (tonumber(fields[12]) + tonumber(fields[13])) * 10 }
        end
    end
    ls:close()
    return list
end

local function zk_url()
    return "zookeeper://" .. need("zk")
end

local function subscribe(on_list)
    local registry = assert(rt:registry(zk_url()))
    local consumer = rt:consumer({ registry = registry })
    local iface = need("service")
    local id = iface:find(":", 1, true) and iface or ("dubbo:" .. iface .. ":*:*")
    consumer:subscribe(id, on_list, { provided_by = { need("app") } })
    return consumer
end

if MODE == "cold" then
    local mode = opts.mode or "remote"
    if mode ~= "remote" and mode ~= "local" then
        io.stderr:write("--mode must be remote or local\n")
        return rt:stop(2)
    end
    local profile, cpu_log = os.getenv("DISCO_PEER_PROFILE"), os.getenv("DISCO_PEER_CPU")
    if profile then
        require("jit.p").start(os.getenv("DISCO_PEER_PROFILE_MODE") or "Fl", profile)
    end
    local cpu0 = os.clock()
    local start = core.hrtime()
    local consumer, done
    consumer = subscribe(function(_, list)
        if done then
            return
        end
        done = true
        local ms = core.hrtime() - start
        if profile then
            require("jit.p").stop()
        end
        if cpu_log then
            local f = assert(io.open(cpu_log, "a"))
            f:write(string.format("cold cpu_ms %.1f wall_ms %.1f\n", (os.clock() - cpu0) * 1000, ms))
            for _, t in ipairs(thread_cpu()) do
                f:write(string.format("  thread %s %s cpu_ms %d\n", t.tid, t.name, t.ms))
            end
            f:close()
        end
        local counts = consumer:app_counts()[need("app")] or { instances = 0 }
        out(string.format("result instances=%d addresses=%d ms=%.3f", counts.instances, #list, ms))
        rt:stop(0)
    end)
    rt:after(300000, function()
        io.stderr:write("cold: no complete list within 300 s\n")
        rt:stop(1)
    end)
elseif MODE == "watch" then
    local ready = false
    local profile, cpu_log = os.getenv("DISCO_PEER_PROFILE"), os.getenv("DISCO_PEER_CPU")
    local cpu0, changes = nil, 0
    subscribe(function(_, list)
        if not ready then
            ready = true
            if profile then
                require("jit.p").start(os.getenv("DISCO_PEER_PROFILE_MODE") or "Fl", profile)
            end
            cpu0 = os.clock()
            return out("ready ", #list)
        end
        changes = changes + 1
        out(string.format("change %.0f %d", core.hrtime() * 1e6, #list))
    end)
    stop_at_stdin_eof(function()
        if profile and ready then
            require("jit.p").stop()
        end
        if cpu_log and cpu0 then
            local f = assert(io.open(cpu_log, "a"))
            f:write(string.format("cpu_ms %.1f changes %d per_change_ms %.2f\n", (os.clock() - cpu0) * 1000,
                                  changes, (os.clock() - cpu0) * 1000 / math.max(changes, 1)))
            f:close()
        end
        rt:stop(0)
    end)
elseif MODE == "hold" then
    local registry = assert(rt:registry(zk_url()))
    local limit = tonumber(opts.apps or "-1")
    local held = {}
    registry.list_apps(function(err, apps)
        if err then
            io.stderr:write("list_apps: ", err, "\n")
            return rt:stop(1)
        end
        if limit >= 0 then
            for i = #apps, limit + 1, -1 do
                apps[i] = nil
            end
        end
        local pending, total = #apps, 0
        local function done()
            collectgarbage()
            collectgarbage()
            out("ready ", total)
        end
        if pending == 0 then
            done()
        end
        for _, app in ipairs(apps) do
            local first = true
            held[app] = registry.watch_instances(app, function(_, list)
                if first then
                    first = false
                    total = total + #list
                    pending = pending - 1
                    if pending == 0 then
                        done()
                    end
                end
            end)
        end
    end)
    stop_at_stdin_eof(function()
        for _, handle in pairs(held) do
            handle.cancel()
        end
        rt:stop(0)
    end)
else
    io.stderr:write("usage: disco run bench/peers/disco_consumer.lua cold|watch|hold --zk HOST:PORT ...\n")
    rt:stop(2)
end
