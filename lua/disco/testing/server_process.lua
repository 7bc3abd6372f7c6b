--- The life of a test server's process, shared by the fixtures that start
-- real servers (@{disco.testing.zookeeper}'s servers, @{disco.testing.etcd}):
-- stop, kill, pause, resume and the clean-up after them, always through
-- the (pid, start time) the fixture recorded, never by name.
--
-- A fixture's server object keeps `_proc` (what @{disco.testing.process}'s
-- spawn returned, or nil), `pid`, `pgid` and `paused`;
-- `with_lifecycle(Server, label)` adds the methods below to its class.
-- @module disco.testing.server_process

local process = require("disco.testing.process")

local _M = {}

-- How long a server may take to exit on SIGTERM before its group is
-- killed; both servers exit in well under a second when healthy.
_M.STOP_GRACE_MS = 10000

--- Adds the lifecycle methods to the class `Server`; `label` names the
-- fixture in errors ("etcd fixture").
function _M.with_lifecycle(Server, label)
    local function require_running(self, what)
        if not self:running() then
            error(label .. ": " .. what .. "() on a server that is not running", 3)
        end
    end

    -- Kill whatever is left of the process group and forget the process.
    function Server:_reap()
        local proc = self._proc
        if not proc then
            return
        end
        if process.group_is_ours(proc) then
            process.kill_group(proc.pgid, "KILL")
        end
        process.wait_dead(proc.pid, 5000, proc.start_time)
        process.wait_dead(proc.pgid, 2000, proc.leader_start)
        self._proc = nil
        self.pid = nil
        self.pgid = nil
        self.paused = false
    end

    -- Ask the server to exit, without waiting (an ensemble stops all its
    -- servers at once this way).
    function Server:_request_stop()
        local proc = self._proc
        if proc and process.alive(proc.pid, proc.start_time) then
            process.signal(proc.pid, "TERM")
            -- A paused process keeps SIGTERM pending until it runs again.
            process.signal(proc.pid, "CONT")
        end
    end

    function Server:_finish_stop()
        local proc = self._proc
        if proc then
            process.wait_dead(proc.pid, _M.STOP_GRACE_MS, proc.start_time)
            self:_reap()
        end
    end

    --- Stop the server: SIGTERM, wait, then SIGKILL its process group.
    -- Keeps the data. Does nothing when it is not running.
    -- @return self
    function Server:stop()
        self:_request_stop()
        self:_finish_stop()
        return self
    end

    --- Kill the server with SIGKILL, like a crash. Keeps the data.
    -- @return self
    function Server:kill()
        local proc = self._proc
        if proc and process.alive(proc.pid, proc.start_time) then
            process.signal(proc.pid, "KILL")
        end
        self:_reap()
        return self
    end

    --- Freeze the process with SIGSTOP, like a long GC pause or a hung VM:
    -- its port still accepts connections, but nothing answers.
    -- @return self
    function Server:pause()
        require_running(self, "pause")
        process.signal(self.pid, "STOP")
        self.paused = true
        return self
    end

    --- Continue a paused server with SIGCONT.
    -- @return self
    function Server:resume()
        require_running(self, "resume")
        process.signal(self.pid, "CONT")
        self.paused = false
        return self
    end

    --- Whether this server's process is alive (paused counts as alive).
    -- @treturn boolean
    function Server:running()
        local proc = self._proc
        return proc ~= nil and process.alive(proc.pid, proc.start_time)
    end

    return Server
end

return _M
