-- disco.core's HTTP client through the Lua binding, on loopback: against
-- loop:http_server (buffered requests, keep-alive reuse, many concurrent
-- requests through a small pool) and against a misbehaving python3 server
-- (spec/support/http_raw_server.py: a chunked stream of lines cut across
-- chunks, a body that runs until the close, a close mid-body, silence,
-- oversized headers and bodies, garbage, a stale pooled connection).
-- Byte-level cases are tested in C: core/test/test_http_client.c.
local core = require "disco.core"
local helpers = require "spec.helpers"
local process = require "disco.testing.process"

describe("loop:http_client", function()
    local loop, server, requests

    -- Runs the loop until `n` callbacks have run (each wait bounded).
    local function wait_for(pred, ms)
        assert.is_true(helpers.run_until(loop, pred, ms or 10000))
    end

    -- One request; returns err, res once its callback ran.
    local function fetch(client, opts)
        local done, e, r = false, nil, nil
        local req, err = client:request(opts, function(err2, res)
            assert.is_false(done) -- once
            done, e, r = true, err2, res
        end)
        assert.is_truthy(req, err)
        wait_for(function()
            return done
        end)
        return e, r
    end

    before_each(function()
        loop = assert(core.new_loop())
        requests = {}
        server = assert(loop:http_server({
            host = "127.0.0.1",
            port = 0,
            name = "spec-backend",
            on_request = function(req)
                requests[#requests + 1] = req
                if req.path == "/later" then
                    local t = assert(loop:timer("later"))
                    t:start(20, 0, function()
                        t:close()
                        req:reply(200, nil, "later")
                    end)
                elseif req.path == "/never" then
                    return -- left unanswered
                elseif req.path == "/missing" then
                    req:reply(404, nil, "no such thing\n")
                else
                    req:reply(200, { ["Content-Type"] = "text/plain", ["X-Echo"] = "yes" },
                        req.method .. " " .. req.path .. " " .. req.body)
                end
            end,
        }))
    end)

    after_each(function()
        server:close()
        loop:close()
    end)

    describe("against loop:http_server", function()
        it("makes a GET and a POST with headers and a body", function()
            local client = assert(loop:http_client({ host = "127.0.0.1", port = server:port(), name = "t" }))
            local err, res = fetch(client, { path = "/a?x=1" })
            assert.is_nil(err)
            assert.equals(200, res.status)
            assert.equals("GET /a ", res.body)
            assert.equals("yes", res.headers["x-echo"])
            assert.equals("text/plain", res.headers["content-type"])

            err, res = fetch(client, {
                method = "POST",
                path = "/v3/kv/range",
                headers = { ["Content-Type"] = "application/json", ["X-Test"] = "1" },
                body = '{"key":"Zm9v"}',
            })
            assert.is_nil(err)
            assert.equals('POST /v3/kv/range {"key":"Zm9v"}', res.body)
            local seen = requests[#requests]
            assert.equals("application/json", seen.headers["content-type"])
            assert.equals("1", seen.headers["x-test"])
            assert.equals("127.0.0.1:" .. server:port(), seen.headers["host"])
            client:close()
        end)

        it("treats any status as an answer, and HEAD as bodiless", function()
            local client = assert(loop:http_client({ host = "127.0.0.1", port = server:port() }))
            local err, res = fetch(client, { path = "/missing" })
            assert.is_nil(err)
            assert.equals(404, res.status)
            assert.equals("no such thing\n", res.body)
            err, res = fetch(client, { method = "HEAD", path = "/x" })
            assert.is_nil(err)
            assert.equals(200, res.status)
            assert.equals("", res.body)
            assert.equals("8", res.headers["content-length"]) -- "HEAD /x "
            -- The connection survived the HEAD: its body was not awaited.
            err, res = fetch(client, { path = "/y" })
            assert.is_nil(err)
            assert.equals("GET /y ", res.body)
            assert.equals(1, client:stats().connects)
            client:close()
        end)

        it("ends pending requests with ECANCELED when the loop closes", function()
            local client = assert(loop:http_client({ host = "127.0.0.1", port = server:port() }))
            local got
            client:request({ path = "/never" }, function(err)
                got = err
            end)
            wait_for(function()
                return #requests == 1
            end)
            loop:close()
            assert.equals("ECANCELED: client closed", got)
            assert.is_true(client:is_closed())
        end)

        it("reuses one keep-alive connection for requests in sequence", function()
            local client = assert(loop:http_client({ host = "127.0.0.1", port = server:port() }))
            for i = 1, 5 do
                local err, res = fetch(client, { path = "/n" .. i })
                assert.is_nil(err)
                assert.equals("GET /n" .. i .. " ", res.body)
            end
            local st = client:stats()
            assert.equals(1, st.connects)
            assert.equals(4, st.reused)
            assert.equals(1, st.idle)
            assert.equals(1, server:stats().accepted)
            client:close()
        end)

        it("queues requests beyond max_connections and answers all", function()
            local client = assert(loop:http_client({
                host = "127.0.0.1",
                port = server:port(),
                max_connections = 3,
            }))
            local answered, bodies = 0, {}
            for i = 1, 40 do
                assert.is_truthy(client:request({ path = "/later", headers = { ["X-N"] = tostring(i) } },
                    function(err, res)
                        assert.is_nil(err)
                        answered = answered + 1
                        bodies[#bodies + 1] = res.body
                    end))
            end
            assert.equals(40, client:stats().queued)
            wait_for(function()
                return answered == 40
            end, 20000)
            assert.equals(3, client:stats().connects)
            assert.equals(3, server:stats().accepted)
            assert.equals("later", bodies[40])
            -- FIFO: the server saw them in the order they were made.
            for i = 1, 40 do
                assert.equals(tostring(i), requests[i].headers["x-n"])
            end
            client:close()
        end)

        it("times a request out (timeout) and a silent server (read_timeout)", function()
            local client = assert(loop:http_client({ host = "127.0.0.1", port = server:port(), read_timeout = 100 }))
            local err, res = fetch(client, { path = "/never" })
            assert.matches("^ETIMEDOUT: ", err)
            assert.is_nil(res)
            local client2 = assert(loop:http_client({ host = "127.0.0.1", port = server:port(), read_timeout = 0 }))
            err = fetch(client2, { path = "/never", timeout = 100 })
            assert.matches("^ETIMEDOUT: .*timeout", err)
            client:close()
            client2:close()
        end)

        it("cancels: no callback afterwards, the connection is not reused", function()
            local client = assert(loop:http_client({ host = "127.0.0.1", port = server:port() }))
            local called = false
            local req = client:request({ path = "/never" }, function()
                called = true
            end)
            wait_for(function()
                return #requests == 1
            end)
            req:cancel()
            req:cancel()
            assert.is_true(req:is_done())
            local err, res = fetch(client, { path = "/after" })
            assert.is_nil(err)
            assert.equals("GET /after ", res.body)
            assert.is_false(called)
            assert.equals(2, client:stats().connects)
            client:close()
        end)

        it("close() ends pending requests with ECANCELED, once each", function()
            local client = assert(loop:http_client({ host = "127.0.0.1", port = server:port(), max_connections = 1 }))
            local errs = {}
            for _ = 1, 3 do
                client:request({ path = "/never" }, function(err)
                    errs[#errs + 1] = err
                end)
            end
            wait_for(function()
                return #requests == 1
            end)
            client:close()
            client:close()
            assert.equals(3, #errs)
            for _, e in ipairs(errs) do
                assert.equals("ECANCELED: client closed", e)
            end
            assert.is_true(client:is_closed())
            assert.has_error(function()
                client:request({ path = "/" }, function() end)
            end)
        end)

        it("logs a callback that raises and carries on", function()
            local client = assert(loop:http_client({ host = "127.0.0.1", port = server:port() }))
            local before = core.callback_errors()
            local logged = {}
            loop:set_log_sink(function(_, _, msg)
                logged[#logged + 1] = msg
            end)
            local done = false
            client:request({ path = "/x" }, function()
                done = true
                error("callback exploded")
            end)
            wait_for(function()
                return done
            end)
            assert.equals(before + 1, core.callback_errors())
            assert.matches("callback exploded", table.concat(logged, "\n"))
            local err, res = fetch(client, { path = "/y" })
            assert.is_nil(err)
            assert.equals(200, res.status)
            loop:set_log_sink(nil)
            client:close()
        end)
    end)

    it("refuses ECONNREFUSED when nothing listens", function()
        local port = server:port()
        server:close()
        loop:step()
        local client = assert(loop:http_client({ host = "127.0.0.1", port = port }))
        local err, res = fetch(client, { path = "/" })
        assert.matches("^ECONNREFUSED: ", err)
        assert.is_nil(res)
        client:close()
    end)

    it("checks options: EINVAL tuples for unknown keys and bad values", function()
        local function einval(opts)
            local c, err, ename = loop:http_client(opts)
            assert.is_nil(c)
            assert.equals("EINVAL", ename)
            assert.matches("^EINVAL: ", err)
        end
        einval({ host = "127.0.0.1" })
        einval({ port = 80 })
        einval({ host = "127.0.0.1", port = 80, colour = "red" })
        einval({ host = "127.0.0.1", port = "80" })
        einval({ host = "127.0.0.1", port = 80, read_timeout = -1 })
        einval({ host = "127.0.0.1", port = 80, max_connections = 0 })
        einval({ host = "127.0.0.1", port = 80, max_connections = 1.5 })
        einval({ host = "localhost", port = 80 })
        local client = assert(loop:http_client({ host = "::1", port = 80 }))
        local function req_einval(opts)
            local r, err, ename = client:request(opts, function() end)
            assert.is_nil(r)
            assert.equals("EINVAL", ename)
            assert.matches("^EINVAL: ", err)
        end
        req_einval({})
        req_einval({ path = "no-slash" })
        req_einval({ path = "/", bogus = 1 })
        req_einval({ path = "/", body = 5 })
        req_einval({ path = "/", split = "\n" })
        req_einval({ path = "/", on_data = print, split = "" })
        req_einval({ path = "/a b" })
        req_einval({ path = "/", method = "GET /x" })
        req_einval({ path = "/", headers = { ["X-A"] = "a\r\nInjected: 1" } })
        req_einval({ path = "/", headers = { [1] = "x" } })
        assert.has_error(function()
            client:request({ path = "/" })
        end)
        client:close()
    end)

    describe("against a misbehaving server", function()
        local proc, port

        setup(function()
            local dir = helpers.tmpdir()
            proc = process.spawn({ argv = { "/usr/bin/python3", "spec/support/http_raw_server.py", dir .. "/port" } })
            local deadline = process.now_ms() + 10000
            while process.now_ms() < deadline do
                local text = helpers.read_file(dir .. "/port")
                if text and text ~= "" then
                    port = tonumber(text)
                    break
                end
                process.sleep(20)
            end
            assert.is_number(port)
        end)

        teardown(function()
            if proc and process.group_is_ours(proc) then
                process.kill_group(proc.pgid, "KILL")
            end
        end)

        local function client(opts)
            opts = opts or {}
            opts.host = "127.0.0.1"
            opts.port = port
            return assert(loop:http_client(opts))
        end

        it("streams a chunked body line by line, lines cut across chunks", function()
            local c = client()
            local status, ctype, lines, done, e, r = nil, nil, {}, false, nil, nil
            local req = c:request({
                path = "/lines",
                split = "\n",
                on_headers = function(s, h)
                    assert.equals(0, #lines)
                    status, ctype = s, h["content-type"]
                end,
                on_data = function(line)
                    lines[#lines + 1] = line
                end,
            }, function(err, res)
                done, e, r = true, err, res
            end)
            assert.is_truthy(req)
            wait_for(function()
                return done
            end)
            assert.is_nil(e)
            assert.equals(200, status)
            assert.equals("application/json", ctype)
            assert.same({ '{"n":1}', '{"n":2,"pad":"xxxxxxxx"}', '{"n":3}', "", '{"n":4}' }, lines)
            assert.equals(200, r.status)
            assert.is_nil(r.body)
            c:close()
        end)

        it("streams raw chunks without split, and buffers them without on_data", function()
            local c = client()
            local parts = {}
            local done = false
            c:request({
                path = "/lines",
                on_data = function(chunk)
                    parts[#parts + 1] = chunk
                end,
            }, function(err)
                assert.is_nil(err)
                done = true
            end)
            wait_for(function()
                return done
            end)
            local text = '{"n":1}\n{"n":2,"pad":"xxxxxxxx"}\n{"n":3}\n\n{"n":4}'
            assert.equals(text, table.concat(parts))
            local err, res = fetch(c, { path = "/lines" })
            assert.is_nil(err)
            assert.equals(text, res.body)
            c:close()
        end)

        it("reads a body that runs until the close (HTTP/1.0)", function()
            local c = client()
            local err, res = fetch(c, { path = "/until-close" })
            assert.is_nil(err)
            assert.equals("first part, second part", res.body)
            assert.equals(0, c:stats().connections)
            c:close()
        end)

        it("fails ECONNRESET when the server closes mid-body, with what came", function()
            local c = client()
            local err, res = fetch(c, { path = "/close-mid-body" })
            assert.equals("ECONNRESET: closed mid-body", err)
            assert.equals(200, res.status)
            err = fetch(c, { path = "/close-at-once" })
            assert.equals("ECONNRESET: closed before the response", err)
            c:close()
        end)

        it("bounds headers and bodies: EMSGSIZE", function()
            local c = client({ max_header_bytes = 1024, max_body_bytes = 1000 })
            local err = fetch(c, { path = "/big-headers" })
            assert.matches("^EMSGSIZE: ", err)
            err = fetch(c, { path = "/big-body" })
            assert.matches("^EMSGSIZE: ", err)
            local c2 = client({ max_body_bytes = 10 })
            local lines = {}
            err = fetch(c2, {
                path = "/lines",
                split = "\n",
                on_data = function(line)
                    lines[#lines + 1] = line
                end,
            })
            assert.matches("^EMSGSIZE: record", err)
            assert.same({ '{"n":1}' }, lines)
            c:close()
            c2:close()
        end)

        it("fails EPROTO on garbage", function()
            local c = client()
            local err, res = fetch(c, { path = "/garbage" })
            assert.matches("^EPROTO: HPE_", err)
            assert.is_nil(res)
            c:close()
        end)

        it("times out a silent server (read_timeout)", function()
            local c = client({ read_timeout = 100 })
            local err = fetch(c, { path = "/silent" })
            assert.matches("^ETIMEDOUT: ", err)
            c:close()
        end)

        it("lets a request choose its own read_timeout (0: none, for watches)", function()
            local c = client({ read_timeout = 50 })
            local err = fetch(c, { path = "/silent", read_timeout = 0, timeout = 300 })
            assert.matches("^ETIMEDOUT: .*within its timeout", err)
            local c2 = client({ read_timeout = 0 })
            err = fetch(c2, { path = "/silent", read_timeout = 50 })
            assert.matches("^ETIMEDOUT: .*no response byte within 50 ms", err)
            c:close()
            c2:close()
        end)

        it("runs a request whose box was dropped to its end", function()
            local c = client()
            local done, body = false, nil
            c:request({ path = "/ok" }, function(err, res)
                assert.is_nil(err)
                done, body = true, res.body
            end)
            collectgarbage()
            collectgarbage()
            wait_for(function()
                return done
            end)
            assert.equals("ok GET ", body)
            c:close()
        end)

        it("lets loop:run() end while only idle pooled connections remain", function()
            server:close() -- the listener would keep the loop running
            local c = client({ idle_timeout = 60000 })
            local done = false
            c:request({ path = "/ok" }, function(err)
                assert.is_nil(err)
                done = true
            end)
            -- A bound that does not itself keep the loop running: should
            -- run() hang, the guard closes the client and the test fails.
            local guard = assert(loop:timer("guard"))
            guard:start(10000, 0, function()
                c:close()
            end)
            guard:unref()
            loop:run()
            guard:close()
            assert.is_true(done)
            assert.is_false(c:is_closed())
            assert.equals(1, c:stats().idle)
            c:close()
        end)

        it("sends again, once, when a pooled connection turns out closed", function()
            local c = client()
            local err, res = fetch(c, { path = "/stale" })
            assert.is_nil(err)
            assert.equals("stale", res.body)
            assert.equals(1, c:stats().idle)
            -- Let the server's close arrive unnoticed: no loop turn, so the
            -- client still holds the connection as idle.
            process.sleep(200)
            err, res = fetch(c, { path = "/count" })
            assert.is_nil(err)
            assert.equals("1", res.body)
            local st = c:stats()
            assert.equals(2, st.connects)
            assert.equals(1, st.retried)
            c:close()
        end)

        it("keeps a connection alive across requests (server-side count)", function()
            local c = client()
            for i = 1, 3 do
                local err, res = fetch(c, { path = "/count" })
                assert.is_nil(err)
                assert.equals(tostring(i), res.body)
            end
            assert.equals("a, b", select(2, fetch(c, { path = "/ok" })).headers["x-twice"])
            c:close()
        end)
    end)
end)
