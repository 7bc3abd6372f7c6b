--- `disco provide`: registers an application instance until interrupted.
-- @module disco.cli.provide

local cli = require "disco.cli"
local options = require "disco.cli.options"

local _M = {
    name = "provide",
    summary = "register an application instance exporting services until interrupted",
    usage = "disco provide --registry URL --app APP [--host HOST] --port PORT "
        .. "--service IFACE[:version[:group]] [--service ...] [--protocol dubbo] "
        .. "[--storage remote|local] [--method NAME ...] [--revision-without-port]",
    help = [[
Publishes APP as a Dubbo 3 provider would: the services' MetadataInfo and its
revision, the instance registration ({root}/APP/HOST:PORT), and the mapping
of each interface to APP. Each --service exports one interface on PORT with
--protocol (default dubbo) and the --method names given. --host defaults to
the first non-loopback IPv4 address, as Dubbo picks it; tests and demos pass
--host 127.0.0.1. --storage local (Dubbo's default) serves the MetadataInfo
from this process's MetadataService over the dubbo protocol, on PORT (the
application's dubbo port, which also answers dubbo heartbeats); remote
writes it once to /dubbo/metadata/APP/REVISION, where consumers read it.
Prints one line when registered. SIGINT or SIGTERM unregisters the instance and exits 0; a
failed registration exits 1. As in Dubbo 3.1.1 and later, the port is part of
the revision; --revision-without-port leaves it out, so that instances of one
application on different ports of one host share a revision (consumers then
take each instance's port from its dubbo.endpoints).]],
}

local SPEC = { registry = "string", app = "string", host = "string", port = "port",
               service = "list", protocol = "string", storage = "string", method = "list",
               revision_without_port = "flag" }

--- The address Dubbo would advertise: the first non-loopback IPv4 one.
function _M.default_host()
    for _, addr in ipairs(require("disco.core").interface_addresses()) do
        if addr.family == "inet" and not addr.internal then
            return addr.address
        end
    end
    return nil
end

local function parse_service(text)
    local iface, version, group = text:match("^([^:]+):?([^:]*):?([^:]*)$")
    if not iface then
        return nil, "--service must be IFACE[:version[:group]], got '" .. text .. "'"
    end
    return { interface = iface, version = version ~= "" and version or nil,
             group = group ~= "" and group or nil }
end

local function check(opts)
    for _, name in ipairs({ "registry", "app", "port" }) do
        if not opts[name] then
            return nil, "--" .. name .. " is required"
        end
    end
    if not opts.service then
        return nil, "at least one --service is required"
    end
    if opts.storage and opts.storage ~= "remote" and opts.storage ~= "local" then
        return nil, "--storage must be remote or local"
    end
    if #opts > 0 then
        return nil, "unexpected argument '" .. opts[1] .. "'"
    end
    local services = {}
    for i, text in ipairs(opts.service) do
        local service, err = parse_service(text)
        if not service then
            return nil, err
        end
        services[i] = service
    end
    return services
end

function _M.run(args)
    local opts, err = options.parse(args, SPEC)
    local services
    if opts then
        services, err = check(opts)
    end
    if err then
        return cli.usage_error(_M, err)
    end
    local host = opts.host or _M.default_host()
    if not host then
        cli.stderr("disco provide: no non-loopback IPv4 address found; pass --host")
        return 1
    end
    local rt = require("disco").runtime({ name = "provide", plugin_watch = false,
                                          log_level = os.getenv("DISCO_LOG_LEVEL") or "warn" })
    local ok, provider = pcall(rt.provider, rt, {
        registry = opts.registry, app = opts.app, host = host, port = opts.port,
        storage = opts.storage or "local",
        revision_port = not opts.revision_without_port,
    })
    if not ok then
        cli.stderr("disco provide: %s", tostring(provider))
        rt:close()
        return 1
    end
    for _, service in ipairs(services) do
        service.protocol = opts.protocol or "dubbo"
        service.methods = opts.method
        provider:export(service)
    end
    local function shutdown()
        provider:stop(function(serr)
            if serr then
                cli.stderr("disco provide: unregistering failed: %s", serr)
                return rt:stop(1)
            end
            rt:stop(0)
        end)
    end
    for _, signame in ipairs({ "SIGINT", "SIGTERM" }) do
        rt:on_signal(signame, shutdown)
    end
    provider:start(function(serr)
        if serr then
            cli.stderr("disco provide: %s", serr)
            return rt:stop(1)
        end
        io.stdout:write(string.format("registered %s at %s:%d revision %s\n", opts.app, host,
                                      provider.instance.port, provider.revision))
        io.stdout:flush()
    end)
    rt:run()
    rt:close()
    return rt.exit_code or 0
end

return _M
