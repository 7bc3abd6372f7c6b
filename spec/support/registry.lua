-- Driving several disco runtimes at once for the registry specs.
local helpers = require "spec.helpers"

local unpack = unpack or table.unpack -- luacheck: ignore 143

local _M = {}

--- Drives every runtime's loop until `pred()` holds or `ms` (5000 by
-- default) pass, pausing 1 ms between rounds.
-- @treturn boolean whether `pred()` held
function _M.run_all(rts, pred, ms)
    local deadline = helpers.core.hrtime() + (ms or 5000)
    while helpers.core.hrtime() < deadline do
        for _, rt in ipairs(rts) do
            rt:step()
        end
        if pred() then
            return true
        end
        helpers.core.sleep(1)
    end
    return false
end

--- Calls fn(args..., cb) and drives the loops until cb ran; returns what
-- cb got. (Built with select: `fn(..., cb)` would keep only the first arg.)
function _M.call(rts, fn, ...)
    local box = {}
    local n = select("#", ...)
    local args = { ... }
    args[n + 1] = function(err, ...) box.done, box.err, box.results = true, err, { ... } end
    fn(unpack(args, 1, n + 1))
    assert(_M.run_all(rts, function() return box.done end), "no answer")
    return box.err, unpack(box.results)
end

return _M
