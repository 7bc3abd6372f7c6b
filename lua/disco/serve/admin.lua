--- The admin HTTP endpoints of `disco serve`: routing and answers as plain
-- functions of a request table (`method`, `path` as sent, not decoded,
-- `query`, `headers`, `body`), so that they are tested without a socket,
-- plus the thin adapter to `loop:http_server`.
--
--    GET  /healthz                      the process is alive
--    GET  /readyz                       200 or 503 with the reasons
--    GET  /v1/services                  every subscription's address list
--    GET  /v1/services/{service_id}     one (percent-encoded ID)
--    GET  /v1/plugins                   the plugins and their counters
--    POST /v1/plugins/{kind}/{name}/reload   (or {kind}%2F{name})
--    GET  /metrics                      Prometheus text format 0.0.4
--
-- A known path with another method gets 405 (with Allow), an unknown path
-- 404, a malformed percent-encoding 400; every error body is JSON
-- `{"error": "..."}`. `app` is the daemon (`disco.serve.daemon`) or a
-- stand-in with the same methods.
-- @module disco.serve.admin

local json = require "disco.serve.json"
local prometheus = require "disco.serve.prometheus"

local _M = {}

local JSON_TYPE = "application/json"

local function answer(status, body)
    return status, { ["Content-Type"] = JSON_TYPE, ["Cache-Control"] = "no-store" },
        json.encode(body) .. "\n"
end
_M.answer = answer

local function error_answer(status, message, extra)
    local body = { error = message }
    for k, v in pairs(extra or {}) do
        body[k] = v
    end
    return answer(status, body)
end

--- Decodes %XX escapes; nil for a malformed escape or an encoded NUL.
function _M.percent_decode(s)
    if s:find("%", 1, true) == nil then
        return s
    end
    local bad = false
    local out = s:gsub("%%(.?.?)", function(hex)
        if not hex:match("^%x%x$") or hex == "00" then
            bad = true
            return ""
        end
        return string.char(tonumber(hex, 16))
    end)
    if bad then
        return nil
    end
    return out
end

local function split_path(path)
    local segments = {}
    for seg in path:gmatch("[^/]+") do
        segments[#segments + 1] = seg
    end
    return segments
end

-- Routes: a matcher gives the handler's arguments (or nil: not this
-- route; false plus a message: malformed), then the methods it answers.
local ROUTES = {
    {
        match = function(path) return path == "/healthz" and {} or nil end,
        GET = function(app) return answer(200, app:health()) end,
    },
    {
        match = function(path) return path == "/readyz" and {} or nil end,
        GET = function(app)
            local ready, body = app:readiness()
            return answer(ready and 200 or 503, body)
        end,
    },
    {
        match = function(path) return path == "/metrics" and {} or nil end,
        GET = function(app)
            return 200, { ["Content-Type"] = prometheus.CONTENT_TYPE }, app:metrics()
        end,
    },
    {
        match = function(path) return path == "/v1/services" and {} or nil end,
        GET = function(app) return answer(200, { services = app:services() }) end,
    },
    {
        match = function(path)
            local raw = path:match("^/v1/services/(.+)$")
            if not raw then
                return nil
            end
            local id = _M.percent_decode(raw)
            if not id then
                return false, "malformed percent-encoding in the service ID"
            end
            return { id }
        end,
        GET = function(app, id)
            local view = app:service(id)
            if not view then
                return error_answer(404, "unknown service '" .. id .. "'", { service_id = id })
            end
            return answer(200, view)
        end,
    },
    {
        match = function(path) return path == "/v1/plugins" and {} or nil end,
        GET = function(app) return answer(200, app:plugins()) end,
    },
    {
        match = function(path)
            local segs = split_path(path)
            local n = #segs
            if segs[1] ~= "v1" or segs[2] ~= "plugins" or segs[n] ~= "reload" or n < 4 or n > 5 then
                return nil
            end
            local name = _M.percent_decode(table.concat(segs, "/", 3, n - 1))
            if not name then
                return false, "malformed percent-encoding in the plugin name"
            end
            return { name }
        end,
        POST = function(app, name)
            local status, body = app:reload_plugin(name)
            return answer(status, body)
        end,
    },
}

local METHODS = { "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS" }

--- Answers `req`: returns status, headers, body.
function _M.handle(app, req)
    local path = req.path
    if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
        return error_answer(400, "the request target must be an absolute path")
    end
    for _, route in ipairs(ROUTES) do
        local args, why = route.match(path)
        if args == false then
            return error_answer(400, why)
        end
        if args then
            local fn = route[req.method]
            if not fn then
                local allowed = {}
                for _, m in ipairs(METHODS) do
                    if route[m] then
                        allowed[#allowed + 1] = m
                    end
                end
                local allow = table.concat(allowed, ", ")
                local status, headers, body = error_answer(405, "method " .. tostring(req.method)
                                                           .. " not allowed; use " .. allow)
                headers.Allow = allow
                return status, headers, body
            end
            return fn(app, unpack(args))
        end
    end
    return error_answer(404, "no such endpoint: " .. path)
end

--- A request handler for `loop:http_server`: answers each request with
-- `handle`, a raising handler with a logged 500, and calls
-- `on_answer(status)` (for the metrics).
function _M.handler(app, log, on_answer)
    return function(req)
        local ok, status, headers, body = xpcall(_M.handle, debug.traceback, app, req)
        if not ok then
            log:error("admin %s %s failed: %s", tostring(req.method), tostring(req.path), status)
            status, headers, body = error_answer(500, "internal error: "
                                                 .. tostring(status):match("^[^\n]*"))
        end
        if on_answer then
            on_answer(status)
        end
        req:reply(status, headers, body)
    end
end

--- Starts the admin server on `loop` at `conf.host`:`conf.port` (0: an
-- automatic port). Returns the server, or nil, err, ename.
function _M.listen(loop, conf, handler)
    if type(loop.http_server) ~= "function" then
        return nil, "ENOSYS: this build of disco.core has no HTTP server", "ENOSYS"
    end
    return loop:http_server({
        host = conf.host, port = conf.port, name = "admin",
        max_connections = conf.max_connections,
        request_timeout = conf.request_timeout_ms,
        idle_timeout = conf.idle_timeout_ms,
        max_body_bytes = 65536,
        on_request = handler,
    })
end

return _M
