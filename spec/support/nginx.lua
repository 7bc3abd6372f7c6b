--- Debian's nginx with the Lua module, for the OpenResty specs and the
-- bench: a generated configuration in a temporary prefix (under
-- DISCO_TEST_TMPDIR), free loopback ports, the master started in the
-- foreground under the process watchdog (recorded, ended by PID), HUP
-- reloads, the worker PIDs, and HTTP requests through curl.
--
--    local nginx = require "spec.support.nginx"
--    local srv = nginx.new({ http = "server { listen 127.0.0.1:${port}; ... }" })
--    srv:start()
--    local res = srv:get("/")            -- { status =, body = }
--    srv:stop()
--
-- `http` (and `main`) are templates: ${port} (a free port picked for this
-- server), ${root} (the repository), ${build} (the build directory) and
-- ${prefix} are replaced; `vars` adds more. Or `conf`, a complete
-- configuration (see `from_file`), run with `-p nginx_prefix`.
-- @module spec.support.nginx

local process = require "disco.testing.process"
local ports = require "disco.testing.ports"

local _M = {}

_M.BINARY = "/usr/sbin/nginx"
_M.MODULES = { "/usr/lib/nginx/modules/ndk_http_module.so",
               "/usr/lib/nginx/modules/ngx_http_lua_module.so" }

local quote = process.quote

local files = require "disco.testing.files"
local read_file, write_file = files.read_file, files.write_file

local function shell_out(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    return out
end

--- Whether nginx and its Lua module are installed.
function _M.available()
    if not io.open(_M.BINARY, "r") then
        return false
    end
    for _, path in ipairs(_M.MODULES) do
        local f = io.open(path, "r")
        if not f then
            return false
        end
        f:close()
    end
    return true
end

local function render(template, vars)
    return (template:gsub("%${([%w_]+)}", function(name)
        local v = vars[name]
        if v == nil then
            error("nginx config: no value for ${" .. name .. "}", 0)
        end
        return tostring(v)
    end))
end
_M.render = render

local server = {}
server.__index = server

--- A server (not started). `opts`: `http` (the http block's content),
-- `main` (main-context directives), `workers` (2), `vars`, `start_ms`
-- (how long `start` waits for an answer, 10000; longer under valgrind).
function _M.new(opts)
    local root = os.getenv("PWD") or shell_out("pwd"):gsub("%s+$", "")
    local build = os.getenv("BUILD") or "build"
    local tmp = os.getenv("DISCO_TEST_TMPDIR") or "/tmp"
    local prefix = shell_out("mktemp -d " .. quote(tmp .. "/nginx.XXXXXX")):gsub("%s+$", "")
    assert(prefix ~= "", "mktemp failed")
    local self = setmetatable({
        prefix = prefix,
        port = ports.pick_port(),
        workers = opts.workers or 2,
        opts = opts,
        vars = {},
    }, server)
    local vars = self.vars
    vars.port, vars.root, vars.build, vars.prefix = self.port, root, build, prefix
    vars.lua_path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;;"
    vars.lua_cpath = root .. "/" .. build .. "/lib/?.so;;"
    for k, v in pairs(opts.vars or {}) do
        vars[k] = v
    end
    self.conf_path = prefix .. "/nginx.conf"
    self.error_log = prefix .. "/error.log"
    self.pid_path = prefix .. "/nginx.pid"
    self:write_conf()
    return self
end

-- As root, nginx would switch the workers to nobody, who cannot read the
-- private test directories.
local function user_line()
    if shell_out("id -u"):match("^0") then
        return "user root root;\n"
    end
    return ""
end

--- A server running the configuration file `path` (relative to the
-- repository) with its text replaced first: `replace` is a list of
-- { plain_text, replacement } pairs, each of which must occur. ${prefix}
-- in a replacement is this server's temporary prefix, ${port} its port,
-- ${root} the repository, ${build} the build directory. nginx runs with
-- `-p` the repository (so that `$prefix/lua` is the source tree).
function _M.from_file(path, replace, opts)
    local text = assert(read_file(path), "cannot read " .. path)
    local srv = _M.new({ conf = "", workers = opts and opts.workers })
    for _, pair in ipairs(replace) do
        local from, to = pair[1], render(pair[2], srv.vars)
        local first = text:find(from, 1, true)
        if not first then
            error("nginx config " .. path .. ": no '" .. from .. "' to replace", 2)
        end
        local parts = {}
        local pos = 1
        while first do
            parts[#parts + 1] = text:sub(pos, first - 1)
            parts[#parts + 1] = to
            pos = first + #from
            first = text:find(from, pos, true)
        end
        parts[#parts + 1] = text:sub(pos)
        text = table.concat(parts)
    end
    srv.opts.conf = text
    srv.opts.nginx_prefix = srv.vars.root
    srv:write_conf()
    return srv
end

--- (Re)writes the configuration from the templates (a reload reads it).
function server:write_conf(http)
    if self.opts.conf then
        write_file(self.conf_path, user_line() .. self.opts.conf)
        return
    end
    if http then
        self.opts.http = http
    end
    local lines = {}
    for _, path in ipairs(_M.MODULES) do
        lines[#lines + 1] = "load_module " .. path .. ";"
    end
    lines[#lines + 1] = user_line()
    local p = self.prefix
    lines[#lines + 1] = render([[
worker_processes ${workers};
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
worker_shutdown_timeout 10s;
events { worker_connections 1024; }
]], { workers = self.workers, prefix = p })
    lines[#lines + 1] = render(self.opts.main or "", self.vars)
    lines[#lines + 1] = "http {"
    lines[#lines + 1] = render([[
    access_log off;
    client_body_temp_path ${prefix}/client_body;
    proxy_temp_path ${prefix}/proxy;
    fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi;
    scgi_temp_path ${prefix}/scgi;
    lua_package_path "${lua_path}";
    lua_package_cpath "${lua_cpath}";
]], self.vars)
    lines[#lines + 1] = render(self.opts.http or "", self.vars)
    lines[#lines + 1] = "}"
    write_file(self.conf_path, table.concat(lines, "\n") .. "\n")
end

--- Checks the configuration with `nginx -t`; returns ok, output.
function server:test_conf()
    local ok, out = process.shell(string.format("%s -t -p %s -c %s -e %s", _M.BINARY,
        quote(self.prefix), quote(self.conf_path), quote(self.prefix .. "/test.log")))
    return ok, out
end

-- Sanitizer runtimes: under `make asan` the disco module nginx loads is
-- instrumented, so nginx needs them preloaded (process.spawn drops
-- LD_PRELOAD unless it is passed explicitly).
local function sanitizer_env()
    local env = {}
    local preload = os.getenv("LD_PRELOAD")
    if preload and preload ~= "" then
        env.LD_PRELOAD = preload
        env.ASAN_OPTIONS = os.getenv("ASAN_OPTIONS") or "detect_leaks=0"
    end
    return env
end

local function http_ready(port)
    return process.shell(string.format(
        "env -u LD_PRELOAD curl -s -o /dev/null --max-time 1 http://127.0.0.1:%d/ 2>/dev/null", port))
end

--- Starts the master (foreground, under the watchdog) and waits until it
-- answers on its port (`start_ms`, 10 s by default, at most); raises with
-- the error log otherwise.
function server:start()
    local argv = { _M.BINARY, "-p", self.opts.nginx_prefix or self.prefix, "-c", self.conf_path,
                   "-e", self.error_log }
    if self.opts.conf then
        argv[#argv + 1] = "-g"
        argv[#argv + 1] = "daemon off; master_process on;"
    end
    self.proc = process.spawn({
        argv = argv,
        log = self.prefix .. "/stderr.log",
        env = sanitizer_env(),
    })
    local wait_ms = self.opts.start_ms or 10000
    local deadline = process.now_ms() + wait_ms
    while process.now_ms() < deadline do
        if not process.alive(self.proc.pid, self.proc.start_time) then
            error("nginx exited at start:\n" .. (self:log() or "") .. (read_file(self.prefix
                  .. "/stderr.log") or ""), 2)
        end
        if http_ready(self.port) then
            return self
        end
        process.sleep(50)
    end
    error("nginx did not answer on port " .. self.port .. " within " .. wait_ms / 1000 .. " s:\n"
          .. (self:log() or ""), 2)
end

--- The master's PID.
function server:master_pid()
    return self.proc and self.proc.pid
end

--- The PIDs of the master's children (the workers, and those of an old
-- generation still draining), in no particular order.
function server:children()
    local pid = self:master_pid()
    local list = read_file("/proc/" .. pid .. "/task/" .. pid .. "/children") or ""
    local pids = {}
    for p in list:gmatch("%d+") do
        pids[#pids + 1] = tonumber(p)
    end
    return pids
end

--- Threads and file descriptors of a process: { threads =, fds = { target... } }.
function _M.inspect(pid)
    local status = read_file("/proc/" .. pid .. "/status") or ""
    local fds = {}
    for fd in shell_out("ls /proc/" .. pid .. "/fd 2>/dev/null"):gmatch("%d+") do
        local target = shell_out("readlink /proc/" .. pid .. "/fd/" .. fd .. " 2>/dev/null")
        fds[#fds + 1] = (target:gsub("%s+$", ""))
    end
    return { threads = tonumber(status:match("Threads:%s*(%d+)")), fds = fds }
end

--- Sends SIGHUP to the master (a configuration reload: a new generation of
-- workers starts, the old one drains and exits).
function server:reload()
    return process.signal(self:master_pid(), "HUP")
end

--- The error log so far.
function server:log()
    return read_file(self.error_log)
end

--- Stops the master (QUIT: graceful), then KILLs the group after 10 s.
function server:stop()
    if not self.proc then
        return
    end
    local proc = self.proc
    self.proc = nil
    if process.alive(proc.pid, proc.start_time) then
        process.signal(proc.pid, "QUIT")
        if not process.wait_dead(proc.pid, 10000, proc.start_time) then
            if process.group_is_ours(proc) then
                process.kill_group(proc.pgid, "KILL")
            end
        end
    end
end

--- GET `path` from this server: { status = number|nil, body = string }.
-- One connection per request (no keep-alive, so that a reload is seen).
function server:get(path, timeout_s)
    local out = shell_out(string.format(
        "env -u LD_PRELOAD curl -s -H 'Connection: close' --max-time %s -w '\\n%%{http_code}' %s 2>/dev/null",
        tostring(timeout_s or 5), quote("http://127.0.0.1:" .. self.port .. path)))
    local body, code = out:match("^(.*)\n(%d+)$")
    local status = tonumber(code)
    return { status = status ~= 0 and status or nil, body = body or out }
end

--- `count` GETs of `path` in one curl process (sequential, one connection
-- each): a list of { status =, body = }. Requests curl never made count
-- as failed ones (status nil).
function server:get_many(path, count, timeout_s)
    local url = quote("http://127.0.0.1:" .. self.port .. path)
    local args = {}
    for i = 1, count do
        args[i] = url
    end
    local marker = "@@disco-status:"
    local out = shell_out(string.format(
        "env -u LD_PRELOAD curl -s -H 'Connection: close' --max-time %s -w '\\n%s%%{http_code}\\n' %s 2>/dev/null",
        tostring(timeout_s or 5), marker, table.concat(args, " ")))
    local results = {}
    for body, code in out:gmatch("(.-)\n" .. marker:gsub("%p", "%%%0") .. "(%d+)\n") do
        local status = tonumber(code)
        results[#results + 1] = { status = status ~= 0 and status or nil, body = body }
    end
    for i = #results + 1, count do
        results[i] = { status = nil, body = "" }
    end
    return results
end

--- Removes the prefix (after stop).
function server:destroy()
    self:stop()
    os.execute("rm -rf " .. quote(self.prefix))
end

return _M
