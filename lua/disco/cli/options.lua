--- Command-line options of the `disco` commands.
--
--    local opts, err = options.parse(args, {
--        registry = "string", json = "flag", timeout = "ms", service = "list",
--    })
--    -- opts.registry, opts.json (true/nil), opts.timeout (number),
--    -- opts.service ({...}), opts[1], opts[2]... (the positional arguments)
--
-- Kinds: "string" (one value), "list" (repeatable, collected in order),
-- "flag" (no value), "ms" and "port" (a positive integer, a port 1–65535).
-- Option names are written with dashes on the command line and underscores
-- in the spec (`--metadata-group` is `metadata_group`).
-- @module disco.cli.options

local _M = {}

local function convert(kind, name, value)
    if kind == "ms" or kind == "port" then
        local n = tonumber(value)
        if not n or n % 1 ~= 0 or n <= 0 or (kind == "port" and n > 65535) then
            return nil, "--" .. name .. (kind == "port" and " needs a port from 1 to 65535"
                                         or " needs a positive number of milliseconds")
        end
        return n
    end
    return value
end

--- Parses `args` against `spec`; returns the options, or nil and a usage
-- error message.
function _M.parse(args, spec)
    local opts = {}
    local i = 1
    while i <= #args do
        local a = args[i]
        if a:sub(1, 2) == "--" and #a > 2 then
            local name = a:sub(3)
            local key = name:gsub("%-", "_")
            local kind = spec[key]
            if not kind then
                return nil, "unknown option '" .. a .. "'"
            end
            if kind == "flag" then
                opts[key] = true
                i = i + 1
            else
                local value = args[i + 1]
                if value == nil then
                    return nil, a .. " needs a value"
                end
                local converted, err = convert(kind, name, value)
                if converted == nil then
                    return nil, err
                end
                if kind == "list" then
                    opts[key] = opts[key] or {}
                    table.insert(opts[key], converted)
                else
                    opts[key] = converted
                end
                i = i + 2
            end
        else
            opts[#opts + 1] = a
            i = i + 1
        end
    end
    return opts
end

return _M
