-- disco.memory: one settle (full collection and C heap trim) per burst of
-- bulk loads, with the collector's pause lowered only while the burst lasts.
local core = require "disco.core"
local memory = require "disco.memory"

describe("disco.memory", function()
    local loop, saved_quiet

    before_each(function()
        loop = assert(core.new_loop())
        saved_quiet = memory.QUIET_MS
        memory.QUIET_MS = 30
    end)

    after_each(function()
        memory.QUIET_MS = saved_quiet
        if not loop:is_closed() then
            assert.is_true(loop:close())
        end
    end)

    -- Runs the loop until pred() or `ms` pass (bounded).
    local function run_until(pred, ms)
        local deadline = core.hrtime() + ms
        local keep = assert(loop:timer("spec tick"))
        keep:start(5, 5, function() end)
        while not pred() and core.hrtime() < deadline do
            loop:run_once()
        end
        keep:close()
        return pred()
    end

    it("settles once per burst, after the burst goes quiet", function()
        local pause = collectgarbage("setpause", 150)
        local stepmul = collectgarbage("setstepmul", 250)
        local before = memory.settles
        for _ = 1, 5 do
            memory.settle(loop)
        end
        -- During the burst the collector runs with the bulk pause and step
        -- multiplier.
        assert.equal(memory.BULK_PAUSE, collectgarbage("setpause", memory.BULK_PAUSE))
        assert.equal(memory.BULK_STEPMUL, collectgarbage("setstepmul", memory.BULK_STEPMUL))
        assert.is_true(run_until(function() return memory.settles > before end, 2000))
        assert.equal(before + 1, memory.settles)
        -- Afterwards the pause and multiplier it had are back, and nothing
        -- else is pending.
        assert.equal(150, collectgarbage("setpause", pause))
        assert.equal(250, collectgarbage("setstepmul", stepmul))
        assert.is_false(run_until(function() return memory.settles > before + 1 end, 100))
    end)

    it("starts collecting at once when a burst starts, not at the threshold left before it", function()
        local pause = collectgarbage("setpause", 200)
        -- 16 MB live, collected: the next cycle would start at twice that.
        local live = {}
        for i = 1, 16 * 1024 do
            live[i] = string.rep(string.char(i % 256), 1000) .. i
        end
        collectgarbage()
        collectgarbage()
        -- Distinct strings (equal ones would be the same interned string),
        -- kept in a small ring so that the compiler cannot leave them out.
        local ring, n = {}, 0
        local function garbage(kib)
            for i = 1, kib do
                n = n + 1
                ring[i % 16] = string.rep("g", 1000) .. n
            end
        end
        garbage(4 * 1024)
        local before = collectgarbage("count")
        memory.settle(loop)
        -- 10 MB more, still under that threshold: only the cycle the burst
        -- started can bring the count under where it was.
        local lowest = math.huge
        for _ = 1, 100 do
            garbage(100)
            lowest = math.min(lowest, collectgarbage("count"))
        end
        assert.is_true(lowest < before, string.format("%.0f KiB, never under %.0f KiB", lowest, before))
        assert.is_true(#live > 0 and #ring > 0)
        run_until(function() return false end, 2 * memory.QUIET_MS)
        collectgarbage("setpause", pause)
    end)

    it("trims the C heap through core.trim_memory", function()
        assert.is_boolean(core.trim_memory())
    end)
    it("runs a function with the collector stopped and starts it again, also after an error", function()
        local seen = {}
        assert.same({ 1, 2 }, { memory.without_collector(function(a, b)
            seen.running = collectgarbage("isrunning")
            return a, b
        end, 1, 2) })
        assert.is_false(seen.running)
        assert.is_true(collectgarbage("isrunning"))
        assert.has_error(function()
            memory.without_collector(function() error("boom", 0) end)
        end, "boom")
        assert.is_true(collectgarbage("isrunning"))
        -- A collector stopped by someone else stays stopped.
        collectgarbage("stop")
        memory.without_collector(function() end)
        local still_stopped = not collectgarbage("isrunning")
        collectgarbage("restart")
        assert.is_true(still_stopped)
    end)
end)
