-- bench/memory.lua: the memory a consumer needs per instance it holds.
-- ZooKeeper is populated with BENCH_APPS applications (default 1,000) of
-- BENCH_PER_APP instances each (default 100), in 1 to 3 revisions per
-- application, each instance node the JSON Dubbo 3 writes (~700 bytes with its
-- MetadataService url-params). Each
-- program then holds every instance of every application, parsed, and
-- prints `ready <instances>` (the comparators' `hold` mode,
-- bench/README.md): disco (bench/memory_hold.lua: the zookeeper registry
-- plugin watching every application), Java (bench/peers/run-java) and
-- kazoo (bench/peers/run-kazoo). The figure is the RSS at `ready` minus
-- the RSS of the same program holding nothing (`--apps 0`), per instance;
-- the median of RUNS runs (default 3). For disco also the CPU time its
-- process used up to `ready` (connect, reads, parsing, collection).
--
--   build/disco run bench/memory.lua [RUNS=3]
--   BENCH_APPS=100 BENCH_PER_APP=100 BENCH_BREAKDOWN=1 build/disco run bench/memory.lua 1
--   BENCH_ONLY_DISCO=1 ...: disco's row only
--   BENCH_STEPMUL=N ...: disco's collector step multiplier during loads
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local zk_instance = require "disco.registry.zk_instance"

local APPS = tonumber(os.getenv("BENCH_APPS")) or 1000
local PER_APP = tonumber(os.getenv("BENCH_PER_APP")) or 100
local RUNS = tonumber(arg[1]) or 3
local BREAKDOWN = os.getenv("BENCH_BREAKDOWN") == "1"
local TARGET = 1.5 * 1024
local SETTLE_S = 1

local function app_name(a)
    return string.format("bench-mem-%04d", a)
end

-- Instance i of application a, as a Dubbo 3 provider registers it: its own
-- address and timestamp; the revision (1 to 3 per application), endpoints
-- and MetadataService parameters it shares with the instances of its
-- revision.
local function instance(a, i)
    local n = a * PER_APP + i
    local revisions = a % 3 + 1
    local port = 20880 + (i % revisions)
    return {
        name = app_name(a),
        host = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256,
                             math.floor(n / 256) % 256, n % 256),
        port = port,
        registration_time = 1700000000000 + n,
        metadata = {
            ["dubbo.endpoints"] = string.format('[{"port":%d,"protocol":"dubbo"}]', port),
            ["dubbo.metadata-service.url-params"] = string.format(
                '{"connections":"1","version":"1.0.0","dubbo":"2.0.2","release":"3.2.9",'
                .. '"side":"provider","port":"%d","protocol":"dubbo"}', port),
            ["dubbo.metadata.revision"] = string.format("%032x", a * 7 + i % revisions),
            ["dubbo.metadata.storage-type"] = "local",
            ["timestamp"] = tostring(1700000000000 + n),
        },
    }
end

-- Creates every instance node, up to 2,000 requests in flight.
local function populate(loop, session)
    local total = APPS * PER_APP
    local done, failed, inflight, next_n = 0, 0, 0, 0
    local bytes = 0
    local function pump()
        while inflight < 2000 and next_n < total do
            local a, i = math.floor(next_n / PER_APP), next_n % PER_APP
            next_n = next_n + 1
            local inst = instance(a, i)
            local json = zk_instance.encode(inst)
            bytes = bytes + #json
            inflight = inflight + 1
            session:create("/services/" .. inst.name .. "/" .. inst.host .. ":" .. inst.port, json,
                           { parents = true }, function(err)
                inflight = inflight - 1
                done = done + 1
                if err and not err:match("^ENODEEXISTS") then
                    failed = failed + 1
                end
                pump()
            end)
        end
    end
    pump()
    common.wait(loop, function() return done == total end, 900000, "populate")
    assert(failed == 0, failed .. " creates failed")
    return total, bytes / total
end

-- VmRSS (KiB) of `pid` and every process under it: a launcher script that
-- does not exec its program counts with it (its share cancels out against
-- the baseline).
local function tree_rss_kib(pid)
    local children = {}
    local p = io.popen("ps -e -o pid=,ppid=")
    for line in p:lines() do
        local c, parent = line:match("(%d+)%s+(%d+)")
        if c then
            children[tonumber(parent)] = children[tonumber(parent)] or {}
            table.insert(children[tonumber(parent)], tonumber(c))
        end
    end
    p:close()
    local sum = 0
    local function visit(id)
        local f = io.open("/proc/" .. id .. "/status")
        if f then
            for line in f:lines() do
                local kib = line:match("^VmRSS:%s+(%d+) kB")
                if kib then
                    sum = sum + tonumber(kib)
                end
            end
            f:close()
        end
        for _, c in ipairs(children[id] or {}) do
            visit(c)
        end
    end
    visit(pid)
    return sum
end

local fifo_n = 0

-- Runs `cmd` (a shell command of a hold program) with stdin on a FIFO the
-- bench holds open; at `ready <n>` reads the RSS, then closes stdin so the
-- program ends. Returns the RSS in KiB, n and the CPU time the program says
-- it used (ms, or nil), or nil and what went wrong.
local function hold(cmd, dir)
    fifo_n = fifo_n + 1
    local fifo = string.format("%s/stdin-%d", dir, fifo_n)
    assert(os.execute("mkfifo " .. fifo) == 0, "mkfifo failed")
    local out = assert(io.popen(string.format("echo pid $$; exec %s < %s", cmd, fifo), "r"))
    local stdin = assert(io.open(fifo, "w"))
    local pid, rss, count, other, cpu
    for line in out:lines() do
        pid = pid or tonumber(line:match("^pid (%d+)$"))
        cpu = cpu or tonumber(line:match("^cpu (%d+)$"))
        local n = line:match("^ready (%d+)")
        if n then
            count = tonumber(n)
            -- Every program gets the same second to settle after its bulk
            -- load: steady state, not the peak of parsing, is compared.
            os.execute("sleep " .. SETTLE_S)
            rss = tree_rss_kib(pid)
            break
        elseif line == "unsupported" then
            other = "unsupported"
        end
    end
    stdin:close()
    for _ in out:lines() do -- luacheck: ignore 512
    end
    out:close()
    os.remove(fifo)
    if not rss then
        return nil, other or "no ready line"
    end
    return rss, count, cpu
end

local function file_exists(path)
    local f = io.open(path)
    if f then
        f:close()
        return true
    end
    return false
end

common.run(rt, function(zk)
    local session = common.session(rt.loop, zk.connect_string)
    local t = core.hrtime()
    local total, avg = populate(rt.loop, session)
    print(string.format("populated %d applications x %d instances (%d, %.0f-byte JSON on average) in %.0f ms",
                        APPS, PER_APP, total, avg, core.hrtime() - t))
    local dir = os.getenv("DISCO_TEST_TMPDIR") or "/tmp"
    dir = dir .. "/disco-bench-memory-" .. tostring(core.hrtime()):gsub("%.", "")
    assert(os.execute("mkdir -p " .. dir) == 0)
    local disco_bin = (os.getenv("BUILD") or "build") .. "/disco"
    local programs = {
        { label = "disco (registry/zookeeper)",
          cmd = disco_bin .. " run bench/memory_hold.lua hold --zk " .. zk.connect_string },
        { label = "Java (ZooKeeper client + Jackson)", script = "bench/peers/run-java",
          cmd = "bench/peers/run-java hold --zk " .. zk.connect_string },
        { label = "Python (kazoo + json)", script = "bench/peers/run-kazoo",
          cmd = "bench/peers/run-kazoo hold --zk " .. zk.connect_string },
    }
    if file_exists("bench/peers/run-java") then
        -- javac runs here, not inside a measured process tree.
        os.execute("BUILD=" .. (os.getenv("BUILD") or "build") .. " bench/peers/run-java compile >/dev/null")
    end
    if os.getenv("BENCH_ONLY_DISCO") == "1" then
        programs = { programs[1] }
    end
    local rows = {}
    for _, prog in ipairs(programs) do
        local row = { label = prog.label }
        rows[#rows + 1] = row
        if prog.script and not file_exists(prog.script) then
            row.missing = "n/a (comparator missing)"
        else
            local per, base_list, full_list, cpu_list = {}, {}, {}, {}
            for _ = 1, RUNS do
                local base, berr = hold(prog.cmd .. " --apps 0", dir)
                local full, n, cpu = hold(prog.cmd, dir)
                cpu_list[#cpu_list + 1] = cpu
                if not base or not full then
                    row.missing = "n/a (" .. tostring(base and n or berr) .. ")"
                    break
                end
                assert(n == total, prog.label .. " held " .. tostring(n) .. " instances, not " .. total)
                base_list[#base_list + 1], full_list[#full_list + 1] = base, full
                per[#per + 1] = (full - base) * 1024 / total
            end
            if not row.missing then
                row.per, row.base, row.full = per, common.median(base_list), common.median(full_list)
                row.cpu = #cpu_list == RUNS and cpu_list or nil
            end
        end
    end
    if BREAKDOWN then
        print("disco breakdown (one run):")
        os.execute(programs[1].cmd .. " --breakdown < /dev/null >/dev/null")
    end
    os.remove(dir)

    print(string.format("memory per instance held, %d instances in %d applications, %d runs "
                        .. "(RSS at ready minus RSS holding nothing; median, min-max):", total, APPS, RUNS))
    local disco_per
    for _, row in ipairs(rows) do
        if row.missing then
            print(string.format("  %-36s %s", row.label, row.missing))
        else
            local m = common.median(row.per)
            disco_per = disco_per or m
            print(string.format("  %-36s %7.0f B  (%.0f-%.0f)  baseline %.1f MiB, holding %.1f MiB",
                                row.label, m, math.min(unpack(row.per)), math.max(unpack(row.per)),
                                row.base / 1024, row.full / 1024))
            row.median = m
            if row.cpu then
                print(string.format("  %-36s CPU to ready %.0f ms (%.0f-%.0f)", "", common.median(row.cpu),
                                    math.min(unpack(row.cpu)), math.max(unpack(row.cpu))))
            end
        end
    end
    if rows[1].median then
        for i = 2, #rows do
            if rows[i].median then
                print(string.format("  ratio disco / %s: %.2f", rows[i].label, rows[1].median / rows[i].median))
            end
        end
        print(string.format("  disco target: < %d B per instance: %s", TARGET,
                            rows[1].median < TARGET and "met" or "NOT met"))
    end
    if file_exists("bench/results.lua") then
        local results = require "results"
        local rows_out = {}
        for _, row in ipairs(rows) do
            rows_out[#rows_out + 1] = {
                row.label,
                row.per and results.spread(row.per, "%.0f") or row.missing,
                row.base and string.format("%.1f", row.base / 1024) or "-",
                row.full and string.format("%.1f", row.full / 1024) or "-",
                row.median and rows[1].median and results.ratio(rows[1].median, row.median) or "-",
            }
        end
        results.table(string.format("Memory: RSS per instance held (%d instances in %d applications)",
                                    total, APPS),
                      { "program", "bytes per instance, median (min-max)", "baseline MiB",
                        "holding MiB", "disco / this" },
                      rows_out,
                      { string.format("%d runs; RSS of the process tree 1 s after `ready` minus the same "
                                      .. "program holding nothing (`--apps 0`); ~%.0f-byte instance JSON",
                                      RUNS, avg),
                        "disco: the zookeeper registry watching every application (bench/memory_hold.lua); "
                        .. "target < 1,536 bytes per instance" })
    end
    session:close()
end)
