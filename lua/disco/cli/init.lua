--- The `disco` command line: dispatches `disco <command> [args]` to the
-- module `disco.cli.<command>`.
--
-- A command module has `summary` (one line), `usage` (the synopsis), `help`
-- (a paragraph) and `run(args) -> exit status`. Exit statuses: 0 success,
-- 1 failure (with a message or a traceback on stderr), 2 usage error.
-- @module disco.cli

local _M = {}

--- The commands, in the order `disco help` lists them.
_M.COMMANDS = { "run", "serve", "provide", "resolve", "watch", "ls", "revision", "version", "help" }

local known = {}
for _, name in ipairs(_M.COMMANDS) do
    known[name] = true
end

local function stderr(fmt, ...)
    io.stderr:write(string.format(fmt, ...), "\n")
end
_M.stderr = stderr

--- Loads a command module, or returns nil for an unknown command name.
function _M.command(name)
    if not known[name] then
        return nil
    end
    return require("disco.cli." .. name)
end

--- Reports a usage error for `command` and returns the usage exit status.
function _M.usage_error(command, message)
    stderr("disco %s: %s", command.name, message)
    stderr("usage: %s", command.usage)
    stderr("Try 'disco help %s' for more.", command.name)
    return 2
end

--- The entry point the host binary calls with argv (argv[0] is the binary).
-- @treturn integer the exit status
function _M.main(argv)
    local name = argv[1]
    if name == nil then
        require("disco.cli.help").print_overview(io.stderr)
        return 2
    end
    if name == "-h" or name == "--help" then
        name = "help"
    elseif name == "-v" or name == "--version" then
        name = "version"
    end
    local command = _M.command(name)
    if command == nil then
        stderr("disco: unknown command '%s'", name)
        stderr("Run 'disco help' for the list of commands.")
        return 2
    end
    local args = {}
    for i = 2, #argv do
        args[#args + 1] = argv[i]
    end
    return command.run(args) or 0
end

return _M
