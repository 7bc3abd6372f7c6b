-- examples/introspection.lua: a provider and a consumer in one process on
-- the embedded memory registry, with Dubbo's default local storage (the
-- provider serves its MetadataService on PORT): no registry server needed.
--
--   build/disco run examples/introspection.lua [PORT=20880]
--
-- The provider exports two services and registers; the consumer resolves a
-- service ID through the mapping the provider wrote, reads the MetadataInfo
-- once, and prints the address list; then the provider exports one more
-- service (a new revision) and stops, and the consumer follows.
local rt, port = ...
port = tonumber(port) or 20880

local REGISTRY = "memory://example"

rt:on("ServiceInstanceRegistered", function(event)
    print(string.format("registered %s at %s:%d, revision %s", event.instance.name,
                        event.instance.host, event.instance.port,
                        event.instance.metadata["dubbo.metadata.revision"]))
end)

local provider = rt:provider({ registry = REGISTRY, app = "shop", host = "127.0.0.1", port = port })
provider:export({ interface = "com.acme.Cart", version = "1.0.0", methods = { "add", "remove" } })
provider:export({ interface = "com.acme.Order", methods = { "place" } })

local consumer = rt:consumer({ registry = REGISTRY })
local function show(id)
    return function(diff, list)
        print(string.format("%s: %d address(es) (+%d -%d)", id, #list, #diff.added, #diff.removed))
        for _, node in ipairs(list) do
            print("  " .. node.url)
        end
    end
end

provider:start(function(err)
    assert(not err, err)
    consumer:subscribe("dubbo:com.acme.Cart:1.0.0", show("dubbo:com.acme.Cart:1.0.0"))
    consumer:subscribe("dubbo:com.acme.Payment", show("dubbo:com.acme.Payment"))
    rt:after(200, function()
        provider:export({ interface = "com.acme.Payment", methods = { "charge" } })
        provider:update(function(uerr)
            assert(not uerr, uerr)
            rt:after(200, function()
                provider:stop(function(serr)
                    assert(not serr, serr)
                    rt:after(200, function()
                        print(string.format("metadata fetches: %d", consumer:counters().fetch_calls))
                        consumer:close()
                        rt:stop(0)
                    end)
                end)
            end)
        end)
    end)
end)
