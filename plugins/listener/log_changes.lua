--- listener/log_changes: logs every change of an application's instance
-- list, one line per change, at a configurable level.
--
--   rt:load_plugin("listener/log_changes", { level = "info" })
local LEVELS = { error = true, warn = true, info = true, debug = true, trace = true }

local M = {
    name = "log_changes",
    version = "1.0.0",
    kind = "listener",
}

function M.check_config(conf)
    if conf.level ~= nil and not LEVELS[conf.level] then
        return false, "level must be one of error, warn, info, debug, trace; got "
            .. tostring(conf.level)
    end
    return true
end

function M.init(ctx, conf)
    local level = conf.level or "info"
    ctx:on("ServiceInstancesChanged", function(event)
        ctx.log:log(level, "%s: %d instance(s)", event.service_name, #event.instances)
    end)
end

return M
