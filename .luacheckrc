-- luacheck configuration: LuaJIT, no new globals anywhere.
std = "luajit"
max_line_length = 120
codes = true

files["spec"] = { std = "+busted" }
-- `disco run` sets the global `arg` for scripts, as the lua interpreter does.
files["lua/disco/cli/run.lua"] = { globals = { "arg" } }
files["examples"] = { read_globals = { "arg" } }
-- The OpenResty glue runs inside nginx, which provides `ngx`.
-- (ngx.ctx and ngx.header are written to, so it is not read-only here.)
files["lua/disco/resty"] = { globals = { "ngx" } }
files["examples/openresty"] = { globals = { "ngx" } }
files["bench/resty_nodes.lua"] = { read_globals = { "arg", "ngx" } }
