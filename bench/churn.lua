-- bench/churn.lua: a rolling restart under a subscribed consumer.
--
-- One application of N instances (default 1,000) at revision A, each
-- instance's MetadataService served by one shared MetadataService in this
-- process (local storage mode: consumers call getMetadataInfo over dubbo).
-- A consumer in its own process (bench/churn_consumer.lua) subscribes to
-- one service ID. Then a deployment moves every instance to a new revision,
-- BATCH instances at a time (unregister + register with the new revision,
-- PAUSE_MS between batches), in two variants per run: every instance to one
-- new revision, then to two new revisions (half each). Measured per phase:
--   metadata calls   getMetadataInfo calls answered by the MetadataService
--                    (target: exactly the number of new revisions)
--   ZooKeeper reads  the consumer's getChildren + getData (its instance
--                    watch's counters, registry/zookeeper stats())
--   converge         last registration done -> the consumer's list holds
--                    all N addresses at the new revision(s), both clocks
--                    CLOCK_MONOTONIC
--   consumer CPU     utime + stime of the consumer process over the phase
-- Medians and min-max over RUNS runs.
--
--   build/disco run bench/churn.lua
--   env: BENCH_INSTANCES (1000), BENCH_BATCH (50), BENCH_BATCH_PAUSE_MS
--        (100), BENCH_RUNS (3)
local rt = ...
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local core = require "disco.core"
local instance_model = require "disco.instance"
local metadata_info = require "disco.metadata_info"
local metadata_service = require "disco.metadata.service"
local process = require "disco.testing.process"
local zk_instance = require "disco.registry.zk_instance"

local function env_int(name, default, min)
    local v = tonumber(os.getenv(name) or "") or default
    if v % 1 ~= 0 or v < min then
        error(name .. " must be an integer >= " .. min .. ", got " .. tostring(os.getenv(name)))
    end
    return v
end

local N = env_int("BENCH_INSTANCES", 1000, 1)
local BATCH = env_int("BENCH_BATCH", 50, 1)
local PAUSE_MS = env_int("BENCH_BATCH_PAUSE_MS", 100, 0)
local RUNS = env_int("BENCH_RUNS", 3, 1)
local APP = "bench-churn"
local IFACE = "com.acme.Churn"
local SID = "dubbo:" .. IFACE .. ":1.0.0"
local BASE_PORT = 30000
assert(BASE_PORT + N <= 65535, "BENCH_INSTANCES too large for one port per instance")

-- A revision whose service carries rev=<tag>, so that the consumer can
-- tell which revision each address came from.
local function revision(tag)
    local info = metadata_info.new(APP)
    info:add(metadata_info.service({
        name = IFACE, version = "1.0.0", port = -1,
        params = { application = APP, interface = IFACE, methods = "get,put", side = "provider",
                   version = "1.0.0", rev = tag },
    }))
    metadata_info.revision_of(info)
    info.tag = tag
    return info
end

-- Instance i (0-based): 127.0.0.1, its own port, in revision `info`, its
-- MetadataService at the shared port.
local function make_instance(i, info, service_port)
    local inst = instance_model.new({ name = APP, host = "127.0.0.1", port = BASE_PORT + i,
                                      metadata = { timestamp = tostring(1700000000000 + i) } })
    instance_model.set_revision(inst, info.revision)
    instance_model.set_storage_type(inst, "local")
    instance_model.set_endpoints(inst, { { port = BASE_PORT + i, protocol = "dubbo" } })
    instance_model.set_url_params(inst, { port = service_port, protocol = "dubbo", version = "1.0.0" })
    inst.registration_time = 1700000000000 + i
    return inst
end

-- Its node (as common.populate names it) and data.
local function instance_node(i, info, service_port)
    local inst = make_instance(i, info, service_port)
    return "/services/" .. APP .. "/" .. inst.host .. ":" .. inst.port, zk_instance.encode(inst)
end

-- The consumer's stdout, read as it grows.
local function tail(path)
    local offset, partial = 0, ""
    return function()
        local lines = {}
        local f = io.open(path, "rb")
        if not f then
            return lines
        end
        f:seek("set", offset)
        local data = f:read("*a") or ""
        f:close()
        offset = offset + #data
        partial = partial .. data
        while true do
            local nl = partial:find("\n", 1, true)
            if not nl then
                break
            end
            lines[#lines + 1] = partial:sub(1, nl - 1)
            partial = partial:sub(nl + 1)
        end
        return lines
    end
end

-- "change T N lists= reads= fetches= rev=count..." or "stats T lists= ...".
local function parse(line)
    local kind, t, rest = line:match("^(%a+) ([%d%.]+) (.*)$")
    if kind ~= "change" and kind ~= "stats" then
        return nil
    end
    local rec = { kind = kind, t = tonumber(t), hist = {} }
    if kind == "change" then
        local n
        n, rest = rest:match("^(%d+) (.*)$")
        rec.n = tonumber(n)
    end
    for k, v in rest:gmatch("(%S+)=(%d+)") do
        if k == "lists" or k == "reads" or k == "fetches" then
            rec[k] = tonumber(v)
        else
            rec.hist[k] = tonumber(v)
        end
    end
    return rec
end

local function cpu_ms(pid)
    local data = assert(io.open("/proc/" .. pid .. "/stat")):read("*a")
    local rest = data:match("^%d+ %(.*%) (.*)$")
    local f = {}
    for w in rest:gmatch("%S+") do
        f[#f + 1] = w
    end
    -- rest starts at field 3; utime and stime are fields 14 and 15, in
    -- clock ticks (USER_HZ, 100 on Linux).
    return (tonumber(f[12]) + tonumber(f[13])) * 10
end

-- bench/results.lua (when present) prints the table and appends it to
-- bench/results/latest.md; without it the same Markdown is printed only.
local has_results, results_writer = pcall(require, "results")
local function publish(title, header, rows, notes)
    if has_results then
        return results_writer.table(title, header, rows, notes)
    end
    local function line(cells)
        local out = {}
        for i = 1, #header do
            out[i] = tostring(cells[i] == nil and "-" or cells[i])
        end
        return "| " .. table.concat(out, " | ") .. " |"
    end
    local rule = {}
    for i = 1, #header do
        rule[i] = "---"
    end
    print("## " .. title)
    print("")
    print(line(header))
    print("|" .. table.concat(rule, "|") .. "|")
    for _, r in ipairs(rows) do
        print(line(r))
    end
    print("")
    for _, n in ipairs(notes) do
        print("- " .. n)
    end
end

local function spread(list)
    local lo, hi = math.huge, -math.huge
    for _, v in ipairs(list) do
        lo, hi = math.min(lo, v), math.max(hi, v)
    end
    return lo, hi
end

common.run(rt, function(zk)
    -- Keeps loop:run_once from blocking while this process only waits on
    -- the consumer's output.
    local ticker = rt:every(5, function() end, "churn-ticker")
    local svc = assert(metadata_service.start(rt, { app = APP, host = "127.0.0.1", port = 0 }))
    local md_calls = 0
    local handle = svc.handle
    svc.handle = function(self, req)
        if req.method == "getMetadataInfo" then
            md_calls = md_calls + 1
        end
        return handle(self, req)
    end
    local session = common.session(rt.loop, zk.connect_string)

    local rev_a = revision("A")
    svc:publish(rev_a)
    common.populate(rt.loop, session, APP, N, function(_, i) return make_instance(i, rev_a, svc:port()) end)
    print(string.format("churn: %d instances of %s at revision A, batches of %d, %d ms between batches, %d run(s)",
                        N, APP, BATCH, PAUSE_MS, RUNS))

    local log = os.tmpname()
    local proc = process.spawn({ argv = { package.loaded["disco.host"].exe, "run", "bench/churn_consumer.lua",
                                          zk.connect_string, APP, SID }, log = log })
    local read_lines = tail(log)
    local last -- the consumer's last line, parsed
    local function pump(on_record)
        for _, line in ipairs(read_lines()) do
            local rec = parse(line)
            if rec then
                last = rec
                if on_record then
                    on_record(rec)
                end
            end
        end
    end
    local function matches(rec, expect)
        if rec.kind ~= "change" or rec.n ~= N then
            return false
        end
        for tag, count in pairs(expect) do
            if rec.hist[tag] ~= count then
                return false
            end
        end
        return true
    end
    -- Drives the loop for ms while reading the consumer's lines.
    local function settle(ms)
        local deadline = core.hrtime() + ms
        common.wait(rt.loop, function()
            pump()
            return core.hrtime() > deadline
        end, ms + 5000, "settle")
    end

    local ok, err = pcall(function()
        local ready
        common.wait(rt.loop, function()
            pump(function(rec) ready = ready or matches(rec, { A = N }) end)
            return ready
        end, 120000, "the consumer's first complete list")
        settle(1000)

        local results = {}
        for run = 1, RUNS do
            for k = 1, 2 do
                local infos, expect = {}, {}
                for j = 1, k do
                    infos[j] = revision(string.format("r%dk%dv%d", run, k, j))
                    svc:publish(infos[j])
                    expect[infos[j].tag] = 0
                end
                for i = 0, N - 1 do
                    local info = infos[i % k + 1]
                    expect[info.tag] = expect[info.tag] + 1
                end
                local before = last
                local cpu0, md0 = cpu_ms(proc.pid), md_calls
                local t_first = core.hrtime()

                local t_last_reg, converged_at
                local function watch(rec)
                    if not converged_at and matches(rec, expect) then
                        converged_at = rec.t
                    end
                end
                for first = 0, N - 1, BATCH do
                    local pending = 0
                    for i = first, math.min(first + BATCH, N) - 1 do
                        local info = infos[i % k + 1]
                        local path, data = instance_node(i, info, svc:port())
                        pending = pending + 1
                        assert(session:delete(path, -1, function(derr)
                            assert(not derr, derr)
                            assert(session:create(path, data, nil, function(cerr)
                                assert(not cerr, cerr)
                                pending = pending - 1
                            end))
                        end))
                    end
                    common.wait(rt.loop, function()
                        pump(watch)
                        return pending == 0
                    end, 60000, "batch at " .. first)
                    t_last_reg = core.hrtime()
                    if PAUSE_MS > 0 and first + BATCH < N then
                        local deadline = core.hrtime() + PAUSE_MS
                        common.wait(rt.loop, function()
                            pump(watch)
                            return core.hrtime() >= deadline
                        end, PAUSE_MS + 5000, "pause")
                    end
                end
                common.wait(rt.loop, function()
                    pump(watch)
                    return converged_at ~= nil
                end, 120000, "convergence")
                -- Reads and calls that come after the list is complete
                -- count too: wait for the consumer to go quiet.
                settle(1000)
                results[#results + 1] = {
                    k = k, calls = md_calls - md0,
                    lists = last.lists - before.lists, reads = last.reads - before.reads,
                    fetches = last.fetches - before.fetches,
                    converge = converged_at - t_last_reg, rollout = t_last_reg - t_first,
                    cpu = cpu_ms(proc.pid) - cpu0,
                }
            end
        end

        local rows = {}
        for k = 1, 2 do
            local cols = { calls = {}, lists = {}, reads = {}, converge = {}, cpu = {}, rollout = {} }
            for _, r in ipairs(results) do
                if r.k == k then
                    for name, list in pairs(cols) do
                        list[#list + 1] = r[name]
                    end
                end
            end
            local function cell(name, fmt)
                local lo, hi = spread(cols[name])
                return string.format(fmt .. " (" .. fmt .. "-" .. fmt .. ")", common.median(cols[name]), lo, hi)
            end
            rows[k] = { string.format("A -> %d new revision%s", k, k == 1 and "" or "s"), k,
                        cell("calls", "%d"), cell("lists", "%d"), cell("reads", "%d"),
                        cell("converge", "%.1f"), cell("rollout", "%.0f"), cell("cpu", "%d") }
        end
        publish(string.format("Churn: rolling restart of %d instances under a subscribed consumer "
                              .. "(median (min-max) of %d runs)", N, RUNS),
                { "variant", "target md calls", "md calls", "zk getChildren", "zk getData",
                  "converge ms", "rollout ms", "consumer CPU ms" }, rows,
                { string.format("batches of %d instances (unregister + register with the new revision), "
                                .. "%d ms between batches; local storage: one shared MetadataService "
                                .. "counts getMetadataInfo calls", BATCH, PAUSE_MS),
                  "zk getChildren/getData: the consumer's instance watch (registry/zookeeper stats())",
                  "converge: last registration done -> the consumer's list holds every address at "
                  .. "the new revision(s); rollout: first unregister -> last registration",
                  "consumer CPU: utime+stime of the consumer process over the phase, 10 ms ticks" })
    end)
    process.signal(proc.pid, "TERM")
    process.wait_dead(proc.pid, 10000, proc.start_time)
    os.remove(log)
    ticker:close()
    session:close()
    if not ok then
        error(err, 0)
    end
end)
