--- Test helpers shared by every spec: driving the loop, temporary
-- directories, the disco binary, and ZooKeeper servers (Debian's, started
-- for real by disco.testing.zookeeper).
-- @module spec.helpers

local core = require "disco.core"
local files = require "disco.testing.files"

local _M = {}

local BUILD = os.getenv("BUILD") or "build"

--- The host binary under test (build/disco, or build-asan/disco under
-- `make asan`).
_M.disco_bin = BUILD .. "/disco"

--- Drives `loop` until `predicate()` returns true or `timeout_ms` passes.
-- A guard timer wakes the loop every few milliseconds so that run_once never
-- blocks past the deadline even when nothing else is pending.
-- @treturn boolean whether the predicate became true
function _M.run_until(loop, predicate, timeout_ms)
    if loop.loop then
        loop = loop.loop -- a disco runtime
    end
    timeout_ms = timeout_ms or 5000
    if predicate() then
        return true
    end
    local guard = assert(loop:timer("run_until"))
    assert(guard:start(5, 5, function() end))
    loop:update_time()
    local deadline = loop:now() + timeout_ms
    local met = false
    while loop:now() < deadline do
        loop:run_once()
        if predicate() then
            met = true
            break
        end
    end
    guard:close()
    loop:step() -- let the guard's close complete
    return met
end

local tmp_root = os.getenv("DISCO_TEST_TMPDIR") or "/tmp"
local tmpdirs = {}

local function shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.shell_quote = shell_quote

--- A fresh temporary directory, removed when the run ends.
function _M.tmpdir()
    local pipe = assert(io.popen("mktemp -d " .. shell_quote(tmp_root .. "/spec.XXXXXX")))
    local dir = pipe:read("*l")
    pipe:close()
    assert(dir and dir ~= "", "mktemp failed")
    tmpdirs[#tmpdirs + 1] = dir
    return dir
end

--- Writes `content` to `path`.
function _M.write_file(path, content)
    files.write_file(path, content)
    return path
end

--- Reads a whole file, or nil.
function _M.read_file(path)
    return (files.read_file(path))
end

--- Runs the disco binary with `args` (a list) and returns its exit status,
-- stdout and stderr. `opts.timeout` (seconds, default 30) bounds it: a
-- command that hangs is killed and reported as status 124.
function _M.run_disco(args, opts)
    opts = opts or {}
    local dir = _M.tmpdir()
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local parts = { "timeout", "-s", "KILL", tostring(opts.timeout or 30),
                    shell_quote(_M.disco_bin) }
    if os.getenv("SANITIZE") == "1" then
        -- The host binary closes its Lua state before exiting, so under
        -- `make asan` it is checked for leaks, unlike luajit running busted.
        table.insert(parts, 1, "ASAN_OPTIONS=detect_leaks=1")
    end
    for _, a in ipairs(args) do
        parts[#parts + 1] = shell_quote(a)
    end
    local cmd = table.concat(parts, " ") .. " >" .. shell_quote(out)
        .. " 2>" .. shell_quote(err) .. "; echo $?"
    local pipe = assert(io.popen(cmd))
    local status = tonumber(pipe:read("*l"))
    pipe:close()
    return status, _M.read_file(out), _M.read_file(err)
end

local shared_zk

--- The ZooKeeper server shared by every spec of this busted run that does
-- not need its own; started on first use, stopped at the end of the run.
-- Specs must not stop, pause or kill it: use `zookeeper_server()` for that.
function _M.zookeeper()
    if shared_zk == nil then
        local zookeeper = require "disco.testing.zookeeper"
        local server = zookeeper.server()
        server:start()
        shared_zk = server
    end
    return shared_zk
end

local own_servers = {}

--- A ZooKeeper server of the spec's own (not started). The caller destroys
-- it, preferably in a `finally`; the end of the run destroys it otherwise.
function _M.zookeeper_server(opts)
    local zookeeper = require "disco.testing.zookeeper"
    local server = zookeeper.server(opts)
    own_servers[#own_servers + 1] = server
    return server
end

--- Stops every server the helpers started and removes their temporary
-- directories. Called once when the busted run ends.
function _M.teardown()
    for _, server in ipairs(own_servers) do
        pcall(server.destroy, server)
    end
    own_servers = {}
    if shared_zk then
        pcall(shared_zk.destroy, shared_zk)
        shared_zk = nil
    end
    for _, dir in ipairs(tmpdirs) do
        os.execute("rm -rf " .. shell_quote(dir))
    end
    tmpdirs = {}
end

_M.core = core

return _M
