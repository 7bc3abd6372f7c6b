--- `disco run SCRIPT.lua [ARGS...]`: runs a Lua script on the runtime.
-- @module disco.cli.run

local cli = require "disco.cli"

local _M = {
    name = "run",
    summary = "run a Lua script on the disco runtime",
    usage = "disco run SCRIPT.lua [ARGS...]",
    help = [[
The script is called with the runtime and its arguments:

    local rt, first_arg = ...
    rt:every(1000, function() rt.log:info("tick") end)

The global `arg` holds the arguments too (arg[0] is the script). After the
script returns, the loop runs until the script calls rt:stop([code]), until
nothing is left to do, or until SIGINT or SIGTERM, which stop it cleanly
(exit status 0). SIGHUP reloads every plugin the script loaded
(rt:load_plugin); a plugin whose new version fails keeps its old one.
An error raised by the script exits with status 1 and its traceback; an
error raised inside a callback (a timer, say) is logged with its traceback
and the loop carries on.]],
}

local function traceback(err)
    return debug.traceback(tostring(err), 2)
end

function _M.run(args)
    local script = args[1]
    if script == nil then
        return cli.usage_error(_M, "missing the script to run")
    end
    local file = io.open(script, "r")
    if file == nil then
        return cli.usage_error(_M, "cannot read '" .. script .. "'")
    end
    file:close()
    local chunk, load_err = loadfile(script)
    if chunk == nil then
        cli.stderr("disco run: %s", load_err)
        return 1
    end

    local rt = require("disco").runtime({ name = "run" })
    local stopping = false
    for _, signame in ipairs({ "SIGINT", "SIGTERM" }) do
        rt:on_signal(signame, function(name)
            if not stopping then
                stopping = true
                rt.log:info("%s received, stopping", name)
            end
            rt:stop(0)
        end)
    end

    -- SIGHUP reloads every plugin; each failure is logged by the host and
    -- leaves that plugin's old version running.
    rt:on_signal("SIGHUP", function()
        local ok = rt.plugins:reload_all()
        rt.log:info("SIGHUP: plugins reloaded%s", ok and "" or " (some kept their old version)")
    end)

    local script_args = { [0] = script }
    for i = 2, #args do
        script_args[i - 1] = args[i]
    end
    _G.arg = script_args

    local ok, err = xpcall(chunk, traceback, rt, unpack(script_args))
    if not ok then
        cli.stderr("disco run: %s", err)
        rt:close()
        return 1
    end
    rt:run()
    rt:close()
    return rt.exit_code or 0
end

return _M
