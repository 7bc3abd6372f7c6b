-- disco.core's revision cache through the Lua bindings: single flight,
-- waiter completion, self-driven retries, persistence, eviction, a fetch
-- function that raises, and core.md5_hex.
local core = require "disco.core"
local helpers = require "spec.helpers"

describe("core.md5_hex", function()
    it("returns Dubbo's lower-case hex digest of any bytes", function()
        assert.equals("d41d8cd98f00b204e9800998ecf8427e", core.md5_hex(""))
        assert.equals("900150983cd24fb0d6963f7d28e17f72", core.md5_hex("abc"))
        assert.equals("f96b697d7cb7938d525a2f31aaf161d0", core.md5_hex("message digest"))
        -- printf 'a\0b' | md5sum
        assert.equals("70350f6027bce3713f6b76473084309b", core.md5_hex("a\0b"))
    end)
end)

describe("loop:revcache", function()
    local loop

    before_each(function()
        loop = assert(core.new_loop())
    end)

    after_each(function()
        if not loop:is_closed() then
            assert.is_true(loop:close())
        end
        core.set_error_handler(nil)
    end)

    -- A cache whose fetches are answered by `answer(app, rev)` (a value, or
    -- nil and a message to reject) on a 1 ms timer, as a network would.
    local function async_cache(opts, answer)
        local pending = {}
        local owner = assert(loop:timer("owner"))
        local cache
        opts.fetch = function(app, rev)
            pending[#pending + 1] = { app, rev }
            owner:start(1, 0, function()
                local batch = pending
                pending = {}
                for _, key in ipairs(batch) do
                    local value, message = answer(key[1], key[2])
                    if value then
                        cache:resolve(key[1], key[2], value)
                    else
                        cache:reject(key[1], key[2], message)
                    end
                end
            end)
        end
        cache = assert(loop:revcache(opts))
        return cache, owner
    end

    it("fetches once for many wants and completes every waiter once", function()
        local cache = async_cache({}, function(app, rev)
            return app .. "/" .. rev .. "\0bytes"
        end)
        local results = {}
        for i = 1, 50 do
            assert.is_nil(cache:want("app", "r1", function(err, bytes)
                results[i] = (results[i] or 0) + 1
                assert.is_nil(err)
                assert.equals("app/r1\0bytes", bytes)
            end))
        end
        assert.equals(1, cache:stats().fetches)
        assert.equals(1, cache:stats().inflight)
        assert.is_true(helpers.run_until(loop, function()
            return #results == 50
        end, 2000))
        for i = 1, 50 do
            assert.equals(1, results[i])
        end
        -- A hit returns the bytes at once and never calls back.
        local called = false
        assert.equals("app/r1\0bytes", cache:want("app", "r1", function()
            called = true
        end))
        assert.equals("app/r1\0bytes", cache:lookup("app", "r1"))
        assert.is_nil(cache:lookup("app", "nope"))
        loop:step()
        assert.is_false(called)
        local st = cache:stats()
        assert.same({
            hits = 2, misses = 51, fetches = 1, failures = 0, evictions = 0,
            entries = 1, bytes = #"app/r1\0bytes", inflight = 0, failed = 0,
        }, st)
        cache:close()
        assert.is_true(cache:is_closed())
    end)

    it("reports a failure to the waiters and serves a new want by the retry", function()
        local calls = 0
        local cache = async_cache({ fast_retry_ms = 20, jitter = 0 }, function()
            calls = calls + 1
            if calls == 1 then
                return nil, "metadata service down"
            end
            return "meta"
        end)
        local first, second
        assert.is_nil(cache:want("app", "r1", function(err, bytes)
            first = { err, bytes }
            -- The key is FAILED: this starts no fetch, the retry answers.
            assert.is_nil(cache:want("app", "r1", function(err2, bytes2)
                second = { err2, bytes2 }
            end))
        end))
        assert.is_true(helpers.run_until(loop, function() return first ~= nil end, 2000))
        assert.equals("EIO: metadata service down", first[1])
        assert.is_nil(first[2])
        assert.equals(1, cache:stats().fetches)
        assert.is_true(helpers.run_until(loop, function() return second ~= nil end, 2000))
        assert.is_nil(second[1])
        assert.equals("meta", second[2])
        local st = cache:stats()
        assert.equals(2, st.fetches)
        assert.equals(1, st.failures)
        assert.equals(0, st.failed)
        cache:close()
    end)

    it("retries fast then slow, and stops when nobody wants the key", function()
        local cache = async_cache({
            fast_retries = 1, fast_retry_ms = 10, slow_retry_ms = 200, jitter = 0,
        }, function()
            return nil, "down"
        end)
        local errors = 0
        assert.is_nil(cache:want("app", "r1", function(err)
            assert.matches("^EIO: down", err)
            errors = errors + 1
        end))
        assert.is_true(helpers.run_until(loop, function() return errors == 1 end, 2000))
        -- Nobody waits: one retry runs anyway (10 ms later), fails, and the
        -- entry goes; nothing is retried at the slow pace after that.
        assert.is_true(helpers.run_until(loop, function()
            local st = cache:stats()
            return st.fetches == 2 and st.failed == 0 and st.inflight == 0
        end, 2000))
        helpers.run_until(loop, function() return false end, 300)
        assert.equals(2, cache:stats().fetches)
        assert.equals(1, errors)
        cache:close()
    end)

    it("turns a fetch function that raises into a reject, and carries on", function()
        local reported
        core.set_error_handler(function(who, msg)
            reported = who .. ": " .. msg
        end)
        local cache = assert(loop:revcache{
            name = "metadata",
            fast_retry_ms = 10000,
            fetch = function()
                error("no route to provider")
            end,
        })
        local got
        -- The want is pending as any other; its callback runs on the next
        -- loop iteration, never from inside want.
        assert.is_nil(cache:want("app", "r1", function(err, bytes)
            got = { err, bytes }
        end))
        assert.is_nil(got)
        assert.matches("^metadata: .*no route to provider", reported)
        local st = cache:stats()
        assert.equals(1, st.failures)
        assert.equals(1, st.failed)
        loop:step()
        assert.matches("^EIO: fetch function raised", got[1])
        assert.is_nil(got[2])
        cache:close()
    end)

    it("calls on_evict for entries past the bounds", function()
        local evicted = {}
        local cache = assert(loop:revcache{
            max_entries = 2,
            max_bytes = 8,
            fetch = function() end,
            on_evict = function(app, rev, reason)
                evicted[#evicted + 1] = app .. "/" .. rev .. ":" .. reason
            end,
        })
        assert.is_true(cache:put("app", "r1", "1"))
        assert.is_true(cache:put("app", "r2", "2"))
        assert.equals("1", cache:lookup("app", "r1")) -- r2 is the oldest now
        assert.is_true(cache:put("app", "r3", "3"))
        assert.same({ "app/r2:entries" }, evicted)
        -- Replacing values inserts nothing, but may break the byte bound:
        -- r1 is then the oldest of the two.
        assert.is_true(cache:put("app", "r1", "1111111"))
        assert.is_true(cache:put("app", "r3", "33"))
        assert.same({ "app/r2:entries", "app/r1:bytes" }, evicted)
        assert.equals(2, cache:stats().bytes)
        local ok, err, ename = cache:put("app", "big", "123456789")
        assert.is_nil(ok)
        assert.equals("ERANGE", ename)
        assert.matches("^ERANGE:", err)
        assert.equals(2, cache:stats().evictions)
        cache:close()
    end)

    it("persists across two cache objects on the same file", function()
        local path = helpers.tmpdir() .. "/revisions.bin"
        local fetches = 0
        local function fetch()
            fetches = fetches + 1
        end
        local first = assert(loop:revcache{ persist_path = path, fetch = fetch })
        assert.is_true(first:put("app", "r1", "one\0binary"))
        assert.is_true(first:put("app", "r2", "two"))
        assert.is_true(first:save())
        assert.is_true(first:put("app", "r3", "three"))
        first:close() -- writes r3 too
        loop:step()

        local second = assert(loop:revcache{ persist_path = path, fetch = fetch })
        assert.equals("one\0binary", second:want("app", "r1", function() end))
        assert.equals("two", second:lookup("app", "r2"))
        assert.equals("three", second:lookup("app", "r3"))
        assert.equals(0, fetches)
        assert.equals(0, second:stats().fetches)
        second:close()

        -- A corrupt file is ignored with a warning, never fatal.
        local f = assert(io.open(path, "r+b"))
        f:seek("set", 60)
        f:write("X")
        f:close()
        local lines = {}
        loop:set_log_sink(function(level, component, msg)
            lines[#lines + 1] = level .. " " .. component .. " " .. msg
        end)
        local third = assert(loop:revcache{ persist_path = path, fetch = fetch })
        assert.equals(0, third:stats().entries)
        assert.matches("warn revcache ignoring .*checksum mismatch", lines[1])
        third:close()
        loop:set_log_sink(nil)
    end)

    it("cancels outstanding wants on close and answers late owners with ECLOSED", function()
        local cache = assert(loop:revcache{ fetch = function() end })
        local got
        assert.is_nil(cache:want("app", "r1", function(err) got = err end))
        cache:close()
        assert.matches("^ECANCELED:", got)
        local ok, _, ename = cache:resolve("app", "r1", "late")
        assert.is_nil(ok)
        assert.equals("ECLOSED", ename)
        assert.has_error(function() cache:want("app", "r1", function() end) end)
    end)

    it("rejects bad keys and options", function()
        local cache = assert(loop:revcache{ fetch = function() end })
        local ok, _, ename = cache:put("", "r1", "x")
        assert.is_nil(ok)
        assert.equals("EINVAL", ename)
        ok, _, ename = cache:put("app", string.rep("r", 129), "x")
        assert.is_nil(ok)
        assert.equals("EINVAL", ename)
        assert.is_true(cache:put(string.rep("a", 255), string.rep("r", 128), "x"))
        assert.has_error(function() loop:revcache{} end)
        assert.has_error(function() loop:revcache{ fetch = print, jitter = 2 } end)
        assert.has_error(function() cache:reject("app", "r1", "x", "ENOTANERROR") end)
        cache:close()
    end)

    it("is closed by the __gc backstop, which calls no Lua", function()
        local called = false
        do
            local dropped = assert(loop:revcache{ fetch = function() end })
            assert.is_nil(dropped:want("app", "r1", function() called = true end))
        end
        collectgarbage()
        collectgarbage()
        loop:step()
        assert.is_false(called)
    end)

    it("is closed by loop:close() with its waiters canceled", function()
        local cache = assert(loop:revcache{ fetch = function() end })
        local got
        assert.is_nil(cache:want("app", "r1", function(err) got = err end))
        assert.is_true(loop:close())
        assert.matches("^ECANCELED:", got)
        assert.is_true(cache:is_closed())
    end)
end)
