-- A small HTTP backend registered as a Dubbo application: it answers every
-- request with "hello from PORT" and registers itself (host 127.0.0.1,
-- remote metadata) as an instance of APP exporting INTERFACE over the
-- `rest` protocol on PORT. For the OpenResty specs and the bench.
--
--   build/disco run spec/support/http_provider.lua REGISTRY_URL APP PORT \
--       [INTERFACE=com.acme.Hello] [WEIGHT]
--
-- Prints "registered APP at 127.0.0.1:PORT" once registered; SIGTERM ends
-- it (its session closes, which removes the registration).
local rt = ...

local registry, app, port = arg[1], arg[2], tonumber(arg[3])
local interface = arg[4] or "com.acme.Hello"
local weight = arg[5]
assert(registry and app and port, "usage: http_provider.lua REGISTRY_URL APP PORT [INTERFACE] [WEIGHT]")

local server = assert(rt.loop:http_server({
    host = "127.0.0.1",
    port = port,
    on_request = function(req)
        req:reply(200, { ["Content-Type"] = "text/plain" },
                  "hello from " .. port .. " (" .. req.method .. " " .. req.path .. ")\n")
    end,
}))
port = server:port()

local provider = rt:provider({
    registry = registry, app = app, host = "127.0.0.1", port = port, storage = "remote",
})
provider:export({ interface = interface, protocol = "rest", port = port,
                  params = weight and { weight = weight } or nil })
provider:start(function(err)
    if err then
        io.stderr:write("http_provider: ", tostring(err), "\n")
        return rt:stop(1)
    end
    io.stdout:write(string.format("registered %s at 127.0.0.1:%d\n", app, port))
    io.stdout:flush()
end)
