--- `disco revision [FILE|-]`: the revision of a MetadataInfo JSON document.
-- @module disco.cli.revision

local cli = require "disco.cli"

local _M = {
    name = "revision",
    summary = "compute the revision of a MetadataInfo JSON document",
    usage = "disco revision [FILE|-]",
    help = [[
Reads a MetadataInfo JSON document ({"app":...,"services":{...}}, the form
Dubbo writes to the metadata report) from FILE, or from standard input when
FILE is '-' or missing, and prints its revision as Dubbo 3.1.1 and later
compute it: "0" without services, else the MD5 of the app and, per service
in matchKey order, matchKey, port, path and the sorted params. The revision
is computed, never copied from the document; when the document states a
different one, a warning goes to standard error (the status is still 0).
Invalid JSON fails with status 1.]],
}

function _M.run(args)
    if #args > 1 then
        return cli.usage_error(_M, "expected at most one file")
    end
    local path = args[1]
    if path and path ~= "-" and path:sub(1, 1) == "-" then
        return cli.usage_error(_M, "unknown option '" .. path .. "'")
    end
    local mi = require "disco.metadata_info"
    local f, name
    if path == nil or path == "-" then
        f, name = io.stdin, "standard input"
    else
        local err
        f, err = io.open(path, "rb")
        if not f then
            cli.stderr("disco revision: cannot read '%s': %s", path, err)
            return 1
        end
        name = "'" .. path .. "'"
    end
    -- Read one byte past the limit so that from_json can refuse it by size.
    local text = f:read(mi.MAX_BYTES + 1) or ""
    if f ~= io.stdin then
        f:close()
    end
    local info, err = mi.from_json(text)
    if not info then
        cli.stderr("disco revision: %s: %s", name, err)
        return 1
    end
    local rev = mi.compute_revision(info)
    if info.declared_revision and info.declared_revision ~= rev then
        cli.stderr("disco revision: warning: %s states revision %s, computed %s",
                   name, info.declared_revision, rev)
    end
    io.stdout:write(rev, "\n")
    return 0
end

return _M
