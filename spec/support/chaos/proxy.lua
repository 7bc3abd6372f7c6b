--- Drives one spec/chaos/fault_proxy process: started through
-- disco.testing.process (watchdog, recorded process group), commanded over
-- its control port with bash's /dev/tcp, bounded in time.
local files = require "disco.testing.files"
local process = require "disco.testing.process"

local _M = {}

local BUILD = os.getenv("BUILD") or "build"
_M.binary = BUILD .. "/chaos/fault_proxy"

local Proxy = {}
Proxy.__index = Proxy

--- Starts a proxy in front of `target_ports` (127.0.0.1); `log` receives
-- its output. Returns the proxy once it is listening; raises otherwise.
function _M.start(target_ports, log)
    local argv = { _M.binary }
    for i, port in ipairs(target_ports) do
        argv[i + 1] = tostring(port)
    end
    local proc = process.spawn({ argv = argv, log = log })
    local self = setmetatable({ proc = proc, log = log, routes = {} }, Proxy)
    local deadline = process.now_ms() + 10000
    while true do
        local text = files.read_file(log) or ""
        if text:find("\nready\n", 1, true) then
            self.control = tonumber(text:match("control (%d+)"))
            for index, listen in text:gmatch("route (%d+) (%d+) %d+") do
                self.routes[tonumber(index) + 1] = tonumber(listen)
            end
            return self
        end
        if not process.alive(proc.pid, proc.start_time) or process.now_ms() > deadline then
            error("fault_proxy did not start: " .. text)
        end
        process.sleep(20)
    end
end

--- The ZooKeeper connect string through this proxy.
function Proxy:connect_string()
    local parts = {}
    for i, port in ipairs(self.routes) do
        parts[i] = "127.0.0.1:" .. port
    end
    return table.concat(parts, ",")
end

--- Sends one command; returns the answer's lines (without "ok"), or nil
-- and the answer or the failure.
function Proxy:command(line)
    local script = "exec 3<>/dev/tcp/127.0.0.1/" .. self.control
        .. " && printf '%s\\n' " .. process.quote(line) .. " >&3"
        .. " && while read -r l <&3; do echo \"$l\"; case $l in ok|error*) break;; esac; done"
    local p = io.popen("unset LD_PRELOAD; timeout -k 1 5 bash -c " .. process.quote(script)
        .. " 2>&1")
    local out = p:read("*a") or ""
    p:close()
    local lines = {}
    for l in out:gmatch("[^\n]+") do
        if l == "ok" then
            return lines
        end
        lines[#lines + 1] = l
    end
    return nil, "fault_proxy '" .. line .. "': " .. (out ~= "" and out or "no answer")
end

--- Like command, but raises on failure.
function Proxy:must(line)
    local lines, err = self:command(line)
    if not lines then
        error(err, 2)
    end
    return lines
end

--- Per route (1-based): `{ mode =, conns =, idle_ms = }`.
function Proxy:stats()
    local out = {}
    for _, l in ipairs(self:must("stats")) do
        local index, mode, conns, idle = l:match("^route (%d+) %d+ %d+ (%a+) %d+ (%d+) %d+ (%-?%d+)$")
        if index then
            out[tonumber(index) + 1] = { mode = mode, conns = tonumber(conns), idle_ms = tonumber(idle) }
        end
    end
    return out
end

--- The route (1-based) whose server answered last, i.e. the server the
-- client is connected to; nil when no route has a connection.
function Proxy:active_route()
    local best, best_idle
    for i, s in ipairs(self:stats()) do
        if s.conns > 0 and s.idle_ms >= 0 and (not best_idle or s.idle_ms < best_idle) then
            best, best_idle = i, s.idle_ms
        end
    end
    return best
end

function Proxy:alive()
    return process.alive(self.proc.pid, self.proc.start_time)
end

--- Ends the proxy (by its pid).
function Proxy:stop()
    if self:alive() then
        process.signal(self.proc.pid, "KILL")
        process.wait_dead(self.proc.pid, 5000, self.proc.start_time)
    end
end

return _M
