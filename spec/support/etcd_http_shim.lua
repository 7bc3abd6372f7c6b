-- A stand-in for `loop:http_client` (docs/lua-api.md's contract) for the
-- etcd specs while the core has no HTTP client of its own: each request is
-- one `curl` process in the background, its output polled by a loop timer.
-- Installed only when the loop lacks `http_client`; slow (a process per
-- request) but it speaks real HTTP to a real etcd, so the adapter's logic
-- is exercised end to end. Processes are ended by their own pid only.
local helpers = require "spec.helpers"

local _M = {}

local POLL_MS = 5

local function quote(s)
    return helpers.shell_quote(s)
end

local function read_from(path, offset)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    if offset > 0 then
        f:seek("set", offset)
    end
    local data = f:read("*a")
    f:close()
    return data
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

local CURL_ERRORS = { [7] = "ECONNREFUSED", [28] = "ETIMEDOUT", [52] = "ECONNRESET",
                      [56] = "ECONNRESET", [18] = "ECONNRESET" }

local dir

local function new_client(loop, opts)
    local client = { opts = opts, reqs = {}, closed = false, seq = 0 }
    local timer

    local function finish(r, err, res)
        client.reqs[r] = nil
        r.done = true
        if next(client.reqs) == nil and timer then
            timer:close()
            timer = nil
        end
        local ok, perr = pcall(r.cb, err, res)
        if not ok then
            io.stderr:write("http shim: callback failed: ", tostring(perr), "\n")
        end
    end

    local function poll()
        for r in pairs(client.reqs) do
            if r.spec.on_data then
                local data = read_from(r.out, r.offset) or ""
                r.offset = r.offset + #data
                r.pending = r.pending .. data
                if not r.headers_sent and (r.pending ~= "" or exists(r.rc)) then
                    local head = read_from(r.hdr, 0) or ""
                    local status = tonumber(head:match("HTTP/%S+ (%d+)"))
                    if status then
                        r.headers_sent = true
                        r.status = status
                        if r.spec.on_headers then
                            pcall(r.spec.on_headers, status, {})
                        end
                    end
                end
                while not r.done do
                    local at = r.pending:find("\n", 1, true)
                    if not at then
                        break
                    end
                    local line = r.pending:sub(1, at - 1)
                    r.pending = r.pending:sub(at + 1)
                    local ok, perr = pcall(r.spec.on_data, line)
                    if not ok then
                        io.stderr:write("http shim: on_data failed: ", tostring(perr), "\n")
                    end
                end
            end
            if not r.done and client.reqs[r] and exists(r.rc) then
                local rc = tonumber(read_from(r.rc, 0) or "")
                if rc then
                    local head = read_from(r.hdr, 0) or ""
                    local status = tonumber(head:match(".*HTTP/%S+ (%d+)"))
                    if rc ~= 0 or not status then
                        local name = CURL_ERRORS[rc] or "ECONNRESET"
                        finish(r, name .. ": curl exit " .. tostring(rc), nil)
                    elseif r.spec.on_data then
                        if r.pending ~= "" then
                            pcall(r.spec.on_data, r.pending)
                        end
                        finish(r, nil, { status = status, headers = {} })
                    else
                        finish(r, nil, { status = status, headers = {}, body = read_from(r.out, 0) })
                    end
                end
            end
        end
    end

    function client.request(_, spec, cb)
        if client.closed then
            return nil, "ECANCELED: client closed", "ECANCELED"
        end
        client.seq = client.seq + 1
        local base = string.format("%s/%d-%d-%d", dir, opts.port, client.seq, math.random(1, 1e9))
        local r = { spec = spec, cb = cb, out = base .. ".out", hdr = base .. ".hdr", rc = base .. ".rc",
                    pidfile = base .. ".pid", offset = 0, pending = "" }
        local words = { "curl", "-sS", "-N", "-X", spec.method or "GET", "-D", quote(r.hdr),
                        "-o", quote(r.out), "--connect-timeout", "3" }
        local total = spec.timeout and spec.timeout > 0 and spec.timeout
            or (not spec.on_data and (opts.read_timeout or 10000)) or nil
        if total then
            words[#words + 1] = "-m"
            words[#words + 1] = string.format("%.3f", total / 1000)
        end
        for k, v in pairs(spec.headers or {}) do
            words[#words + 1] = "-H"
            words[#words + 1] = quote(k .. ": " .. v)
        end
        if spec.body then
            local f = assert(io.open(base .. ".body", "wb"))
            f:write(spec.body)
            f:close()
            words[#words + 1] = "--data-binary"
            words[#words + 1] = quote("@" .. base .. ".body")
        end
        words[#words + 1] = quote("http://" .. opts.host .. ":" .. opts.port .. spec.path)
        local script = table.concat(words, " ") .. " & echo $! > " .. quote(r.pidfile)
            .. "; wait $!; echo $? > " .. quote(r.rc .. ".tmp") .. "; mv " .. quote(r.rc .. ".tmp")
            .. " " .. quote(r.rc)
        os.execute("sh -c " .. quote(script) .. " >/dev/null 2>&1 &")
        client.reqs[r] = true
        if not timer then
            timer = assert(loop:timer("http shim"))
            assert(timer:start(POLL_MS, POLL_MS, poll))
        end
        local req = {}
        function req.cancel()
            if client.reqs[r] then
                client.reqs[r] = nil
                r.done = true
                local pid = tonumber(read_from(r.pidfile, 0) or "")
                if pid and pid > 1 then
                    os.execute("kill " .. pid .. " 2>/dev/null")
                end
            end
        end
        r.req = req
        return req
    end

    function client.close()
        if client.closed then
            return
        end
        client.closed = true
        local all = {}
        for r in pairs(client.reqs) do
            all[#all + 1] = r
        end
        for _, r in ipairs(all) do
            r.req.cancel()
            pcall(r.cb, "ECANCELED: client closed")
        end
        if timer then
            timer:close()
            timer = nil
        end
    end

    function client.is_closed()
        return client.closed
    end

    return client
end

--- Adds `http_client` to the loop type when the core has none; returns
-- whether the shim is in use.
function _M.install()
    local loop = assert(helpers.core.new_loop())
    local mt = getmetatable(loop)
    local methods = mt.__index
    assert(loop:close())
    if type(methods) ~= "table" or methods.http_client then
        return false
    end
    dir = helpers.tmpdir()
    methods.http_client = function(self, opts)
        if type(opts) ~= "table" or type(opts.host) ~= "string" or type(opts.port) ~= "number" then
            return nil, "EINVAL: host and port are required", "EINVAL"
        end
        return new_client(self, opts)
    end
    return true
end

return _M
