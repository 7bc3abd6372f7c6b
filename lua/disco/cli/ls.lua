--- `disco ls --registry URL [APP] [--json]`: what a registry holds.
-- @module disco.cli.ls

local cli = require "disco.cli"
local cjson = require "cjson"

local _M = {
    name = "ls",
    summary = "list the applications of a registry, or the instances of one",
    usage = "disco ls --registry URL [APP] [--json] [--timeout MS]",
    help = [[
Without APP, lists the application names that have at least one instance.
With APP, lists its instances: address, metadata revision, registration time
and metadata storage type. --json prints one JSON document instead of text.
URL is a registry URL: zookeeper://host:port[,host:port]/chroot?root=/services
or memory://NAME (only useful inside a process that registers into it).
--timeout bounds the whole command (default 10000 ms); on timeout the
command fails with status 1.]],
}

local function parse_args(args)
    local opts = { timeout = 10000 }
    local i = 1
    while i <= #args do
        local a = args[i]
        if a == "--registry" then
            opts.registry = args[i + 1]
            i = i + 2
        elseif a == "--json" then
            opts.json = true
            i = i + 1
        elseif a == "--timeout" then
            opts.timeout = tonumber(args[i + 1])
            if not opts.timeout or opts.timeout <= 0 then
                return nil, "--timeout needs a positive number of milliseconds"
            end
            i = i + 2
        elseif a:sub(1, 2) == "--" then
            return nil, "unknown option '" .. a .. "'"
        elseif opts.app then
            return nil, "expected at most one application name"
        else
            opts.app = a
            i = i + 1
        end
    end
    if not opts.registry then
        return nil, "--registry URL is required"
    end
    return opts
end

-- cjson writes an empty table as {}; a list must print as [].
local function encode_list(list)
    if #list == 0 then
        return "[]"
    end
    return cjson.encode(list)
end

local function format_time(ms)
    if not ms then
        return "-"
    end
    return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(ms / 1000))
end

local function print_instances(list, json)
    if json then
        local out = {}
        for i, inst in ipairs(list) do
            out[i] = { address = inst.host .. ":" .. inst.port, name = inst.name,
                       revision = inst.metadata["dubbo.metadata.revision"],
                       storage_type = inst.metadata["dubbo.metadata.storage-type"],
                       registration_time = inst.registration_time, metadata = inst.metadata }
        end
        io.stdout:write(encode_list(out), "\n")
        return
    end
    io.stdout:write(string.format("%-24s %-34s %-21s %s\n", "ADDRESS", "REVISION",
                                  "REGISTERED", "STORAGE"))
    for _, inst in ipairs(list) do
        io.stdout:write(string.format("%-24s %-34s %-21s %s\n", inst.host .. ":" .. inst.port,
                                      inst.metadata["dubbo.metadata.revision"] or "-",
                                      format_time(inst.registration_time),
                                      inst.metadata["dubbo.metadata.storage-type"] or "-"))
    end
end

function _M.run(args)
    local opts, err = parse_args(args)
    if not opts then
        return cli.usage_error(_M, err)
    end
    local rt = require("disco").runtime({ name = "ls", plugin_watch = false,
                                          log_level = os.getenv("DISCO_LOG_LEVEL") or "warn" })
    local registry, rerr = rt:registry(opts.registry)
    if not registry then
        cli.stderr("disco ls: %s", rerr)
        rt:close()
        return 1
    end
    local status = 1
    rt:after(opts.timeout, function()
        cli.stderr("disco ls: no answer from %s within %d ms", opts.registry, opts.timeout)
        rt:stop(1)
    end, "ls-timeout")
    if opts.app then
        local watch
        watch = registry.watch_instances(opts.app, function(_, list)
            watch.cancel()
            print_instances(list, opts.json)
            status = 0
            rt:stop(0)
        end)
    else
        registry.list_apps(function(list_err, apps)
            if list_err then
                cli.stderr("disco ls: %s", list_err)
                rt:stop(1)
                return
            end
            if opts.json then
                io.stdout:write(encode_list(apps), "\n")
            else
                for _, app in ipairs(apps) do
                    io.stdout:write(app, "\n")
                end
            end
            status = 0
            rt:stop(0)
        end)
    end
    rt:run()
    rt:close()
    return rt.exit_code or status
end

return _M
