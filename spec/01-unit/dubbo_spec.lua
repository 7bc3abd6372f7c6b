-- disco.core's dubbo server and client through the Lua bindings, on
-- loopback: calls and replies (at once and from a timer), error statuses,
-- timeouts, heartbeats, many concurrent calls on one connection, a
-- reconnect, and the server's counters. Abusive peers are tested in C
-- (core/test/test_dubbo.c): Lua has no raw TCP.
local core = require "disco.core"
local helpers = require "spec.helpers"

local METADATA = "org.apache.dubbo.metadata.MetadataService"

describe("loop:dubbo_server and loop:dubbo_client", function()
    local loop, server, client, requests

    -- The provider side of the spec: answers by method name.
    local function on_request(req)
        requests[#requests + 1] = req
        if req.method == "getMetadataInfo" then
            if req.args[1] == "rev1" then
                req.reply({
                    ["@class"] = "org.apache.dubbo.metadata.MetadataInfo",
                    app = req.group,
                    revision = req.args[1],
                    services = {},
                })
            else
                req.reply(nil)
            end
        elseif req.method == "echo" then
            req.reply(req.args[1])
        elseif req.method == "later" then
            local t = assert(loop:timer("later"))
            t:start(20, 0, function()
                req.reply("later " .. req.args[1])
                t:close()
            end)
        elseif req.method == "never" then
            return
        else
            req.fail("service_not_found", "no " .. req.path .. "." .. req.method)
        end
    end

    local function call(method, args, opts)
        local done, result = false, {}
        local c = {
            path = METADATA,
            version = "1.0.0",
            group = "provider-app",
            method = method,
            types = ("Ljava/lang/String;"):rep(#args),
            args = args,
            attachments = { timeout = "3000" },
        }
        for k, v in pairs(opts or {}) do
            c[k] = v
        end
        assert(client:call(c, function(err, value, attachments)
            result = { err = err, value = value, attachments = attachments }
            done = true
        end))
        assert.is_true(helpers.run_until(loop, function()
            return done
        end, 5000))
        return result
    end

    before_each(function()
        loop = assert(core.new_loop())
        requests = {}
        server = assert(loop:dubbo_server({
            host = "127.0.0.1",
            port = 0,
            on_request = on_request,
        }))
        client = assert(loop:dubbo_client({
            host = "127.0.0.1",
            port = server:port(),
            timeout = 2000,
        }))
    end)

    after_each(function()
        if not loop:is_closed() then
            assert.is_true(loop:close())
        end
        core.set_error_handler(nil)
    end)

    it("calls getMetadataInfo and decodes the object reply", function()
        assert.is_true(server:port() > 0)
        local r = call("getMetadataInfo", { "rev1" })
        assert.is_nil(r.err)
        assert.equals("org.apache.dubbo.metadata.MetadataInfo", r.value["@class"])
        assert.equals("provider-app", r.value.app)
        assert.equals("rev1", r.value.revision)
        local req = requests[1]
        assert.equals(METADATA, req.path)
        assert.equals("1.0.0", req.version)
        assert.equals("provider-app", req.group)
        assert.equals("getMetadataInfo", req.method)
        assert.equals("Ljava/lang/String;", req.types)
        assert.same({ "rev1" }, req.args)
        assert.equals("provider-app", req.attachments.group)
        assert.equals(METADATA, req.attachments.interface)
        assert.equals(METADATA, req.attachments.path)
        assert.equals("1.0.0", req.attachments.version)
        assert.equals("3000", req.attachments.timeout)
        assert.is_true(client:connected())
        -- An unknown revision: a null reply.
        r = call("getMetadataInfo", { "unknown" })
        assert.is_nil(r.err)
        assert.is_nil(r.value)
    end)

    it("replies asynchronously, after on_request returned", function()
        local r = call("later", { "x" })
        assert.is_nil(r.err)
        assert.equals("later x", r.value)
    end)

    it("maps service not found to ENOENT with the server's message", function()
        local r = call("nope", {})
        assert.equals("ENOENT: no " .. METADATA .. ".nope", r.err)
        assert.is_nil(r.value)
    end)

    it("refuses a second answer and unknown statuses", function()
        local saved
        server:close()
        server = assert(loop:dubbo_server({
            host = "127.0.0.1",
            on_request = function(req)
                saved = req
                assert(req.reply("first"))
            end,
        }))
        client:close()
        client = assert(loop:dubbo_client({ host = "127.0.0.1", port = server:port() }))
        local r = call("any", {})
        assert.equals("first", r.value)
        assert.has_error(function()
            saved.reply("second")
        end, "this request was answered already")
        assert.has_error(function()
            saved.fail("no_such_status", "x")
        end)
    end)

    it("times out one call and keeps serving the others", function()
        local r = call("never", {}, { timeout = 50 })
        assert.matches("^ETIMEDOUT: ", r.err)
        r = call("echo", { "after" })
        assert.is_nil(r.err)
        assert.equals("after", r.value)
    end)

    it("answers heartbeats", function()
        local done, err, ms = false, nil, nil
        assert(client:heartbeat(function(e, m)
            err, ms, done = e, m, true
        end))
        assert.is_true(helpers.run_until(loop, function()
            return done
        end))
        assert.is_nil(err)
        assert.is_number(ms)
        assert.is_true(ms >= 0)
        assert.equals(1, server:stats().heartbeats)
    end)

    it("matches 200 concurrent calls on one connection by id", function()
        local n, got, wrong = 200, 0, 0
        for i = 1, n do
            assert(client:call({
                path = "svc",
                method = "echo",
                types = "Ljava/lang/String;",
                args = { "v" .. i },
            }, function(err, value)
                got = got + 1
                if err or value ~= "v" .. i then
                    wrong = wrong + 1
                end
            end))
        end
        assert.is_true(helpers.run_until(loop, function()
            return got == n
        end, 10000))
        assert.equals(0, wrong)
        local st = server:stats()
        assert.equals(n, st.requests)
        assert.equals(1, st.accepted)
        assert.equals(0, st.protocol_errors)
    end)

    it("reconnects after the server closed the connection", function()
        local r = call("echo", { "one" })
        assert.equals("one", r.value)
        local port = server:port()
        -- The server goes away with a call pending.
        local done, err = false, nil
        assert(client:call({ path = "svc", method = "never" }, function(e)
            err, done = e, true
        end))
        loop:step()
        server:close()
        assert.is_true(helpers.run_until(loop, function()
            return done
        end))
        assert.matches("^ECONNRESET: ", err)
        assert.is_false(client:connected())
        -- Nobody listens now.
        r = call("echo", { "x" })
        assert.matches("^ECONNREFUSED: ", r.err)
        -- Back on the same port: the next call reconnects.
        server = assert(loop:dubbo_server({
            host = "127.0.0.1",
            port = port,
            on_request = on_request,
        }))
        r = call("echo", { "two" })
        assert.is_nil(r.err)
        assert.equals("two", r.value)
    end)

    it("cancels pending calls on close and refuses new ones", function()
        local err
        assert(client:call({ path = "svc", method = "never" }, function(e)
            err = e
        end))
        client:close()
        assert.matches("^ECANCELED: ", err)
        assert.has_error(function()
            client:call({ path = "svc", method = "x" }, function() end)
        end)
    end)

    it("reports a busy port", function()
        local other, err, ename = loop:dubbo_server({
            host = "127.0.0.1",
            port = server:port(),
            on_request = function() end,
        })
        assert.is_nil(other)
        assert.equals("EADDRINUSE", ename)
        assert.matches("^EADDRINUSE: ", err)
    end)

    it("closes everything with the loop", function()
        local err
        assert(client:call({ path = "svc", method = "never" }, function(e)
            err = e
        end))
        loop:step()
        assert.is_true(loop:close())
        assert.matches("^ECANCELED: ", err)
        assert.is_true(server:is_closed())
        assert.is_true(client:is_closed())
    end)
end)
