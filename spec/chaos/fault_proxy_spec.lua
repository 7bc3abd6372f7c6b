-- spec/chaos/fault_proxy.c, the chaos suite's TCP fault proxy, in front of a
-- dubbo server: it forwards, holds bytes in a blackhole and delivers them
-- on "pass", delays, resets connections, and rejects bad commands.
local helpers = require "spec.helpers"
local proxy = require "spec.support.chaos.proxy"

describe("fault_proxy #chaos", function()
    local loop, server, px, clients

    before_each(function()
        loop = assert(helpers.core.new_loop())
        loop:set_log_level("warn")
        server = assert(loop:dubbo_server({ host = "127.0.0.1", port = 0,
                                            on_request = function(req) req.reply("pong") end }))
        px = proxy.start({ server:port() }, helpers.tmpdir() .. "/proxy.log")
        clients = {}
    end)

    after_each(function()
        px:stop()
        for _, c in ipairs(clients) do
            c:close()
        end
        server:close()
        assert(loop:close())
    end)

    local function client()
        local c = assert(loop:dubbo_client({ host = "127.0.0.1", port = px.routes[1], timeout = 10000 }))
        clients[#clients + 1] = c
        return c
    end

    -- Starts a heartbeat; returns a function giving (done, err).
    local function heartbeat(c, timeout)
        local done, err = false, nil
        c:heartbeat(function(e) done, err = true, e end, timeout)
        return function() return done, err end
    end

    local function finish(state, ms)
        assert.is_true(helpers.run_until(loop, function() return (state()) end, ms or 10000))
        local _, err = state()
        return err
    end

    it("forwards, and holds bytes in a blackhole until pass delivers them", function()
        local c = client()
        assert.is_nil(finish(heartbeat(c, 5000)))
        px:must("blackhole")
        local held = heartbeat(c, 8000)
        helpers.run_until(loop, function() return false end, 500)
        assert.is_false((held()))
        px:must("pass")
        assert.is_nil(finish(held))
    end)

    it("delays each direction", function()
        local c = client()
        assert.is_nil(finish(heartbeat(c, 5000)))
        px:must("delay 400")
        -- A round trip now takes at least 800 ms.
        assert.matches("ETIMEDOUT", finish(heartbeat(c, 300)))
        px:must("delay 0")
        assert.is_nil(finish(heartbeat(client(), 5000)))
    end)

    it("resets every open connection", function()
        local c = client()
        assert.is_nil(finish(heartbeat(c, 5000)))
        px:must("blackhole")
        local held = heartbeat(c, 8000)
        helpers.run_until(loop, function() return false end, 200)
        px:must("reset")
        local err = finish(held)
        assert.is_not_nil(err)
        assert.is_nil(err:match("ETIMEDOUT"))
        local route = px:stats()[1]
        assert.equal("pass", route.mode)
        assert.equal(0, route.conns)
    end)

    it("answers bad commands with an error and keeps serving", function()
        local _, err = px:command("bogus")
        assert.matches("unknown command", err)
        _, err = px:command("delay 99999999")
        assert.matches("at most 60000", err)
        _, err = px:command("pass 7")
        assert.matches("no such route", err)
        assert.is_nil(finish(heartbeat(client(), 5000)))
        assert.equal(1, #px:stats())
    end)
end)
