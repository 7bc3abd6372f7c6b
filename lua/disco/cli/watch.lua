--- `disco watch --registry URL SERVICE_ID [--json]`: address changes.
-- @module disco.cli.watch

local cjson = require "cjson"
local subscriber = require "disco.cli.subscriber"

local _M = {
    name = "watch",
    summary = "print the address changes of a Dubbo service ID until interrupted",
    usage = "disco watch --registry URL SERVICE_ID [--json] [--cache-file PATH]",
    help = [[
Subscribes to SERVICE_ID (protocol:interface[:version][:group]) and prints
one line per address change: "+ URL" when an address appears, "- URL" when
it goes (the first list is printed as additions). With --json, one JSON
object per update instead: {"time":ms,"added":[...],"removed":[...],
"total":N}. Runs until SIGINT or SIGTERM (exit status 0).]],
}

local SPEC = { registry = "string", json = "flag", cache_file = "string" }

local function print_change(diff, list, json)
    if json then
        local added, removed = {}, {}
        for i, entry in ipairs(diff.added) do
            added[i] = entry.url
        end
        for i, entry in ipairs(diff.removed) do
            removed[i] = entry.url
        end
        local line = cjson.encode({ time = require("disco.core").time_ms(),
                                    added = added, removed = removed, total = #list })
        line = line:gsub('"added":{}', '"added":[]'):gsub('"removed":{}', '"removed":[]')
        io.stdout:write(line, "\n")
    else
        for _, entry in ipairs(diff.removed) do
            io.stdout:write("- ", entry.url, "\n")
        end
        for _, entry in ipairs(diff.added) do
            io.stdout:write("+ ", entry.url, "\n")
        end
    end
    io.stdout:flush()
end

function _M.run(args)
    local rt, consumer = subscriber.start(_M, args, SPEC, function(diff, list, _, opts)
        print_change(diff, list, opts.json)
    end)
    if not rt then
        return consumer
    end
    for _, signame in ipairs({ "SIGINT", "SIGTERM" }) do
        rt:on_signal(signame, function() rt:stop(0) end)
    end
    rt:run()
    consumer:close()
    rt:close()
    return rt.exit_code or 0
end

return _M
