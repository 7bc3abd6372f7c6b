-- disco.core: file-system event watches (loop:fs_event) through the Lua
-- bindings: what a change reports, error tuples, stop, callback errors and
-- the close paths.
local core = require "disco.core"
local helpers = require "spec.helpers"

-- How long a spec waits for an event that must come.
local WAIT_MS = 2000

describe("disco.fs_event", function()
    local loop

    before_each(function()
        loop = assert(core.new_loop())
        loop:set_log_level("info")
    end)

    after_each(function()
        if not loop:is_closed() then
            assert.is_true(loop:close())
        end
        core.set_error_handler(nil)
    end)

    -- The first recorded call about `filename`, or nil.
    local function find(calls, filename)
        for _, call in ipairs(calls) do
            if call.filename == filename then
                return call
            end
        end
        return nil
    end

    it("reports a file written in a watched directory by name", function()
        local dir = helpers.tmpdir()
        local calls = {}
        local watch = assert(loop:fs_event("conf-dir"))
        assert.equals("conf-dir", watch:name())
        assert.is_true(watch:start(dir, function(self, filename, events, err)
            calls[#calls + 1] = { self = self, filename = filename, events = events, err = err }
        end))
        helpers.write_file(dir .. "/app.conf", "x = 1\n")
        assert.is_true(helpers.run_until(loop, function()
            return find(calls, "app.conf") ~= nil
        end, WAIT_MS))
        local call = find(calls, "app.conf")
        assert.equals(watch, call.self)
        assert.is_nil(call.err)
        assert.is_boolean(call.events.change)
        assert.is_boolean(call.events.rename)
        assert.is_true(call.events.change or call.events.rename)
        watch:close()
    end)

    it("watches a single file for changes", function()
        local path = helpers.write_file(helpers.tmpdir() .. "/watched.txt", "v1\n")
        local got
        local watch = assert(loop:fs_event())
        assert.equals("fs_event", watch:name())
        assert.is_true(watch:start(path, function(_, filename, events, err)
            got = got or { filename = filename, events = events, err = err }
        end))
        helpers.write_file(path, "v2\n")
        assert.is_true(helpers.run_until(loop, function() return got ~= nil end, WAIT_MS))
        assert.is_true(got.events.change)
        assert.is_nil(got.err)
        assert.is_true(got.filename == nil or got.filename == "watched.txt")
        watch:close()
    end)

    it("returns nil, \"ENOENT: ...\", \"ENOENT\" for a missing path and never calls back", function()
        local dir = helpers.tmpdir()
        local called = false
        local watch = assert(loop:fs_event())
        local ok, err, name = watch:start(dir .. "/missing", function() called = true end)
        assert.is_nil(ok)
        assert.equals("ENOENT", name)
        assert.matches("^ENOENT: ", err)
        -- Nothing was left active, and creating the path later changes nothing.
        assert.is_false(loop:alive())
        helpers.write_file(dir .. "/missing", "now it exists\n")
        loop:step()
        assert.is_false(called)
        watch:close()
    end)

    it("raises on programmer errors and on use after close", function()
        local dir = helpers.tmpdir()
        local watch = assert(loop:fs_event())
        assert.has_error(function() watch:start(dir) end)
        assert.has_error(function() watch:start(nil, function() end) end)
        watch:close()
        watch:close() -- idempotent
        assert.is_true(watch:is_closed())
        assert.has_error(function() watch:start(dir, function() end) end)
        assert.has_error(function() watch:stop() end)
    end)

    it("stops calling back after stop(), and reports again once restarted", function()
        local dir = helpers.tmpdir()
        local stopped_calls = {}
        local control_calls = {}
        local stopped = assert(loop:fs_event("stopped"))
        local control = assert(loop:fs_event("control"))
        local function record_stopped(_, filename)
            stopped_calls[#stopped_calls + 1] = { filename = filename }
        end
        assert.is_true(stopped:start(dir, record_stopped))
        assert.is_true(control:start(dir, function(_, filename)
            control_calls[#control_calls + 1] = { filename = filename }
        end))
        assert.is_true(stopped:stop())
        helpers.write_file(dir .. "/late.txt", "late\n")
        -- The control watch on the same directory shows the write was
        -- reported; the stopped one heard nothing of it.
        assert.is_true(helpers.run_until(loop, function()
            return find(control_calls, "late.txt") ~= nil
        end, WAIT_MS))
        loop:step()
        assert.same({}, stopped_calls)
        assert.is_true(stopped:start(dir, record_stopped))
        helpers.write_file(dir .. "/again.txt", "again\n")
        assert.is_true(helpers.run_until(loop, function()
            return find(stopped_calls, "again.txt") ~= nil
        end, WAIT_MS))
        assert.is_nil(find(stopped_calls, "late.txt"))
        stopped:close()
        control:close()
    end)

    it("reports a callback that raises and keeps the loop going", function()
        local dir = helpers.tmpdir()
        local reported = {}
        core.set_error_handler(function(who, msg)
            reported[#reported + 1] = { who = who, msg = msg }
        end)
        local before = core.callback_errors()
        local calls = {}
        local watch = assert(loop:fs_event("bad-watch"))
        assert.is_true(watch:start(dir, function(_, filename)
            if filename == "first.txt" then
                error("boom from a watch")
            end
            calls[#calls + 1] = { filename = filename }
        end))
        helpers.write_file(dir .. "/first.txt", "1\n")
        assert.is_true(helpers.run_until(loop, function() return #reported > 0 end, WAIT_MS))
        assert.equals("bad-watch", reported[1].who)
        assert.matches("boom from a watch", reported[1].msg)
        assert.matches("stack traceback", reported[1].msg)
        assert.is_true(core.callback_errors() >= before + 1)
        -- The watch and the loop carry on.
        helpers.write_file(dir .. "/second.txt", "2\n")
        assert.is_true(helpers.run_until(loop, function()
            return find(calls, "second.txt") ~= nil
        end, WAIT_MS))
        watch:close()
    end)

    it("does not keep the loop alive once unref'ed", function()
        local watch = assert(loop:fs_event())
        assert.is_false(loop:alive())
        assert.is_true(watch:start(helpers.tmpdir(), function() end))
        assert.is_true(loop:alive())
        watch:unref()
        assert.is_false(loop:alive())
        watch:ref()
        assert.is_true(loop:alive())
        watch:close()
    end)

    it("leaves nothing behind after close and loop close", function()
        local dir = helpers.tmpdir()
        local weak = setmetatable({}, { __mode = "v" })
        -- Made in a function of their own so that no stack slot of this one
        -- still holds them when the collector runs.
        local function make()
            local closed = assert(loop:fs_event("closed-by-owner"))
            assert.is_true(closed:start(dir, function() end))
            closed:close()
            local open = assert(loop:fs_event("left-open"))
            assert.is_true(open:start(dir, function() end))
            weak.closed, weak.open = closed, open
        end
        make()
        loop:step() -- the owner's close completes
        collectgarbage()
        collectgarbage()
        -- The closed watch is gone; the started one is kept by its loop.
        assert.is_nil(weak.closed)
        assert.is_not_nil(weak.open)
        assert.is_false(weak.open:is_closed())
        assert.is_true(loop:close())
        assert.is_true(weak.open:is_closed())
        collectgarbage()
        collectgarbage()
        assert.is_nil(weak.open)
        assert.has_error(function() loop:fs_event() end)
    end)
end)
