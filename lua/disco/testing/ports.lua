--- Free loopback ports for test servers.
--
-- Ports are chosen at random in 20000-59999, outside the kernel's ephemeral
-- range, skipping every port some local socket already uses, and stay
-- reserved for the lifetime of the Lua process. A port that looks free may
-- still be taken before a server binds it: servers must detect that and ask
-- for another one.
--
-- @module disco.testing.ports

local files = require("disco.testing.files")
local process = require("disco.testing.process")

local _M = {}

local quote = process.quote
local now_ms = process.now_ms
local shell = process.shell
local read_file = files.read_file
local string_format = string.format
local tonumber = tonumber

local PORT_MIN, PORT_MAX = 20000, 59999

-- Ports handed out by this process. A port is kept for the lifetime of the
-- Lua process so that two fixtures never race for the same port before
-- either has bound it.
local reserved = {}

local function random_u32()
    local f = io.open("/dev/urandom", "rb")
    if f then
        local b = f:read(4)
        f:close()
        if b and #b == 4 then
            local b1, b2, b3, b4 = b:byte(1, 4)
            return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
        end
    end
    -- Not cryptographic, only needs to differ between concurrent runs.
    return (process.self_pid() * 7919 + math.floor(now_ms())) % 4294967296
end

-- Every local TCP port in use in this network namespace, in any state.
local function ports_in_use()
    local used, readable = {}, false
    for _, path in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
        local f = io.open(path, "r")
        if f then
            readable = true
            for line in f:lines() do
                local hex = line:match("^%s*%d+:%s+%x+:(%x+)%s")
                if hex then
                    used[tonumber(hex, 16)] = true
                end
            end
            f:close()
        end
    end
    return used, readable
end

local function port_answers(port)
    local ok = shell(string_format(
        "timeout 1 bash -c %s",
        quote("exec 3<>/dev/tcp/127.0.0.1/" .. port)))
    return ok
end

-- Candidate port ranges: 20000-59999 minus the kernel's ephemeral range,
-- because an outgoing connection may take an ephemeral port between our
-- choice and the server's bind. Falls back to the whole range when the
-- difference is too small.
local function port_ranges()
    local ranges = {}
    local data = read_file("/proc/sys/net/ipv4/ip_local_port_range")
    local lo, hi = (data or ""):match("(%d+)%s+(%d+)")
    lo, hi = tonumber(lo), tonumber(hi)
    local total = 0
    if lo and hi then
        if lo - 1 >= PORT_MIN then
            local top = math.min(lo - 1, PORT_MAX)
            ranges[#ranges + 1] = { PORT_MIN, top }
            total = total + top - PORT_MIN + 1
        end
        if hi + 1 <= PORT_MAX then
            local bottom = math.max(hi + 1, PORT_MIN)
            ranges[#ranges + 1] = { bottom, PORT_MAX }
            total = total + PORT_MAX - bottom + 1
        end
    end
    if total < 1000 then
        return { { PORT_MIN, PORT_MAX } }, PORT_MAX - PORT_MIN + 1
    end
    return ranges, total
end

--- Choose a free-looking loopback port and reserve it for this process.
-- A port nobody listens on now may still be taken before the server binds
-- it; the server's start() detects that and retries.
-- @treturn number
function _M.pick_port()
    local ranges, total = port_ranges()
    local used, readable = ports_in_use()
    for _ = 1, 500 do
        local k = random_u32() % total
        local port
        for _, r in ipairs(ranges) do
            local size = r[2] - r[1] + 1
            if k < size then
                port = r[1] + k
                break
            end
            k = k - size
        end
        if not reserved[port] and not used[port]
            and (readable or not port_answers(port)) then
            reserved[port] = true
            return port
        end
    end
    error("disco.testing: no free port found in " .. PORT_MIN .. "-" .. PORT_MAX)
end

return _M
