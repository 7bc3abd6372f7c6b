--- `disco version`: the versions of disco and of what it runs on.
-- @module disco.cli.version

local cli = require "disco.cli"

local _M = {
    name = "version",
    summary = "print the versions of disco, LuaJIT and libuv",
    usage = "disco version",
    help = "Prints one line: disco's version, the C core's ABI version, "
        .. "the LuaJIT and libuv versions it runs on, and where its Lua "
        .. "modules were found (build tree or installed prefix).",
}

function _M.run(args)
    if #args > 0 then
        return cli.usage_error(_M, "takes no arguments")
    end
    local disco = require "disco"
    local host = package.loaded["disco.host"] or {}
    io.stdout:write(string.format(
        "disco %s (core ABI %d, %s, libuv %s, modules from %s %s)\n",
        disco.VERSION, disco.core.ABI_VERSION, jit and jit.version or _VERSION,
        disco.core.LIBUV_VERSION, host.tree or "package.path",
        host.lua_dir or "(not the disco binary)"))
    return 0
end

return _M
