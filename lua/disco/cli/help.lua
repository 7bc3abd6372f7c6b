--- `disco help [command]`: the list of commands, or one command's help.
-- @module disco.cli.help

local cli = require "disco.cli"

local _M = {
    name = "help",
    summary = "show the commands, or the help of one command",
    usage = "disco help [COMMAND]",
    help = "Without a command, lists every command with a one-line summary.",
}

--- Writes the list of commands to `out`.
function _M.print_overview(out)
    out:write("usage: disco COMMAND [ARGS...]\n\ncommands:\n")
    for _, name in ipairs(cli.COMMANDS) do
        out:write(string.format("  %-10s %s\n", name, cli.command(name).summary))
    end
    out:write("\nRun 'disco help COMMAND' for the help of one command.\n")
end

function _M.run(args)
    if #args > 1 then
        return cli.usage_error(_M, "expected at most one command name")
    end
    if args[1] == nil then
        _M.print_overview(io.stdout)
        return 0
    end
    local command = cli.command(args[1])
    if command == nil then
        return cli.usage_error(_M, "unknown command '" .. args[1] .. "'")
    end
    io.stdout:write(string.format("usage: %s\n\n%s\n\n%s\n", command.usage,
                                  command.summary, command.help))
    return 0
end

return _M
