--- Asking a ZooKeeper server from outside, independently of disco's
-- client: four-letter words on its client port, and one-shot zkCli
-- commands.
--
-- @module disco.testing.zookeeper.commands

local process = require("disco.testing.process")
local jvm = require("disco.testing.zookeeper.jvm")

local _M = {}

local quote = process.quote
local string_format = string.format
local table_concat = table.concat
local tonumber = tonumber
local tostring = tostring
local type = type

local CLI_CLASS = jvm.CLI_CLASS

local function check_port(port, who)
    port = tonumber(port)
    if not port or port < 1 or port > 65535 or port ~= math.floor(port) then
        error("zookeeper." .. who .. ": invalid port " .. tostring(port), 3)
    end
    return port
end

-- Connects fd 3 to `port` on 127.0.0.1 and runs the bash `script` on it,
-- all bounded by `timeout_ms` (timeout signals its whole process group).
-- Returns the script's output, or nil and "timeout" or "connection
-- refused" (any other failure).
local function converse(port, script, timeout_ms)
    local secs = string_format("%.3f", timeout_ms / 1000)
    script = "exec 3<>/dev/tcp/127.0.0.1/" .. port .. " && " .. script
    local p = io.popen("timeout -k 1 " .. secs .. " bash -c " .. quote(script)
        .. " 2>/dev/null; printf '\\n__disco_rc=%d\\n' \"$?\"")
    local out = p:read("*a") or ""
    p:close()
    local answer, rc = out:match("^(.*)\n__disco_rc=(%d+)\n$")
    rc = tonumber(rc)
    if rc == 0 then
        return answer
    elseif rc == 124 or rc == 137 then
        return nil, "timeout"
    end
    return nil, "connection refused"
end

--- Send a four-letter word to a port on 127.0.0.1.
-- @tparam number port
-- @tparam string cmd e.g. "srvr", "conf", "ruok"
-- @tparam[opt=2000] number timeout_ms bound on connect plus answer
-- @treturn string|nil the answer
-- @treturn[opt] string "timeout", "connection refused" or "no answer"
function _M.four_letter(port, cmd, timeout_ms)
    port = check_port(port, "four_letter")
    if type(cmd) ~= "string" or not cmd:match("^%l%l%l%l$") then
        error("zookeeper.four_letter: invalid command " .. tostring(cmd), 2)
    end
    -- cat replaces bash: no reader outlives the script to hold our pipe.
    local answer, err = converse(port, "printf %s " .. cmd .. " >&3 && exec cat <&3", timeout_ms or 2000)
    if answer == "" then
        return nil, "no answer"
    end
    return answer, err
end

-- A ConnectRequest for a new session (protocol 0, no zxid seen, 4000 ms,
-- session 0, an empty 16-byte password, not read-only) and a closeSession
-- request, each behind its length, as printf escapes.
local CONNECT_REQUEST = "\\x00\\x00\\x00\\x2d" .. string.rep("\\x00", 12)
    .. "\\x00\\x00\\x0f\\xa0" .. string.rep("\\x00", 8)
    .. "\\x00\\x00\\x00\\x10" .. string.rep("\\x00", 17)
local CLOSE_REQUEST = "\\x00\\x00\\x00\\x08\\x00\\x00\\x00\\x01\\xff\\xff\\xff\\xf5"

--- Open a new session on a port on 127.0.0.1 and close it again, speaking
-- the client protocol by hand. A server grants a new session only once the
-- leader has committed it with a quorum, so this tells a serving ensemble
-- from one that elected a leader but commits nothing (ZooKeeper 3.8.0 can
-- sit like that after a sync, see docs/testing.md). Independent of disco's
-- client.
-- @tparam number port
-- @tparam[opt=5000] number timeout_ms bound on connect plus answer
-- @treturn string|nil the session id, 16 hex digits
-- @treturn[opt] string "timeout", "connection refused" or "no session"
--   (the server closed the connection: it is not serving)
function _M.open_session(port, timeout_ms)
    port = check_port(port, "open_session")
    -- The answer's first 20 bytes: length, protocol, timeout, session id.
    local answer, err = converse(port, "printf '" .. CONNECT_REQUEST .. "' >&3"
        .. " && od -An -v -tx1 -N 20 <&3"
        .. " && printf '" .. CLOSE_REQUEST .. "' >&3", timeout_ms or 5000)
    if not answer then
        return nil, err
    end
    local hex = answer:gsub("%s+", "")
    local timeout, session = hex:match("^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x(%x%x%x%x%x%x%x%x)(%x+)$")
    if not session or #session ~= 16 or tonumber(timeout, 16) == 0 or session:match("^0+$") then
        return nil, "no session"
    end
    return session
end

--- Run one zkCli command (org.apache.zookeeper.ZooKeeperMain) and return
-- its output, for checking server state independently of disco's client.
-- Takes about half a second (a JVM start).
-- @tparam string connect_string
-- @tparam {string,...} args e.g. `{"create", "/x", "data"}`
-- @tparam[opt] table opts `timeout_ms` (15000), `classpath`, `java`
-- @treturn string|nil output (stdout and stderr, log lines excluded)
-- @treturn[opt] string error
function _M.cli(connect_string, args, opts)
    opts = opts or {}
    local secs = string_format("%.3f", (opts.timeout_ms or 15000) / 1000)
    local argv = {
        opts.java or "java", "-Xmx64m", "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
        "-cp", table_concat(opts.classpath or jvm.DEFAULT_CLASSPATH, ":"),
        CLI_CLASS, "-server", connect_string,
    }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    local words = {}
    for i, a in ipairs(argv) do
        words[i] = quote(a)
    end
    -- No sanitizer preload (`make asan`) may reach the JVM.
    local p = io.popen("env -u LD_PRELOAD timeout -k 1 " .. secs .. " " .. table_concat(words, " ")
        .. " </dev/null 2>&1; printf '\\n__disco_rc=%d\\n' \"$?\"")
    local out = p:read("*a") or ""
    p:close()
    local text, rc = out:match("^(.*)\n__disco_rc=(%d+)\n$")
    rc = tonumber(rc)
    if rc == 124 or rc == 137 then
        return nil, "timeout"
    end
    local kept = {}
    for line in (text or ""):gmatch("[^\n]*") do
        -- Drop the client's log and connection chatter, keep the answer.
        if line ~= "" and not line:match("^log4j:")
            and not line:match("^Connecting to ")
            and not line:match("^WATCHER::$")
            and not line:match("^WatchedEvent state:") then
            kept[#kept + 1] = line
        end
    end
    return table_concat(kept, "\n")
end

return _M
