-- disco.core's HTTP server through the Lua binding, on loopback: curl and
-- a raw python3 socket run as background processes while the spec drives
-- the loop (each wait bounded). Covers the request table (method, path,
-- query, headers, body, peer), replies chosen by the handler, a handler
-- that raises (500), a reply from a timer, malformed input (400), the
-- limits, the counters and the option checks. Byte-level cases (splits,
-- timeouts, pipelining, refusals) are tested in C:
-- core/test/test_http_server.c.
local core = require "disco.core"
local helpers = require "spec.helpers"

local q = helpers.shell_quote

-- The clients are tools, not code under test: under `make asan` the
-- sanitizer runtime preloaded into every child makes curl hang, so they
-- run without it, and each is bounded in time whatever happens.
local CLIENT = "env -u LD_PRELOAD -u ASAN_OPTIONS timeout 20 "

describe("loop:http_server", function()
    local loop, server, dir, seq, requests

    local function exists(path)
        local f = io.open(path, "rb")
        if f then
            f:close()
        end
        return f ~= nil
    end

    -- Runs `cmd` (a shell command writing to `out`) in the background and
    -- drives the loop until it has finished; returns what it wrote.
    local function background(cmd, out)
        local done = out .. ".done"
        os.execute(("(%s; touch %s) >/dev/null 2>&1 &"):format(cmd, q(done)))
        assert.is_true(helpers.run_until(loop, function()
            return exists(done)
        end, 15000))
        return helpers.read_file(out)
    end

    -- curl against the server: returns the status code (a number), the
    -- body and the response headers (raw text).
    local function curl(path, args)
        seq = seq + 1
        local out = ("%s/curl%d"):format(dir, seq)
        local cmd = (CLIENT .. "curl -s --max-time 10 -D %s -o %s -w '%%{http_code}' %s %s > %s"):format(
            q(out .. ".headers"),
            q(out .. ".body"),
            args or "",
            q("http://" .. server:address() .. path),
            q(out)
        )
        local code = background(cmd, out)
        return tonumber(code), helpers.read_file(out .. ".body"), helpers.read_file(out .. ".headers")
    end

    -- Sends raw bytes on one connection and returns everything the server
    -- sent until it closed (or 5 s passed).
    local function raw(bytes)
        seq = seq + 1
        local out = ("%s/raw%d"):format(dir, seq)
        helpers.write_file(out .. ".in", bytes)
        local script = table.concat({
            "import socket,sys",
            "s=socket.create_connection(('127.0.0.1',int(sys.argv[1])))",
            "s.settimeout(5)",
            "s.sendall(open(sys.argv[2],'rb').read())",
            "data=b''",
            "try:",
            "  while True:",
            "    b=s.recv(65536)",
            "    if not b: break",
            "    data+=b",
            "except Exception: pass",
            "open(sys.argv[3],'wb').write(data)",
        }, "\n")
        local cmd = (CLIENT .. "python3 -c %s %d %s %s"):format(
            q(script),
            server:port(),
            q(out .. ".in"),
            q(out)
        )
        return background(cmd, out)
    end

    local function on_request(req)
        requests[#requests + 1] = req
        if req.path == "/boom" then
            error("handler exploded")
        elseif req.path == "/missing" then
            req:reply(404, { ["Content-Type"] = "text/plain" }, "no such thing\n")
        elseif req.path == "/later" then
            local t = assert(loop:timer("later"))
            t:start(20, 0, function()
                t:close()
                req:reply(200, nil, "later")
            end)
        elseif req.path == "/twice" then
            req:reply(204)
            local ok, err = pcall(req.reply, req, 200)
            requests.second = { ok, err }
        else
            req:reply(200, { ["Content-Type"] = "text/plain", ["X-Echo"] = "yes" },
                req.method .. " " .. #req.body)
        end
    end

    before_each(function()
        loop = assert(core.new_loop())
        dir = helpers.tmpdir()
        seq = 0
        requests = {}
        server = assert(loop:http_server({
            host = "127.0.0.1",
            port = 0,
            name = "spec",
            max_body_bytes = 1000,
            on_request = on_request,
        }))
    end)

    after_each(function()
        server:close()
        loop:close()
    end)

    it("binds a free port and says where", function()
        assert.is_true(server:port() > 0)
        assert.equals("127.0.0.1:" .. server:port(), server:address())
        assert.is_false(server:is_closed())
    end)

    it("hands over method, path, query, headers, body and peer", function()
        local code, body, headers = curl("/a/b%20c?x=1&y=two", "-H 'X-Thing: one' -H 'X-Thing: two' -d 'hello'")
        assert.equals(200, code)
        assert.equals("POST 5", body)
        assert.matches("X%-Echo: yes", headers)
        assert.matches("Content%-Length: 6", headers)
        assert.equals(1, #requests)
        local req = requests[1]
        assert.equals("POST", req.method)
        assert.equals("/a/b%20c", req.path)
        assert.equals("x=1&y=two", req.query)
        assert.equals("one, two", req.headers["x-thing"])
        assert.equals("127.0.0.1:" .. server:port(), req.headers.host)
        assert.equals("hello", req.body)
        assert.matches("^127%.0%.0%.1:%d+$", req.peer)
    end)

    it("gives GET an empty body and no query", function()
        local code, body = curl("/plain")
        assert.equals(200, code)
        assert.equals("GET 0", body)
        assert.is_nil(requests[1].query)
        assert.equals("", requests[1].body)
    end)

    it("answers with the handler's status", function()
        local code, body, headers = curl("/missing")
        assert.equals(404, code)
        assert.equals("no such thing\n", body)
        assert.matches("Content%-Type: text/plain", headers)
    end)

    it("answers 500 when the handler raises, and reports the error", function()
        local reported
        core.set_error_handler(function(who, msg)
            reported = who .. ": " .. msg
        end)
        local code = curl("/boom")
        core.set_error_handler(nil)
        assert.equals(500, code)
        assert.matches("spec: .*handler exploded", reported)
        assert.matches("traceback", reported)
    end)

    it("replies later, from a timer", function()
        local code, body = curl("/later")
        assert.equals(200, code)
        assert.equals("later", body)
    end)

    it("refuses a second reply", function()
        local code = curl("/twice")
        assert.equals(204, code)
        assert.is_false(requests.second[1])
        assert.matches("reply: already replied", requests.second[2])
    end)

    it("answers malformed input with 400 naming the parser error", function()
        local answer = raw("GARBAGE\r\n\r\n")
        assert.matches("^HTTP/1%.1 400 Bad Request\r\n", answer)
        assert.matches("Connection: close\r\n", answer)
        assert.matches("HPE_INVALID_METHOD", answer)
        assert.equals(0, #requests)
        assert.equals(1, server:stats().bad_requests)
    end)

    it("answers a body over max_body_bytes with 413", function()
        local code = curl("/big", "-d " .. ("x"):rep(1001))
        assert.equals(413, code)
        assert.equals(0, #requests)
        assert.equals(1, server:stats().too_large)
    end)

    it("serves two requests on one keep-alive connection", function()
        local answer = raw("GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
            .. "GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        local _, n = answer:gsub("HTTP/1%.1 200 OK", "")
        assert.equals(2, n)
        assert.equals("/one", requests[1].path)
        assert.equals("/two", requests[2].path)
        assert.equals(1, server:stats().accepted)
    end)

    it("counts", function()
        core.set_error_handler(function() end) -- /boom's error, expected
        curl("/a")
        curl("/missing")
        curl("/boom")
        core.set_error_handler(nil)
        raw("BAD\r\n\r\n")
        assert.is_true(helpers.run_until(loop, function()
            return server:stats().connections == 0
        end, 5000))
        local st = server:stats()
        assert.equals(4, st.accepted)
        assert.equals(3, st.requests)
        assert.equals(3, st.replies)
        assert.equals(1, st.bad_requests)
        assert.equals(0, st.too_large)
        assert.equals(0, st.timeouts)
        assert.equals(0, st.refused)
        assert.equals(0, st.connections)
    end)

    it("returns false, ECLOSED when the server closed before the reply", function()
        local held
        server:close()
        server = assert(loop:http_server({
            on_request = function(req)
                held = req
            end,
        }))
        local out = dir .. "/held"
        os.execute(("(" .. CLIENT .. "curl -s --max-time 10 %s > %s; touch %s) >/dev/null 2>&1 &"):format(
            q("http://" .. server:address() .. "/"), q(out), q(out .. ".done")))
        assert.is_true(helpers.run_until(loop, function()
            return held ~= nil
        end, 10000))
        server:close()
        local ok, err, ename = held:reply(200, nil, "too late")
        assert.is_false(ok)
        assert.matches("^ECLOSED", err)
        assert.equals("ECLOSED", ename)
        assert.is_true(helpers.run_until(loop, function()
            return exists(out .. ".done")
        end, 15000))
    end)

    it("reports a busy port", function()
        local other, err, ename = loop:http_server({
            port = server:port(),
            on_request = function() end,
        })
        assert.is_nil(other)
        assert.equals("EADDRINUSE", ename)
        assert.matches("^EADDRINUSE: ", err)
    end)

    it("raises on wrong options", function()
        assert.has_error(function()
            loop:http_server({})
        end)
        assert.has_error(function()
            loop:http_server({ port = "80", on_request = print })
        end)
        assert.has_error(function()
            loop:http_server({ host = 1, on_request = print })
        end)
        assert.has_error(function()
            loop:http_server({ max_headers = 0, on_request = print })
        end)
        assert.has_error(function()
            loop:http_server({ idle_timeout = -1, on_request = print })
        end)
        local other, err, ename = loop:http_server({ host = "not an address", on_request = print })
        assert.is_nil(other)
        assert.equals("EINVAL", ename)
        assert.matches("^EINVAL", err)
    end)

    it("is idempotent to close", function()
        server:close()
        server:close()
        assert.is_true(server:is_closed())
    end)
end)
