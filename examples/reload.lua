-- examples/reload.lua: a plugin replaced while the runtime runs.
--
--   build/disco run examples/reload.lua
--
-- Writes a listener plugin (version 1.0.0) into a temporary plugin
-- directory, loads it, and feeds it an event every 100 ms. Half a second
-- later it rewrites the plugin file as version 1.1.0: the file watch
-- reloads it with no call, the count of events it has seen carries over
-- through save/restore, and not one event is lost or counted twice.
local rt = ...

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
    io.stdout:flush()
end

local pipe = assert(io.popen("mktemp -d /tmp/disco-reload.XXXXXX"))
local dir = pipe:read("*l")
pipe:close()
os.execute("mkdir -p " .. dir .. "/listener")
local path = dir .. "/listener/greeter.lua"

local function write_plugin(version, greeting)
    local f = assert(io.open(path, "w"))
    f:write(string.format([[
local state = { seen = 0 }
local M = { name = "greeter", version = %q, kind = "listener" }
function M.init(ctx)
    ctx:on("ServiceInstancesChanged", function(event)
        state.seen = state.seen + 1
        ctx.log:info("%%s: change #%%d (event %%d)", %q, state.seen, event.seq)
    end)
end
function M.save() return state end
function M.restore(old) if old then state = old end end
function M.seen() return state.seen end
return M
]], version, greeting))
    f:close()
end

write_plugin("1.0.0", "hello from 1.0.0")
rt.plugins:add_path(dir)
local greeter = assert(rt:load_plugin("listener/greeter"))
say("loaded listener/greeter %s from %s", greeter.version, path)

rt:on("PluginReloaded", function(event)
    say("reloaded %s: %s -> %s, without a call (file watch)", event.name,
        event.old_version, event.version)
end)

local fired = 0
local source = rt:every(100, function()
    fired = fired + 1
    rt:emit("ServiceInstancesChanged", { service_name = "demo", instances = {}, seq = fired })
end, "source")

rt:after(500, function()
    say("rewriting %s as version 1.1.0", path)
    write_plugin("1.1.0", "HELLO FROM 1.1.0")
end)

rt:after(1500, function()
    source:close()
    local now = rt.plugins:get("listener/greeter")
    say("events fired: %d; seen by the plugin: %d; version now %s", fired,
        now.seen(), now.version)
    local ok = now.version == "1.1.0" and now.seen() == fired
    say(ok and "reload: OK" or "reload: FAILED")
    os.execute("rm -rf " .. dir)
    rt:stop(ok and 0 or 1)
end)
