-- luacheck configuration: LuaJIT, no new globals anywhere.
std = "luajit"
max_line_length = 120
codes = true

files["spec"] = { std = "+busted" }
-- `disco run` sets the global `arg` for scripts, as the lua interpreter does.
files["lua/disco/cli/run.lua"] = { globals = { "arg" } }
files["examples"] = { read_globals = { "arg" } }
