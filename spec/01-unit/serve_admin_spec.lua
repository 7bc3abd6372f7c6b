-- The admin endpoints of `disco serve` without a socket: the routing
-- (methods, paths, percent-decoding, errors) against a stand-in, then a
-- daemon on an in-process registry answering every endpoint, reloads
-- through the API included.
local admin = require "disco.serve.admin"
local cjson = require "cjson"
local config = require "disco.serve.config"
local daemon = require "disco.serve.daemon"
local disco = require "disco"
local helpers = require "spec.helpers"
local prom = require "spec.support.prometheus"

local _ -- the values a test does not look at

local function call(app, method, path)
    local status, headers, body = admin.handle(app, { method = method, path = path, headers = {} })
    return status, headers, body
end

describe("admin routing", function()
    local seen
    local stub = {
        health = function() return { status = "alive" } end,
        readiness = function() return false, { ready = false, reason = "not yet" } end,
        services = function() return {} end,
        service = function(_, id)
            seen = id
            return id == "dubbo:com.acme.Cart:1.0.0" and { service_id = id } or nil
        end,
        plugins = function() return { plugins = {} } end,
        reload_plugin = function(_, name)
            seen = name
            return 409, { error = "kept" }
        end,
        metrics = function() return "# TYPE x gauge\nx 1\n" end,
    }

    it("answers each endpoint with JSON, or the Prometheus type for /metrics", function()
        local status, headers, body = call(stub, "GET", "/healthz")
        assert.equal(200, status)
        assert.equal("application/json", headers["Content-Type"])
        assert.same({ status = "alive" }, cjson.decode(body))
        status, _, body = call(stub, "GET", "/readyz")
        assert.equal(503, status)
        assert.equal("not yet", cjson.decode(body).reason)
        status, headers, body = call(stub, "GET", "/metrics")
        assert.equal(200, status)
        assert.equal("text/plain; version=0.0.4; charset=utf-8", headers["Content-Type"])
        assert.equal("# TYPE x gauge\nx 1\n", body)
        status, _, body = call(stub, "GET", "/v1/services")
        assert.equal(200, status)
        assert.equal('{"services":{}}\n', body) -- the stub's table; the daemon marks arrays
    end)

    it("percent-decodes the service ID and the plugin name", function()
        local status = call(stub, "GET", "/v1/services/dubbo%3Acom.acme.Cart%3a1.0.0")
        assert.equal(200, status)
        assert.equal("dubbo:com.acme.Cart:1.0.0", seen)
        status = call(stub, "GET", "/v1/services/dubbo:com.acme.Cart:1.0.0")
        assert.equal(200, status)
        local body
        status, _, body = call(stub, "GET", "/v1/services/dubbo%3Acom.acme.Nope")
        assert.equal(404, status)
        assert.same({ error = "unknown service 'dubbo:com.acme.Nope'", service_id = "dubbo:com.acme.Nope" },
                    cjson.decode(body))
        status = call(stub, "POST", "/v1/plugins/validation/recent_call/reload")
        assert.equal(409, status)
        assert.equal("validation/recent_call", seen)
        call(stub, "POST", "/v1/plugins/validation%2Frecent_call/reload")
        assert.equal("validation/recent_call", seen)
    end)

    it("answers 405 with Allow, 404 and 400 as JSON", function()
        local status, headers, body = call(stub, "POST", "/healthz")
        assert.equal(405, status)
        assert.equal("GET", headers.Allow)
        assert.matches("method POST not allowed", cjson.decode(body).error, 1, true)
        status, headers = call(stub, "GET", "/v1/plugins/validation/recent_call/reload")
        assert.equal(405, status)
        assert.equal("POST", headers.Allow)
        status, _, body = call(stub, "GET", "/nope")
        assert.equal(404, status)
        assert.equal("no such endpoint: /nope", cjson.decode(body).error)
        assert.equal(404, (call(stub, "GET", "/v1/services/")))
        assert.equal(404, (call(stub, "GET", "/v1/plugins/a/b/c/reload")))
        status, _, body = call(stub, "GET", "/v1/services/dubbo%3")
        assert.equal(400, status)
        assert.matches("malformed percent-encoding", cjson.decode(body).error, 1, true)
        assert.equal(400, (call(stub, "GET", "/v1/services/a%00b")))
        assert.equal(400, (call(stub, "POST", "/v1/plugins/x%zz/reload")))
        assert.equal(400, (call(stub, "GET", "*")))
    end)

    it("turns a raising handler into a logged 500 and counts every answer", function()
        local lines = {}
        local log = { error = function(_, fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end }
        local answered = {}
        local handler = admin.handler({ health = function() error("boom") end }, log,
                                      function(status) answered[#answered + 1] = status end)
        local replies = {}
        local req = { method = "GET", path = "/healthz",
                      reply = function(_, status, headers, body)
                          replies[#replies + 1] = { status, headers, body }
                      end }
        handler(req)
        assert.equal(1, #replies)
        assert.equal(500, replies[1][1])
        assert.matches("internal error: .*boom", cjson.decode(replies[1][3]).error)
        assert.same({ 500 }, answered)
        assert.matches("admin GET /healthz failed: .*boom", lines[1])
    end)
end)

describe("the serve daemon on an in-process registry", function()
    local d, other, plugin_dir

    local function plugin_source(version, broken)
        return string.format([[
local M = { name = "marker", version = %q, kind = "listener" }
function M.init(ctx)
    %s
end
return M
]], version, broken and "error('broken on purpose')" or "ctx:on('PluginLoaded', function() end)")
    end

    before_each(function()
        plugin_dir = helpers.tmpdir()
        os.execute("mkdir -p " .. helpers.shell_quote(plugin_dir .. "/listener"))
        helpers.write_file(plugin_dir .. "/listener/marker.lua", plugin_source("1.0.0"))
        local store = "serve" .. helpers.core.getpid() .. "_" .. os.time() .. "_" .. math.random(1e6)
        local conf = assert(config.validate({
            registry = "memory://" .. store,
            subscriptions = { "dubbo:com.acme.Cart:1.0.0" },
            provider = { app = "shop", host = "127.0.0.1", port = 23001, storage = "remote",
                         services = { "com.acme.Cart:1.0.0" } },
            plugins = { paths = { plugin_dir }, load = { "listener/marker" }, watch = false },
            runtime = { log_level = "error" },
        }))
        d = daemon.new(conf, { http = false })
        assert(d:start())
        -- A second instance of the application, from another runtime of
        -- this process on the same in-process store.
        other = disco.runtime({ plugin_watch = false, log_level = "error" })
        local p = other:provider({ registry = "memory://" .. store, app = "shop", host = "127.0.0.1",
                                   port = 23002, storage = "remote" })
        p:export({ interface = "com.acme.Cart", version = "1.0.0" })
        p:start(function(err) assert(not err, err) end)
    end)

    after_each(function()
        d:close()
        other:close()
    end)

    local function run_until(pred)
        return helpers.run_until(d.rt, function()
            other:step()
            return pred()
        end, 10000)
    end

    local function get_json(method, path)
        local status, _, body = call(d, method, path)
        return status, cjson.decode(body)
    end

    it("is ready once the subscription resolved and the provider registered", function()
        local status, body = get_json("GET", "/readyz")
        assert.equal(503, status)
        assert.is_false(body.ready)
        assert.matches("dubbo:com.acme.Cart:1.0.0: not resolved yet", body.reason, 1, true)
        assert.is_true(run_until(function() return (call(d, "GET", "/readyz")) == 200 end))
        status, body = get_json("GET", "/readyz")
        assert.equal(200, status)
        assert.same({ ready = true, registry_session = "connected" }, body)
        assert.equal(200, (call(d, "GET", "/healthz")))
    end)

    it("lists the addresses with their revision, and counts instances in /metrics", function()
        assert.is_true(run_until(function()
            local _, view = get_json("GET", "/v1/services/dubbo%3Acom.acme.Cart%3A1.0.0")
            return view.count == 2
        end))
        local status, view = get_json("GET", "/v1/services/dubbo%3Acom.acme.Cart%3A1.0.0")
        assert.equal(200, status)
        assert.equal("dubbo:com.acme.Cart:1.0.0", view.service_id)
        assert.same({ "shop" }, view.apps)
        assert.is_true(view.live)
        assert.is_false(view.stale)
        assert.equal(2, #view.addresses)
        assert.equal(23001, view.addresses[1].port)
        assert.equal(23002, view.addresses[2].port)
        assert.equal(32, #view.addresses[1].revision)
        assert.is_false(view.addresses[1].kept_by_validation)
        local _, all = get_json("GET", "/v1/services")
        assert.equal(1, #all.services)
        assert.same(view, all.services[1])

        local page = assert(prom.parse(d:metrics()))
        assert.equal(2, prom.value(page, "disco_app_instances", { app = "shop" }))
        assert.equal(1, prom.value(page, "disco_registry_session_up"))
        assert.equal(2, prom.value(page, "disco_subscription_addresses",
                                   { service_id = "dubbo:com.acme.Cart:1.0.0" }))
        assert.equal(1, prom.value(page, "disco_provider_registered"))
        assert.is_true(prom.value(page, "disco_events_total", { type = "ServiceInstancesChanged" }) >= 1)
    end)

    it("reloads a plugin through the API; a broken version answers 409 and the old one keeps running", function()
        local status, body = get_json("GET", "/v1/plugins")
        assert.equal(200, status)
        local marker
        for _, p in ipairs(body.plugins) do
            if p.name == "listener/marker" then
                marker = p
            end
        end
        assert.equal("1.0.0", marker.version)

        helpers.write_file(plugin_dir .. "/listener/marker.lua", plugin_source("1.1.0"))
        status, body = get_json("POST", "/v1/plugins/listener%2Fmarker/reload")
        assert.equal(200, status)
        assert.same({ name = "listener/marker", reloaded = true, previous_version = "1.0.0",
                      version = "1.1.0" }, body)

        helpers.write_file(plugin_dir .. "/listener/marker.lua", plugin_source("2.0.0", true))
        status, body = get_json("POST", "/v1/plugins/listener/marker/reload")
        assert.equal(409, status)
        assert.is_false(body.reloaded)
        assert.equal("1.1.0", body.running_version)
        assert.matches("init failed; version 1.1.0 keeps running: .*broken on purpose", body.error)

        _, body = get_json("GET", "/v1/plugins")
        for _, p in ipairs(body.plugins) do
            if p.name == "listener/marker" then
                marker = p
            end
        end
        assert.equal("1.1.0", marker.version)
        assert.equal(1, marker.reloaded)
        assert.equal(1, marker.failed)
        assert.matches("broken on purpose", marker.last_error, 1, true)

        status, body = get_json("POST", "/v1/plugins/listener/absent/reload")
        assert.equal(404, status)
        assert.equal("plugin 'listener/absent' is not loaded", body.error)

        local page = assert(prom.parse(d:metrics()))
        assert.equal(1, prom.value(page, "disco_plugin_reloads_total", { result = "success" }))
        assert.equal(1, prom.value(page, "disco_plugin_reloads_total", { result = "failure" }))
    end)

    it("shuts down with the provider unregistered, exit code 0", function()
        assert.is_true(run_until(function() return d.provider_state == "registered" end))
        local code
        d:shutdown(function(c) code = c end)
        assert.is_true(run_until(function() return code ~= nil end))
        assert.equal(0, code)
        assert.equal("unregistered", d.provider_state)
        local status, body = get_json("GET", "/readyz")
        assert.equal(503, status)
        assert.matches("shutting down", body.reason, 1, true)
    end)
end)

describe("the serve daemon while the registry cannot be reached", function()
    it("is ready from a valid disk snapshot, marks the list stale and reports its age", function()
        local snapshot = require "disco.snapshot"
        local dir = helpers.tmpdir()
        local id = "dubbo:com.acme.Cart:1.0.0"
        assert(snapshot.write(dir, id, { {
            url = "dubbo://10.0.0.9:20880/com.acme.Cart?version=1.0.0", host = "10.0.0.9", port = 20880,
            protocol = "dubbo", path = "com.acme.Cart", app = "shop",
            service = { name = "com.acme.Cart", version = "1.0.0", protocol = "dubbo", port = 20880 },
            instance = { name = "shop", host = "10.0.0.9", port = 20880,
                         metadata = { ["dubbo.metadata.revision"] = "abc" } },
        } }, snapshot.wall_ms() - 5000))
        -- Nothing listens on this port: the session keeps connecting.
        local port = require("disco.testing.ports").pick_port()
        local conf = assert(config.validate({
            registry = "zookeeper://127.0.0.1:" .. port,
            subscriptions = { { id = id, provided_by = { "shop" } } },
            consumer = { snapshot_dir = dir, snapshot_wait_ms = 50, validation = false },
            runtime = { log_level = "error" },
        }))
        local d = daemon.new(conf, { http = false })
        finally(function() d:close() end)
        assert(d:start())
        local status, _, body = call(d, "GET", "/readyz")
        assert.equal(503, status)
        assert.matches("registry session is connecting", cjson.decode(body).reason, 1, true)
        assert.is_true(helpers.run_until(d.rt, function() return (call(d, "GET", "/readyz")) == 200 end, 5000))
        _, _, body = call(d, "GET", "/v1/services/" .. id)
        local view = cjson.decode(body)
        assert.is_true(view.stale)
        assert.is_false(view.live)
        assert.is_true(view.age_ms >= 5000)
        assert.equal(1, view.count)
        assert.is_true(view.addresses[1].stale)
        assert.equal("abc", view.addresses[1].revision)
        local page = assert(prom.parse(d:metrics()))
        assert.equal(0, prom.value(page, "disco_registry_session_up"))
        assert.equal(1, prom.value(page, "disco_registry_session_state", { state = "connecting" }))
        assert.equal(1, prom.value(page, "disco_subscription_stale", { service_id = id }))
        assert.is_true(prom.value(page, "disco_snapshot_age_seconds", { service_id = id }) >= 5)
    end)
end)
