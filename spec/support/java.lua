--- The Java interop peer (spec/interop/*.java) for the specs: compiled once
-- per busted run with javac against Caucho Hessian (Debian's
-- libhessian-java), run in the foreground with a time bound, or started in
-- the background under disco.testing.process's watchdog.
--
-- Busted reloads this module for every spec file, but spec.helpers is one
-- instance for the whole run (spec/support/busted_helper.lua loads it
-- first), so the compiled classes and the vectors are remembered there.
-- @module spec.support.java

local helpers = require "spec.helpers"
local process = require "disco.testing.process"

local _M = {}

--- Where Debian's libhessian-java puts Caucho Hessian.
_M.HESSIAN_JAR = "/usr/share/java/hessian.jar"

-- Caucho's SerializerFactory reflects into these JDK packages; on JDK 17 it
-- fails in its static initialiser without them (WIRE.md §7b).
local JVM_FLAGS = {
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "--add-opens", "java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens", "java.base/java.math=ALL-UNNAMED",
}

local SOURCES = {
    "spec/interop/Interop.java",
    "spec/interop/Json.java",
    "spec/interop/Dubbo.java",
    "spec/interop/org/apache/dubbo/metadata/MetadataInfo.java",
    "spec/interop/org/apache/dubbo/metadata/MetadataInfoV9.java",
}

local q = helpers.shell_quote

local function shared()
    local s = rawget(helpers, "java_interop")
    if not s then
        s = {}
        helpers.java_interop = s
    end
    return s
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

-- Runs a shell command line bounded by `seconds`; returns the exit status
-- (124/137 when killed), stdout and stderr. The sanitizer runtimes that
-- `make asan` preloads into busted must not reach a JVM.
local function run(cmdline, seconds)
    local dir = helpers.tmpdir()
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local cmd = "env -u LD_PRELOAD timeout -s KILL " .. tostring(seconds) .. " " .. cmdline
        .. " >" .. q(out) .. " 2>" .. q(err) .. "; echo $?"
    local pipe = assert(io.popen(cmd))
    local status = tonumber(pipe:read("*l"))
    pipe:close()
    return status, helpers.read_file(out) or "", helpers.read_file(err) or ""
end

--- The directory of the compiled peer; compiles it on first use. Raises a
-- message naming the missing Debian package when javac or Hessian is
-- absent, or javac's output when compiling fails.
-- @treturn string
function _M.classes()
    local s = shared()
    if s.classes then
        return s.classes
    end
    if s.compile_error then
        error(s.compile_error, 2)
    end
    local why
    if not process.shell("command -v javac >/dev/null") then
        why = "javac not found: the interop specs need a JDK (Debian package default-jdk-headless)"
    elseif not exists(_M.HESSIAN_JAR) then
        why = _M.HESSIAN_JAR .. " not found: the interop specs need Caucho Hessian"
            .. " (Debian package libhessian-java)"
    else
        local dir = helpers.tmpdir()
        local words = {}
        for i, src in ipairs(SOURCES) do
            words[i] = q(src)
        end
        local status, out, err = run("javac -encoding UTF-8 -nowarn -cp " .. q(_M.HESSIAN_JAR)
            .. " -d " .. q(dir) .. " " .. table.concat(words, " "), 120)
        if status == 0 then
            s.classes = dir
            return dir
        end
        why = "javac spec/interop failed (status " .. tostring(status) .. "):\n" .. out .. err
    end
    s.compile_error = why
    error(why, 2)
end

--- The argv that runs the peer in `mode` with `args`.
-- @tparam {string,...} args mode and arguments, e.g. `{ "print", file }`
-- @treturn {string,...}
function _M.argv(args)
    local argv = { "java" }
    for _, flag in ipairs(JVM_FLAGS) do
        argv[#argv + 1] = flag
    end
    argv[#argv + 1] = "-cp"
    argv[#argv + 1] = _M.classes() .. ":" .. _M.HESSIAN_JAR
    argv[#argv + 1] = "Interop"
    for _, a in ipairs(args) do
        argv[#argv + 1] = tostring(a)
    end
    return argv
end

--- Runs the peer to completion (killed after `seconds`, default 60).
-- @treturn number exit status
-- @treturn string stdout
-- @treturn string stderr
function _M.run(args, seconds)
    local words = {}
    for i, a in ipairs(_M.argv(args)) do
        words[i] = q(a)
    end
    return run(table.concat(words, " "), seconds or 60)
end

--- Starts the peer in the background (so that this process can drive its
-- own loop, e.g. a disco server the peer calls) under the watchdog of
-- disco.testing.process. Poll it with @{result}; @{kill} it when done.
-- @treturn table a handle
function _M.start(args)
    local dir = helpers.tmpdir()
    local h = { out = dir .. "/stdout", err = dir .. "/stderr", status = dir .. "/status" }
    local words = {}
    for i, a in ipairs(_M.argv(args)) do
        words[i] = q(a)
    end
    local script = "timeout -s KILL 60 " .. table.concat(words, " ") .. " >" .. q(h.out) .. " 2>" .. q(h.err)
        .. "; echo $? >" .. q(h.status .. ".tmp") .. " && mv " .. q(h.status .. ".tmp") .. " " .. q(h.status)
    h.proc = process.spawn({ argv = { "sh", "-c", script } })
    return h
end

--- The exit status, stdout and stderr of a peer started by @{start}, or
-- nil while it runs.
function _M.result(h)
    local s = helpers.read_file(h.status)
    local status = s and tonumber(s:match("%d+"))
    if not status then
        return nil
    end
    return status, helpers.read_file(h.out) or "", helpers.read_file(h.err) or ""
end

--- Kills a peer started by @{start} (its own process group) if it runs.
function _M.kill(h)
    if process.group_is_ours(h.proc) then
        process.kill_group(h.proc.pgid, "KILL")
    end
end

--- The vectors directory (`Interop vectors DIR`), written once per run.
-- @treturn string
function _M.vectors()
    local s = shared()
    if s.vectors then
        return s.vectors
    end
    local dir = helpers.tmpdir() .. "/vectors"
    local status, out, err = _M.run({ "vectors", dir })
    if status ~= 0 then
        error("Interop vectors failed (status " .. tostring(status) .. "):\n" .. out .. err, 2)
    end
    s.vectors = dir
    return dir
end

--- Starts `Interop serve` in the background and waits for its port.
-- @tparam string app
-- @tparam string revision
-- @tparam string json the remote-form MetadataInfo it serves
-- @treturn table `{ port=, proc=, log= }`; stop it with @{stop}
function _M.serve(app, revision, json)
    local dir = helpers.tmpdir()
    local json_file = helpers.write_file(dir .. "/metadata.json", json)
    local port_file = dir .. "/port"
    local log = dir .. "/serve.log"
    local proc = process.spawn({ argv = _M.argv({ "serve", port_file, app, revision, json_file }), log = log })
    local deadline = process.now_ms() + 30000
    local port
    while process.now_ms() < deadline do
        port = tonumber((helpers.read_file(port_file) or ""):match("^(%d+)"))
        if port or not process.alive(proc.pid, proc.start_time) then
            break
        end
        process.sleep(50)
    end
    if not port then
        _M.stop({ proc = proc })
        error("Interop serve did not report a port:\n" .. (helpers.read_file(log) or ""), 2)
    end
    return { port = port, proc = proc, log = log }
end

--- Stops a peer started by @{serve}: SIGTERM to its pid, then waits.
function _M.stop(server)
    local proc = server.proc
    if process.alive(proc.pid, proc.start_time) then
        process.signal(proc.pid, "TERM")
        process.wait_dead(proc.pid, 10000, proc.start_time)
    end
end

return _M
