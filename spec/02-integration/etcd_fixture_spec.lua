-- disco.testing.etcd: a real etcd on free loopback ports that restarts on
-- the same ports with the same data, compacts, refuses to count another
-- process's port as its own, and leaves nothing behind.
local etcd = require "disco.testing.etcd"
local process = require "disco.testing.process"

local function exists(path)
    return os.rename(path, path) ~= nil
end

describe("the etcd fixture #etcd", function()
    local servers = {}

    local function server(opts)
        local s = etcd.server(opts)
        servers[#servers + 1] = s
        return s
    end

    after_each(function()
        for _, s in ipairs(servers) do
            s:destroy()
        end
        servers = {}
    end)

    it("restarts on the same ports with the same data, and compacts", function()
        local s = server():start()
        local endpoint, pid = s.endpoint, s.pid
        assert.truthy(s:ctl({ "put", "/fixture/k", "v1" }))
        local rev = assert(s:revision())
        assert.truthy(s:ctl({ "put", "/fixture/k", "v2" }))
        s:restart()
        assert.equal(endpoint, s.endpoint)
        assert.is_not.equal(pid, s.pid)
        assert.equal("v2\n", s:ctl({ "get", "--print-value-only", "/fixture/k" }))
        -- Before a compaction the old value is readable at its revision;
        -- after it, etcd refuses that revision.
        assert.equal("v1\n", s:ctl({ "get", "--print-value-only", "--rev", tostring(rev), "/fixture/k" }))
        assert.is_true(s:compact())
        local out, err = s:ctl({ "get", "--rev", tostring(rev), "/fixture/k" })
        assert.is_nil(out)
        assert.matches("compacted", err)
    end)

    it("does not take another process's port for its own", function()
        local first = server():start()
        local second = server({ port = first.port })
        local ok, err = pcall(second.start, second, 15000)
        assert.is_false(ok)
        assert.matches("did not start: a port is held by another process", err, 1, true)
        assert.is_false(second:running())
        -- The first one still serves.
        assert.truthy(first:revision())
    end)

    it("leaves no process and no directory behind", function()
        local s = server():start()
        local pid, start_time, dir = s.pid, s._proc.start_time, s.dir
        assert.is_true(process.alive(pid, start_time))
        s:destroy()
        assert.is_true(process.wait_dead(pid, 5000, start_time))
        assert.is_false(exists(dir))
        assert.has_error(function() s:start() end)
    end)
end)
