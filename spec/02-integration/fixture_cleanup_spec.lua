-- The promise of the test harness: a ZooKeeper started by the helpers never
-- outlives the test run, even when a spec fails or the runner is killed.
local helpers = require "spec.helpers"
local process = require "disco.testing.process"

local q = helpers.shell_quote

local function exists(path)
    return os.rename(path, path) ~= nil
end

local function read_report(path)
    local entries = {}
    for line in (helpers.read_file(path) or ""):gmatch("[^\n]+") do
        local pid, dir = line:match("^(%d+) (.+)$")
        entries[#entries + 1] = { pid = tonumber(pid), dir = dir }
    end
    return entries
end

describe("the ZooKeeper fixture #zookeeper", function()
    it("leaves no process and no directory behind when a spec fails", function()
        local dir = helpers.tmpdir()
        local report = dir .. "/report"
        helpers.write_file(dir .. "/inner_spec.lua", [[
            local helpers = require "spec.helpers"
            describe("inner", function()
                it("fails after starting two servers", function()
                    local shared = helpers.zookeeper()
                    local own = helpers.zookeeper_server()
                    own:start()
                    local f = assert(io.open(os.getenv("INNER_REPORT"), "w"))
                    f:write(shared.pid, " ", shared.dir, "\n", own.pid, " ", own.dir, "\n")
                    f:close()
                    assert.equals("expected", "a failure")
                end)
            end)
        ]])
        local inner_tmp = dir .. "/tmp"
        os.execute("mkdir " .. q(inner_tmp))
        local cmd = table.concat({
            "DISCO_TEST_TMPDIR=" .. q(inner_tmp),
            "DISCO_TEST_PIDFILE=" .. q(dir .. "/pgids"),
            "INNER_REPORT=" .. q(report),
            "timeout -s KILL 120 luajit /usr/bin/busted --helper=spec/support/busted_helper.lua",
            "-o utfTerminal", q(dir .. "/inner_spec.lua"),
            ">" .. q(dir .. "/out") .. " 2>&1; echo $?",
        }, " ")
        local pipe = assert(io.popen(cmd))
        local status = tonumber(pipe:read("*l"))
        pipe:close()
        local output = helpers.read_file(dir .. "/out")
        assert.equals(1, status, output)
        assert.matches("0 successes / 1 failure", output)
        local servers = read_report(report)
        assert.equals(2, #servers, output)
        for _, server in ipairs(servers) do
            assert.is_false(process.alive(server.pid))
            assert.is_false(exists(server.dir))
            assert.same({}, process.find(server.dir))
        end
    end)

    it("dies with a test process that is killed outright", function()
        local dir = helpers.tmpdir()
        local report = dir .. "/report"
        local script = helpers.write_file(dir .. "/owner.lua", [[
            local zookeeper = require "disco.testing.zookeeper"
            local zk = zookeeper.server({ tmp_root = arg[2] })
            zk:start()
            local f = assert(io.open(arg[1], "w"))
            f:write(zk.pid, " ", zk.dir, "\n")
            f:close()
            for _ = 1, 600 do -- at most a minute, then give up by itself
                require("disco.testing.process").sleep(100)
            end
        ]])
        -- The script bounds itself (ZooKeeper's start, then a minute).
        local cmd = "luajit " .. q(script) .. " " .. q(report) .. " "
            .. q(dir) .. " >" .. q(dir .. "/out") .. " 2>&1 & echo $!"
        local pipe = assert(io.popen(cmd))
        local owner = tonumber(pipe:read("*l"))
        pipe:close()
        local deadline = os.time() + 60
        while not helpers.read_file(report) and os.time() < deadline do
            process.sleep(50)
        end
        local servers = read_report(report)
        assert.equals(1, #servers, helpers.read_file(dir .. "/out"))
        assert.is_true(process.alive(servers[1].pid))
        -- SIGKILL: no cleanup code of the owner runs.
        assert.is_true(process.signal(owner, "KILL"))
        assert.is_true(process.wait_dead(servers[1].pid, 10000))
        os.execute("rm -rf " .. q(servers[1].dir))
    end)
end)
