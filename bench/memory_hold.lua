-- bench/memory_hold.lua: disco's side of the memory benchmark, on the
-- comparators' command line (bench/README.md, "hold" mode): lists every
-- application under /services, watches the instances of each through the
-- zookeeper registry plugin (which keeps them parsed, as a consumer does),
-- prints `ready <instances>`, then waits until stdin reaches EOF so that the
-- caller can read VmRSS from /proc/PID/status.
--
--   build/disco run bench/memory_hold.lua hold --zk HOST:PORT [--apps N] [--breakdown]
--
-- `--apps 0` connects and watches nothing: the baseline. `--breakdown`
-- also prints (to stderr) what each structure of the registry's cache
-- costs per instance, measured by dropping it and collecting.
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"

local opts = { apps = math.huge }
do
    local i = 2
    assert(arg[1] == "hold", "usage: memory_hold.lua hold --zk HOST:PORT [--apps N] [--breakdown]")
    while arg[i] do
        local a = arg[i]
        if a == "--zk" then
            opts.zk, i = arg[i + 1], i + 2
        elseif a == "--apps" then
            opts.apps, i = assert(tonumber(arg[i + 1]), "--apps takes a number"), i + 2
        elseif a == "--breakdown" then
            opts.breakdown, i = true, i + 1
        else
            error("unknown argument " .. a)
        end
    end
    assert(opts.zk, "--zk HOST:PORT is required")
end

local function lua_bytes()
    collectgarbage()
    collectgarbage()
    return collectgarbage("count") * 1024
end

-- BENCH_STEPMUL: the collector's step multiplier during bulk loads, to
-- compare settings (disco.memory.BULK_STEPMUL).
if os.getenv("BENCH_STEPMUL") then
    require("disco.memory").BULK_STEPMUL = assert(tonumber(os.getenv("BENCH_STEPMUL")))
end

local loop = rt.loop
local registry = assert(rt:registry("zookeeper://" .. opts.zk))
common.wait(loop, function() return registry.session():state() == "connected" end, 20000, "connect")
local rss0, lua0 = common.rss_kib(), lua_bytes()
local settles0 = require("disco.memory").settles

local names
registry.list_apps(function(err, list)
    assert(not err, err)
    names = list
end)
common.wait(loop, function() return names ~= nil end, 60000, "list_apps")

local handles, loaded, total, sizes = {}, 0, 0, {}
for i = 1, math.min(#names, opts.apps) do
    local app = names[i]
    handles[#handles + 1] = registry.watch_instances(app, function(_, list)
        if not sizes[app] then
            loaded = loaded + 1
        end
        total = total - (sizes[app] or 0) + #list
        sizes[app] = #list
    end)
end
common.wait(loop, function() return loaded == #handles end, 600000, "instances")
-- The loop blocks on stdin below, so it runs here until the registry's
-- settle after its bulk load has happened (as it would in a consumer that
-- keeps running), at most 2 s.
local memory = require "disco.memory"
local deadline = core.hrtime() + 2000
while memory.settles == settles0 and #handles > 0 and core.hrtime() < deadline do
    loop:run_once()
end
-- The process's CPU time (every thread) up to here, for bench/memory.lua.
print(string.format("cpu %.0f", os.clock() * 1000))
print("ready " .. total)
io.stdout:flush()

if opts.breakdown and total > 0 then
    -- Bytes per instance: the process's growth, the Lua heap's, and each
    -- structure's share of it (dropped one after the other, then collected).
    local function say(fmt, ...)
        io.stderr:write(string.format(fmt, ...), "\n")
    end
    local rss1 = common.rss_kib()
    local lua1 = lua_bytes()
    say("instances %d", total)
    say("  RSS growth           %6.0f B/instance", (rss1 - rss0) * 1024 / total)
    say("  Lua heap growth      %6.0f B/instance", (lua1 - lua0) / total)
    say("  outside the Lua heap %6.0f B/instance (C cache, ZooKeeper client, allocator)",
        ((rss1 - rss0) * 1024 - (lua1 - lua0)) / total)
    -- glibc's view of the C side: bytes in use and bytes freed but kept.
    local ffi = require "ffi"
    pcall(ffi.cdef, [[
        struct disco_bench_mallinfo2 { size_t arena, ordblks, smblks, hblks, hblkhd,
            usmblks, fsmblks, uordblks, fordblks, keepcost; };
        struct disco_bench_mallinfo2 mallinfo2(void);
    ]])
    local mi = ffi.C.mallinfo2()
    pcall(ffi.cdef, "void malloc_stats(void); typedef struct FILE FILE; int malloc_info(int, FILE *);"
                    .. "FILE *fopen(const char *, const char *); int fclose(FILE *);")
    if os.getenv("BENCH_MALLOC_STATS") then
        ffi.C.malloc_stats()
        local f = ffi.C.fopen(os.getenv("BENCH_MALLOC_STATS"), "w")
        ffi.C.malloc_info(0, f)
        ffi.C.fclose(f)
    end
    if os.getenv("BENCH_MALLOC_STATS") then
        -- Resident bytes by kind of mapping: the C heap ([heap], and the
        -- threads' arenas among the anonymous ones) against LuaJIT's.
        local kinds, current = {}, nil
        for line in io.lines("/proc/self/smaps") do
            local lo, hi, rest = line:match("^(%x+)%-(%x+) %S+ %S+ %S+ %S+%s*(.*)$")
            if lo then
                local size = (tonumber(hi, 16) - tonumber(lo, 16)) / 1024
                current = rest ~= "" and rest or string.format("anon %d KiB", size)
                if current:match("^/") then
                    current = "files"
                end
            else
                local kib = line:match("^Rss:%s+(%d+) kB")
                if kib and current then
                    kinds[current] = (kinds[current] or 0) + tonumber(kib)
                end
            end
        end
        for k, v in pairs(kinds) do
            if v > 256 then
                say("    rss %-24s %8d KiB", k, v)
            end
        end
    end
    say("  malloc: in use %.1f MiB, free but held %.1f MiB, mmapped %.1f MiB",
        tonumber(mi.uordblks) / 1048576, tonumber(mi.fordblks) / 1048576,
        tonumber(mi.hblkhd) / 1048576)
    -- The plugin's live watch records, through its reload hand-over (this
    -- process ends right after, so handing them to nobody is harmless).
    local plugin_watches = {}
    for w in pairs(registry.save().watches) do
        plugin_watches[#plugin_watches + 1] = w
    end
    local before = lua_bytes()
    local function drop(label, fn)
        for _, w in ipairs(plugin_watches) do
            fn(w)
        end
        local now = lua_bytes()
        say("  %-20s %6.0f B/instance", label, (before - now) / total)
        before = now
    end
    drop("identity tables", function(w)
        for _, inst in ipairs(w.sorted) do
            inst.identity = nil
        end
    end)
    drop("metadata tables", function(w)
        for _, inst in ipairs(w.sorted) do
            inst.metadata = nil
        end
    end)
    drop("instances (rest)", function(w) w.sorted = {} end)
end

io.stdin:read("*a")
for _, h in ipairs(handles) do
    h.cancel()
end
rt:stop(0)
