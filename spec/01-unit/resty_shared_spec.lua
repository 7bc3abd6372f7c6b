-- disco.resty.shared outside nginx: the list format, and the publish and
-- read protocol against a fake shared dict with ngx.shared.DICT's
-- semantics (safe_set/safe_add answer "no memory" instead of evicting).
local shared = require "disco.resty.shared"

local fake_dict = require("spec.support.fake_shdict").new

local function node(host, port, weight, metadata)
    return { host = host, port = port, weight = weight, metadata = metadata }
end

describe("disco.resty.shared list format", function()
    it("round-trips nodes, metadata with separators, IPv6 hosts and the empty list", function()
        local nodes = {
            node("10.0.0.1", 8080, 100, { app = "hello", protocol = "rest" }),
            node("::1", 1, 0),
            node("10.0.0.2", 65535, 7, { ["k=1"] = "tab\there", nl = "a\nb", pct = "100%", empty = "" }),
        }
        local text = assert(shared.encode(nodes))
        assert.equal(4, select(2, text:gsub("\n", "")))
        assert.same(nodes, assert(shared.decode(text)))
        assert.same({}, assert(shared.decode(assert(shared.encode({})))))
    end)

    it("refuses nodes it cannot represent", function()
        assert.same({ nil, "node 1 has no host" }, { shared.encode({ node("", 1, 1) }) })
        assert.same({ nil, "node 1 has no valid port" }, { shared.encode({ node("h", 0, 1) }) })
        assert.same({ nil, "node 2 has no valid weight" },
                    { shared.encode({ node("h", 1, 1), node("h", 2, 1.5) }) })
    end)

    it("refuses a damaged or truncated text whole", function()
        local text = assert(shared.encode({ node("10.0.0.1", 80, 100), node("10.0.0.2", 81, 100) }))
        assert.matches("truncated at node 2 of 2", select(2, shared.decode(text:sub(1, -10))), 1, true)
        assert.matches("bad header", select(2, shared.decode("{}")), 1, true)
        assert.matches("trailing data", select(2, shared.decode(text .. "x\n")), 1, true)
        assert.matches("node 1 is malformed",
                       select(2, shared.decode("D1 1\n10.0.0.1\tx\t1\n")), 1, true)
        assert.matches("node 1 is malformed",
                       select(2, shared.decode("D1 1\n10.0.0.1\t80\t1\tnoequals\n")), 1, true)
    end)
end)

describe("disco.resty.shared publish and read", function()
    local SID = "rest:com.acme.Hello"
    local one = assert(shared.encode({ node("10.0.0.1", 80, 100) }))
    local two = assert(shared.encode({ node("10.0.0.1", 80, 100), node("10.0.0.2", 80, 100) }))

    it("writes the data first, switches the version, deletes the superseded data", function()
        local dict = fake_dict(10000)
        local v1 = assert(shared.publish(dict, SID, one))
        local v2 = assert(shared.publish(dict, SID, two))
        assert.is_true(v2 > v1)
        assert.equal(v2, dict.data["v/" .. SID])
        assert.equal(two, dict.data["d/" .. SID .. "/" .. v2])
        assert.is_nil(dict.data["d/" .. SID .. "/" .. v1])
        assert.equal(2, shared.counter(dict, "publish_ok"))
        assert.equal(two, shared.current_text(dict, SID))
    end)

    it("keeps the previous version when the new one does not fit, and counts it", function()
        local dict = fake_dict(200)
        local v1 = assert(shared.publish(dict, SID, one))
        local big = string.rep("x", 300)
        local v, err = shared.publish(dict, SID, big)
        assert.is_nil(v)
        assert.matches("no memory (the previous list stays)", err, 1, true)
        assert.equal(v1, dict.data["v/" .. SID])
        assert.equal(one, shared.current_text(dict, SID))
        assert.equal(1, shared.counter(dict, "publish_failed"))
        local reader = shared.reader(dict)
        assert.same({ node("10.0.0.1", 80, 100) }, reader.nodes(SID))
    end)

    it("answers from the worker cache with one dict read while the version holds", function()
        local dict = fake_dict(10000)
        assert(shared.publish(dict, SID, one))
        local reader = shared.reader(dict)
        local first = reader.nodes(SID)
        dict.reads = 0
        for _ = 1, 10 do
            assert.equal(first, reader.nodes(SID))
        end
        assert.equal(10, dict.reads)
        assert(shared.publish(dict, SID, two))
        assert.equal(2, #reader.nodes(SID))
        assert.is_nil(reader.nodes("rest:com.acme.Unknown"))
    end)

    it("follows a version superseded between its two reads, else serves the cached list", function()
        local dict = fake_dict(10000)
        assert(shared.publish(dict, SID, one))
        local reader = shared.reader(dict)
        assert.equal(1, #reader.nodes(SID))
        assert(shared.publish(dict, SID, two))
        -- The owner publishes again right after the reader read the version.
        local raced = false
        dict.on_get = function(key)
            if key:sub(1, 2) == "d/" and not raced then
                raced = true
                assert(shared.publish(dict, SID, one))
            end
        end
        assert.equal(1, #reader.nodes(SID))
        dict.on_get = nil
        -- A version whose data is gone: the cached list, never an empty one.
        dict.data["v/" .. SID] = 999
        assert.equal(1, #reader.nodes(SID))
        -- Damaged data: the cached list, and the error reported and counted.
        dict.data["d/" .. SID .. "/1000"] = "garbage"
        dict.data["v/" .. SID] = 1000
        local reported
        reader = shared.reader(dict, function(sid, version, err) reported = { sid, version, err } end)
        assert.is_nil(reader.nodes(SID))
        assert.same({ SID, 1000, "list: not a disco list (bad header)" }, reported)
        assert.equal(1, shared.counter(dict, "decode_failed"))
    end)

    it("bounds the feedback list, dropping the oldest record, and drains it in order", function()
        local dict = fake_dict(10000)
        for i = 1, 5 do
            assert.is_true(shared.push_feedback(dict, "10.0.0." .. i .. ":80", i, i % 2, i, 0, 7, 3))
        end
        assert.equal(2, shared.counter(dict, "feedback_dropped"))
        local got = {}
        assert.same({ 2, 3 + 1 + 4 + 0, 0 }, { shared.drain_feedback(dict, 2, function(...)
            got[#got + 1] = { ... }
        end) })
        assert.same({ { "10.0.0.3:80", 3, 1, 3, 0, 7 }, { "10.0.0.4:80", 4, 0, 4, 0 } }, got)
        assert.same({ 1, 5 + 1, 0 }, { shared.drain_feedback(dict, 10, function() end) })
        assert.same({ 0, 0, 0 }, { shared.drain_feedback(dict, 10, function() end) })
        -- A full dict refuses the record (counted), evicting nothing.
        local full = fake_dict(4)
        assert.is_false(shared.push_feedback(full, "10.0.0.1:80", 1, 0, 1, 0, nil, 3))
        assert.equal(0, full.used())
    end)

    it("writes ages only for the outcomes counted, and reads back what it wrote", function()
        local dict = fake_dict(10000)
        assert.is_true(shared.push_feedback(dict, "[::1]:80", 0, 2, nil, 5, 12.5, 10))
        assert.same({ "[::1]:80\t0\t2\t\t\t12.5" }, dict.lists[shared.FEEDBACK])
        assert.same({ "[::1]:80", 0, 2, nil, nil, 12.5 },
                    { shared.parse_feedback(dict.lists[shared.FEEDBACK][1]) })
        assert.same({ "10.0.0.1:80", 7, 0, 1.5, 0 }, { shared.parse_feedback("10.0.0.1:80\t7\t0\t1.5\t0\t") })
    end)

    it("skips and counts malformed records, handing on the good ones", function()
        local dict = fake_dict(10000)
        assert.is_true(shared.push_feedback(dict, "[::1]:80", 0, 1, nil, nil, 3, 20))
        local junk = {
            "garbage",
            "10.0.0.1:80\t1\t5",                    -- the format before aggregation
            "\t1\t0\t\t0\t",                         -- no address
            "10.0.0.1:80\t0\t0\t\t\t",               -- no call counted
            "10.0.0.1:80\t-1\t2\t\t\t0",             -- a negative count
            "10.0.0.1:80\t1.5\t0\t\t0\t",            -- a fractional count
            "10.0.0.1:80\tx\t0\t\t0\t",              -- not a number
            "10.0.0.1:80\t1\t0\tslow\t0\t",          -- a bad latency
            "10.0.0.1:80\t1\t0\t1\t-4\t",            -- a negative age
            "10.0.0.1:80\t1\t0\t1\tnan\t",           -- not a number either
            "10.0.0.1:80\t1\t0\t1\t0\t\textra",      -- a field too many
            "10.0.0.1:80\t1\t0\t1\t0",                -- a field too few
        }
        for _, record in ipairs(junk) do
            assert.is_nil(shared.parse_feedback(record), record)
            dict:lpush(shared.FEEDBACK, record)
        end
        assert.is_nil(shared.parse_feedback(nil))
        assert.is_true(shared.push_feedback(dict, "10.0.0.9:80", 4, 0, 0.5, 10, nil, 20))
        local got = {}
        assert.same({ #junk + 2, 1 + 4, #junk }, { shared.drain_feedback(dict, 100, function(...)
            got[#got + 1] = { ... }
        end) })
        assert.same({ { "[::1]:80", 0, 1, nil, nil, 3 }, { "10.0.0.9:80", 4, 0, 0.5, 10 } }, got)
    end)
end)
