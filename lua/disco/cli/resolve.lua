--- `disco resolve --registry URL SERVICE_ID [--json]`: one address list.
-- @module disco.cli.resolve

local cli = require "disco.cli"
local options = require "disco.cli.options"
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
    local opts, err = options.parse(args, SPEC)
    if opts and not opts.registry then
        err = "--registry URL is required"
    elseif opts and #opts ~= 1 then
        err = "expected exactly one SERVICE_ID"
    end
    if err then
        return cli.usage_error(_M, err)
    end
    local rt, consumer = subscriber.open(_M, opts)
    if not rt then
        return consumer
    end
    local status = 1
    rt:after(opts.timeout or 10000, function()
        cli.stderr("disco resolve: no complete answer within %d ms", opts.timeout or 10000)
        rt:stop(1)
    end, "resolve-timeout")
    local ok, serr = pcall(consumer.subscribe, consumer, opts[1], function(_, list)
        if opts.json then
            io.stdout:write(subscriber.encode_entries(list), "\n")
        else
            for _, entry in ipairs(list) do
                io.stdout:write(entry.url, "\n")
            end
        end
        status = #list > 0 and 0 or 2
        rt:stop(status)
    end)
    if not ok then
        rt:close()
        return cli.usage_error(_M, tostring(serr):gsub("^.-subscribe: ", ""))
    end
    rt:run()
    consumer:close()
    rt:close()
    return rt.exit_code or status
end

return _M
