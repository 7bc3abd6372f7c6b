--- `disco serve CONFIG.lua`: the sidecar daemon with its admin endpoints.
-- @module disco.cli.serve

local cli = require "disco.cli"

local _M = {
    name = "serve",
    summary = "run the discovery sidecar of a configuration file, with admin HTTP endpoints",
    usage = "disco serve CONFIG.lua [--check]",
    help = [[
Loads CONFIG.lua (a Lua file returning a table: registry, admin address,
subscriptions, consumer and provider settings, plugins; see docs/serve.md),
runs the consumer's subscriptions and the provider it describes, and serves
an admin HTTP endpoint, on 127.0.0.1:9901 unless 'admin' says otherwise
(port 0: an automatic port). The first line on standard output gives its
address: "disco serve: admin on http://127.0.0.1:PORT". Endpoints: GET
/healthz, /readyz, /v1/services, /v1/services/{service_id}, /v1/plugins,
/metrics (Prometheus), POST /v1/plugins/{kind}/{name}/reload.
SIGHUP reloads every plugin (a failed one keeps its old version); a changed
plugin file is reloaded by itself. SIGINT or SIGTERM stops cleanly: the
provider unregisters, the consumer saves its cache, exit status 0.
A configuration error (an unknown key, a wrong type) exits with status 2
and names the key; --check stops there (status 0 when valid). A failure to
start exits 1.]],
}

function _M.run(args)
    local path, check_only
    for _, a in ipairs(args) do
        if a == "--check" then
            check_only = true
        elseif a:sub(1, 1) == "-" and a ~= "-" then
            return cli.usage_error(_M, "unknown option '" .. a .. "'")
        elseif path then
            return cli.usage_error(_M, "expected one configuration file")
        else
            path = a
        end
    end
    if not path then
        return cli.usage_error(_M, "missing the configuration file")
    end
    local conf, err = require("disco.serve.config").load(path)
    if not conf then
        cli.stderr("disco serve: %s", err)
        return 2
    end
    if check_only then
        io.stdout:write("disco serve: ", path, " is valid\n")
        return 0
    end
    local daemon = require("disco.serve.daemon").new(conf)
    local ok, serr = daemon:start()
    if not ok then
        cli.stderr("disco serve: %s", serr)
        daemon:close()
        return 1
    end
    local rt = daemon.rt
    local function stop(signame)
        rt.log:info("%s received, stopping", signame)
        daemon:shutdown(function(code) rt:stop(code) end)
    end
    for _, signame in ipairs({ "SIGINT", "SIGTERM" }) do
        rt:on_signal(signame, stop)
    end
    rt:on_signal("SIGHUP", function() daemon:reload_all() end)
    io.stdout:write("disco serve: admin on ", daemon:admin_url(), "\n")
    io.stdout:flush()
    rt:run()
    daemon:close()
    return rt.exit_code or 0
end

return _M
