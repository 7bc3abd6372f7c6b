--- `disco resolve --registry URL SERVICE_ID [--json]`: one address list.
-- @module disco.cli.resolve

local cli = require "disco.cli"
local subscriber = require "disco.cli.subscriber"

local _M = {
    name = "resolve",
    summary = "print the addresses of a Dubbo service ID once",
    usage = "disco resolve --registry URL SERVICE_ID [--json] [--timeout MS] [--cache-file PATH]",
    help = [[
Resolves SERVICE_ID (protocol:interface[:version][:group], such as
dubbo:com.acme.Cart:1.0.0) the way a Dubbo 3 consumer does: the mapping gives
the applications, the registry their instances, one MetadataInfo read per
revision gives the URLs. Prints one URL per line (--json: a JSON list of
{url, host, port, protocol, app}). Exit status: 0 when addresses were found,
2 when there are none, 1 on an error or when --timeout (default 10000 ms)
passes first. --cache-file keeps the revision cache in a file, so that the
next run reads no metadata for revisions it knows.]],
}

local SPEC = { registry = "string", json = "flag", timeout = "ms", cache_file = "string" }

function _M.run(args)
    local status = 1
    local printed = false
    local rt, consumer, opts = subscriber.start(_M, args, SPEC, function(_, list, rt_, opts_)
        if printed then
            return
        end
        printed = true
        if opts_.json then
            io.stdout:write(subscriber.encode_entries(list), "\n")
        else
            for _, entry in ipairs(list) do
                io.stdout:write(entry.url, "\n")
            end
        end
        status = #list > 0 and 0 or 2
        rt_:stop(status)
    end)
    if not rt then
        return consumer
    end
    local timeout = opts.timeout or 10000
    rt:after(timeout, function()
        cli.stderr("disco resolve: no complete answer within %d ms", timeout)
        rt:stop(1)
    end, "resolve-timeout")
    rt:run()
    consumer:close()
    rt:close()
    return rt.exit_code or status
end

return _M
