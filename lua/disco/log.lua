--- Loggers: one per component, writing through the loop's logger.
--
-- The level check happens in Lua before any formatting, so a disabled
-- `debug` line costs one comparison.
-- @module disco.log

local select = select
local string_format = string.format
local tostring = tostring

local _M = {}

local LEVELS = { error = 0, warn = 1, info = 2, debug = 3, trace = 4 }
_M.LEVELS = LEVELS

local logger = {}
logger.__index = logger

--- Creates a logger for `component` on `loop`.
-- @tparam disco.loop loop
-- @tparam string component the name shown in brackets on every line
function _M.new(loop, component)
    return setmetatable({ loop = loop, component = component }, logger)
end

--- Formats like `string.format` when arguments follow, and logs at `level`.
-- A format error is logged as such rather than raised: a log line must not
-- break the code that wrote it.
function logger:log(level, fmt, ...)
    local loop = self.loop
    if loop:is_closed() then
        -- Handles closing with the loop may still report; only trouble is
        -- worth a line then, and the loop's logger is gone.
        if LEVELS[level] <= LEVELS.warn then
            io.stderr:write(level:upper(), " [", self.component, "] ", tostring(fmt), "\n")
        end
        return
    end
    if LEVELS[level] > LEVELS[loop:get_log_level()] then
        return
    end
    local msg = fmt
    if select("#", ...) > 0 then
        local ok, formatted = pcall(string_format, fmt, ...)
        msg = ok and formatted
            or ("bad log format " .. tostring(fmt) .. ": " .. formatted)
    end
    loop:log(level, self.component, tostring(msg))
end

for name in pairs(LEVELS) do
    logger[name] = function(self, fmt, ...)
        return self:log(name, fmt, ...)
    end
end

return _M
