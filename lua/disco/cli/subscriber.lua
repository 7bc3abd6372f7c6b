--- What `disco resolve` and `disco watch` share: a runtime with a consumer
-- on one registry, and the address entries in text or JSON.
-- @module disco.cli.subscriber

local cjson = require "cjson"
local cli = require "disco.cli"
local options = require "disco.cli.options"

local _M = {}

--- Opens a runtime and a consumer on `opts.registry`. Returns rt, consumer,
-- or nil and the exit status after reporting the error.
function _M.open(command, opts)
    local rt = require("disco").runtime({ name = command.name, plugin_watch = false,
                                          log_level = os.getenv("DISCO_LOG_LEVEL") or "warn" })
    local ok, consumer = pcall(rt.consumer, rt, {
        registry = opts.registry,
        cache = opts.cache_file and { persist_path = opts.cache_file } or nil,
    })
    if not ok then
        cli.stderr("disco %s: %s", command.name, tostring(consumer))
        rt:close()
        return nil, 1
    end
    return rt, consumer
end

--- Parses `args` (`--registry URL SERVICE_ID` and the options of `spec`),
-- opens a consumer and subscribes `on_change` to SERVICE_ID. Returns rt,
-- consumer, opts, or nil and the exit status after reporting the error.
function _M.start(command, args, spec, on_change)
    local opts, err = options.parse(args, spec)
    if opts and not opts.registry then
        err = "--registry URL is required"
    elseif opts and #opts ~= 1 then
        err = "expected exactly one SERVICE_ID"
    end
    if err then
        return nil, cli.usage_error(command, err)
    end
    local rt, consumer = _M.open(command, opts)
    if not rt then
        return nil, consumer
    end
    local ok, serr = pcall(consumer.subscribe, consumer, opts[1], function(diff, list)
        on_change(diff, list, rt, opts)
    end)
    if not ok then
        consumer:close()
        rt:close()
        return nil, cli.usage_error(command, (tostring(serr):gsub("^.-subscribe: ", "")))
    end
    return rt, consumer, opts
end

--- One address entry as a JSON-ready table.
function _M.entry_table(entry)
    return { url = entry.url, host = entry.host, port = entry.port,
             protocol = entry.protocol, app = entry.app }
end

--- A list of entries as JSON text ("[]" when empty).
function _M.encode_entries(list)
    if #list == 0 then
        return "[]"
    end
    local out = {}
    for i, entry in ipairs(list) do
        out[i] = _M.entry_table(entry)
    end
    return cjson.encode(out)
end

return _M
