--- disco: a Lua-scriptable service-discovery runtime for Apache Dubbo.
--
-- `local disco = require "disco"` checks that the C core (`disco.core`) is
-- the one this Lua code was written for, then offers the runtime.
-- @module disco

local core = require "disco.core"

local _M = {
    --- The release of the Lua runtime; the C core must report the same.
    VERSION = "0.1.0",
    --- The `disco.core` ABI this Lua code expects (bindings/dl.h).
    ABI_VERSION = 1,
}

-- A core from another build would fail later in confusing ways (missing
-- functions, changed argument orders); refuse it here with a clear message.
if core.ABI_VERSION ~= _M.ABI_VERSION then
    error(string.format(
        "disco.core ABI %s does not match the Lua runtime's ABI %d "
        .. "(core %s loaded from package.cpath; rebuild or reinstall disco)",
        tostring(core.ABI_VERSION), _M.ABI_VERSION, tostring(core.VERSION)), 2)
end
if core.VERSION ~= _M.VERSION then
    error(string.format("disco.core %s does not match the Lua runtime %s",
                        tostring(core.VERSION), _M.VERSION), 2)
end

_M.core = core

--- Creates a runtime: a loop, a logger, timers and signals.
-- @tparam[opt] table conf see `disco.runtime.new`
-- @treturn disco.runtime
function _M.runtime(conf)
    return require("disco.runtime").new(conf)
end

return _M
