-- The dubbo protocol against an independent Java peer (spec/interop,
-- Caucho Hessian, frames written by hand from WIRE.md §7): a disco
-- provider's MetadataService answers the Java client, and disco's client
-- and consumer flow read MetadataInfo from the Java provider.
local disco = require "disco"
local cjson = require "cjson"
local helpers = require "spec.helpers"
local java = require "spec.support.java"
local metadata_info = require "disco.metadata_info"
local ports = require "disco.testing.ports"
local regspec = require "spec.support.registry"
local run_all = regspec.run_all

local core = helpers.core

local SERVICE = "org.apache.dubbo.metadata.MetadataService"
local METADATA_INFO = "org.apache.dubbo.metadata.MetadataInfo"
local SERVICE_INFO = "org.apache.dubbo.metadata.MetadataInfo$ServiceInfo"

local seq = 0

local function transport(loop)
    if type(loop.dubbo_server) ~= "function" or type(loop.dubbo_client) ~= "function" then
        error("the disco.core loop has no dubbo_server/dubbo_client: the dubbo transport"
              .. " (core/dubbo_*.c and its bindings) is not built into this disco.core", 2)
    end
    if core.hessian2_null == nil then
        error("disco.core has no hessian2_null: the C Hessian2 codec is not built in", 2)
    end
end

local function is_null(v)
    return v == nil or v == cjson.null or v == core.hessian2_null
end

-- Where two remote-form MetadataInfo documents (decoded JSON) differ, with
-- missing and null the same; nil when equal.
local function differ(e, a, path)
    if is_null(e) or is_null(a) then
        if is_null(e) and is_null(a) then
            return nil
        end
        return path .. ": " .. tostring(e) .. " vs " .. tostring(a)
    end
    if type(e) ~= "table" or type(a) ~= "table" then
        return e ~= a and (path .. ": " .. tostring(e) .. " vs " .. tostring(a)) or nil
    end
    for k, v in pairs(e) do
        local d = differ(v, a[k], path .. "." .. tostring(k))
        if d then
            return d
        end
    end
    for k, v in pairs(a) do
        if e[k] == nil and not is_null(v) then
            return path .. ": unexpected " .. tostring(k)
        end
    end
    return nil
end

describe("dubbo protocol interop with a Java peer", function()
    local rts, peers

    local function runtime()
        local rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        rts[#rts + 1] = rt
        transport(rt.loop)
        return rt
    end

    -- Runs the Java peer in the background while the runtimes' loops turn
    -- (a disco server in this process must answer it); its status and output.
    local function java_while_running(args)
        local h = java.start(args)
        peers[#peers + 1] = h
        local done = run_all(rts, function() return java.result(h) ~= nil end, 40000)
        assert(done, "the Java peer did not finish: Interop " .. table.concat(args, " "))
        return java.result(h)
    end

    before_each(function()
        seq = seq + 1
        rts, peers = {}, {}
    end)

    after_each(function()
        for _, h in ipairs(peers) do
            java.kill(h)
        end
        for _, server in ipairs(peers.servers or {}) do
            java.stop(server)
        end
        for i = #rts, 1, -1 do
            rts[i]:close()
        end
    end)

    describe("a disco MetadataService (local storage) answers Java", function()
        local rt, p, port

        before_each(function()
            java.classes() -- compile first, so that a missing JDK says so
            rt = runtime()
            p = rt:provider({ registry = "memory://interop-p" .. seq, app = "shop", host = "127.0.0.1",
                              port = ports.pick_port(), storage = "local", mapping = false })
            p:export({ interface = "com.acme.Cart", version = "1.0.0", methods = { "remove", "add" },
                       params = { note = "caf\195\169 \240\159\152\128" } })
            p:export({ interface = "com.acme.Order", group = "g1", methods = { "place" } })
            local done, err = false, nil
            p:start(function(e) done, err = true, e end)
            assert.is_true(run_all(rts, function() return done end, 10000), "the provider did not start")
            assert.is_nil(err)
            local params = cjson.decode(p.instance.metadata["dubbo.metadata-service.url-params"])
            port = tonumber(params.port)
            assert.is_number(port)
        end)

        it("with the MetadataInfo of the current revision", function()
            local status, out, err = java_while_running({ "call", "127.0.0.1", port, "shop", p.revision })
            assert(status == 0, "Interop call: status " .. tostring(status) .. "\n" .. out .. err)
            local got = cjson.decode(out)
            assert.equal("shop", got.app)
            assert.equal(p.revision, got.revision)
            local cart = got.services["com.acme.Cart:1.0.0:dubbo"]
            assert.is_table(cart, out)
            assert.equal("com.acme.Cart", cart.name)
            assert.equal("1.0.0", cart.version)
            assert.equal("dubbo", cart.protocol)
            assert.equal("add,remove", cart.params.methods)
            assert.equal("caf\195\169 \240\159\152\128", cart.params.note)
            local order = got.services["g1/com.acme.Order:dubbo"]
            assert.is_table(order, out)
            assert.equal("g1", order.group)
            -- Exactly what disco serves, field for field.
            local entry = p.metadata_server and p.metadata_server.infos
                and p.metadata_server.infos[p.revision]
            assert(entry and entry.info, "the provider does not hold its served MetadataInfo"
                   .. " in metadata_server.infos[revision].info")
            local served = cjson.decode(entry.info:to_json())
            local d = differ(served, got, "$")
            assert(d == nil, d)
            -- And Java's answer has the revision it was asked for.
            local info = assert(metadata_info.from_json(out))
            assert.equal(p.revision, metadata_info.compute_revision(info))
        end)

        it("null for a revision it does not know", function()
            local status, out, err = java_while_running({ "call", "127.0.0.1", port, "shop", "0123abcd" })
            assert(status == 0, "Interop call: status " .. tostring(status) .. "\n" .. out .. err)
            assert.equal("null\n", out)
        end)

        it("status 60 (service not found) for another application's group", function()
            local status, out, err = java_while_running({ "call", "127.0.0.1", port, "billing", p.revision })
            assert(status == 2, "Interop call: status " .. tostring(status) .. "\n" .. out .. err)
            assert.matches("^status 60: ", out)
        end)

        it("a heartbeat with a response event", function()
            local status, out, err = java_while_running({ "heartbeat", "127.0.0.1", port })
            assert(status == 0, "Interop heartbeat: status " .. tostring(status) .. "\n" .. out .. err)
            assert.matches("^heartbeat ok", out)
        end)
    end)

    describe("disco reads a Java MetadataService", function()
        local APP = "billing"
        local PORT = 20999 -- the services' port; nothing listens there
        local rt, server, revision

        before_each(function()
            rt = runtime()
            local doc = {
                app = APP,
                services = {
                    ["com.acme.Pay:1.0.0:dubbo"] = {
                        name = "com.acme.Pay", version = "1.0.0", protocol = "dubbo", port = PORT,
                        path = "com.acme.Pay",
                        params = { application = APP, side = "provider", methods = "charge,refund",
                                   interface = "com.acme.Pay", version = "1.0.0",
                                   note = "\228\184\173 \240\159\152\128" },
                    },
                    ["g2/com.acme.Audit:dubbo"] = {
                        name = "com.acme.Audit", group = "g2", protocol = "dubbo", port = PORT,
                        path = "com.acme.Audit",
                        params = { application = APP, side = "provider", methods = "log", group = "g2",
                                   interface = "com.acme.Audit" },
                    },
                },
            }
            revision = metadata_info.compute_revision(assert(metadata_info.from_json(cjson.encode(doc))))
            doc.revision = revision
            server = java.serve(APP, revision, cjson.encode(doc))
            peers.servers = { server }
        end)

        local function call(client, group, rev)
            local box = {}
            client:call({ path = SERVICE, version = "1.0.0", group = group, method = "getMetadataInfo",
                          types = "Ljava/lang/String;", args = { rev }, attachments = {} },
                        function(err, value, attachments)
                            box.done, box.err, box.value, box.attachments = true, err, value, attachments
                        end)
            assert.is_true(run_all(rts, function() return box.done end, 15000), "no answer from Java")
            return box
        end

        it("dubbo_client gets the MetadataInfo object, null and service-not-found", function()
            local client = assert(rt.loop:dubbo_client({ host = "127.0.0.1", port = server.port,
                                                         timeout = 10000 }))
            local r = call(client, APP, revision)
            assert.is_nil(r.err)
            local v = r.value
            assert.is_table(v)
            assert.equal(METADATA_INFO, v["@class"])
            assert.equal(APP, v.app)
            assert.equal(revision, v.revision)
            assert.equal("java.util.concurrent.ConcurrentHashMap", v.services["@map"])
            local pay = v.services["com.acme.Pay:1.0.0:dubbo"]
            assert.is_table(pay)
            assert.equal(SERVICE_INFO, pay["@class"])
            assert.equal("com.acme.Pay", pay.name)
            assert.is_true(is_null(pay.group))
            assert.equal("1.0.0", pay.version)
            assert.equal("dubbo", pay.protocol)
            assert.equal(PORT, pay.port)
            assert.equal("com.acme.Pay", pay.path)
            assert.equal("charge,refund", pay.params.methods)
            assert.equal("\228\184\173 \240\159\152\128", pay.params.note)
            assert.equal("g2", v.services["g2/com.acme.Audit:dubbo"].group)

            r = call(client, APP, "0123abcd")
            assert.is_nil(r.err)
            assert.is_true(is_null(r.value))

            r = call(client, "shop", revision)
            assert.is_string(r.err)
            assert.is_truthy(r.err:lower():find("not found", 1, true) or r.err:find("60", 1, true), r.err)
            if client.close then
                client:close()
            end
        end)

        it("the consumer flow resolves URLs from Java's MetadataInfo", function()
            local name = "interop-c" .. seq
            local store = require("disco.registry.memory_store").get(name)
            local session = store:open_session()
            store:put(APP, "127.0.0.1:" .. PORT, {
                name = APP, host = "127.0.0.1", port = PORT, enabled = true,
                registration_time = os.time() * 1000,
                metadata = {
                    ["dubbo.metadata.revision"] = revision,
                    ["dubbo.metadata.storage-type"] = "local",
                    ["dubbo.metadata-service.url-params"] = cjson.encode({
                        port = tostring(server.port), protocol = "dubbo", version = "1.0.0" }),
                    ["dubbo.endpoints"] = '[{"port":' .. PORT .. ',"protocol":"dubbo"}]',
                },
            }, session)
            local c = rt:consumer({ registry = "memory://" .. name })
            local last
            c:subscribe("dubbo:com.acme.Pay:1.0.0", function(_, list) last = list end,
                        { provided_by = { APP } })
            assert.is_true(run_all(rts, function() return last and #last == 1 end, 20000),
                           "no URL from Java's MetadataInfo; serve log:\n"
                           .. (helpers.read_file(server.log) or ""))
            local entry = last[1]
            assert.equal(APP, entry.app)
            assert.equal(PORT, entry.port)
            assert.matches("^dubbo://127%.0%.0%.1:" .. PORT .. "/com%.acme%.Pay%?", entry.url)
            assert.matches("methods=charge,refund", entry.url, 1, true)
            assert.equal(1, c:counters().fetch_calls)
            -- The Java peer saw exactly the call Dubbo would make.
            assert.matches("request %d+: 2%.0%.2 " .. APP .. "/" .. SERVICE:gsub("%.", "%%.")
                           .. ":1%.0%.0 getMetadataInfo%(Ljava/lang/String;%) %[" .. revision .. "%]",
                           helpers.read_file(server.log) or "")
        end)
    end)
end)
