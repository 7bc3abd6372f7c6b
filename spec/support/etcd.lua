-- Scaffolding of the specs that run registry/etcd against a real etcd
-- (disco.testing.etcd): one server per spec file (started on first use,
-- destroyed by the file's `teardown(etcd.teardown)`), a key prefix of its
-- own per test, and the argv of a `disco` process.
local helpers = require "spec.helpers"
local process = require "disco.testing.process"

local _M = {}

local server

--- The etcd server of this spec file, started on first use.
function _M.server()
    if not server then
        -- Kept before it starts, so that teardown removes its directory
        -- even when the start fails.
        server = require("disco.testing.etcd").server()
    end
    return server:start()
end

--- For the file's `teardown`: destroys the server.
function _M.teardown()
    if server then
        pcall(server.destroy, server)
        server = nil
    end
end

local seq = 0

--- A registry URL on the file's server with a prefix no other test uses;
-- `params` is appended as the query ("ttl=2").
function _M.url(tag, params)
    seq = seq + 1
    local prefix = string.format("/%s%d_%d_%d", tag, helpers.core.getpid(), os.time(), seq)
    return "etcd://" .. _M.server().endpoint .. prefix .. (params and ("?" .. params) or ""), prefix
end

--- The argv of `disco ARGS...` (the binary under test).
function _M.disco_argv(args)
    local argv = { helpers.disco_bin }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    return argv
end

--- For a test's `after_each`: kills the processes it started (`procs`,
-- as disco.testing.process.spawn returned them; a paused one too) and
-- closes its runtimes (`rts`), the last opened first.
function _M.clean_up(rts, procs)
    for _, proc in ipairs(procs) do
        if process.alive(proc.pid, proc.start_time) then
            process.signal(proc.pid, "CONT")
            process.signal(proc.pid, "KILL")
            process.wait_dead(proc.pid, 5000, proc.start_time)
        end
    end
    for i = #rts, 1, -1 do
        rts[i]:close()
    end
end

return _M
