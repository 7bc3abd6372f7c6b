--- Giving memory back after a bulk load.
--
-- Reading thousands of instances at once leaves garbage behind: the
-- replies' C buffers, which the C heap keeps as free pages, and the Lua
-- tables and strings of parsing, which the collector reaches only after
-- the heap has grown well past what is live. A consumer that has just
-- loaded 100,000 instances would hold twice their memory for nothing.
-- `settle(loop)` asks for one full collection and a trim of the C heap,
-- once the loads have been quiet for `QUIET_MS`: one settle per burst,
-- however many applications loaded in it, so its cost (a full GC walk) is
-- paid once and never per event.
-- @module disco.memory

local core = require "disco.core"

local _M = {}

--- How long after the last bulk load the settle runs.
_M.QUIET_MS = 200

--- The collector's pause (percent) during a burst of loads.
_M.BULK_PAUSE = 100

--- The collector's step multiplier (percent) during a burst of loads:
-- above LuaJIT's 200 each step collects more, so that a cycle ends (and
-- the parse garbage is freed) before the heap has grown much past what is
-- live; the heap's high mark is what stays in RSS. bench/memory.lua
-- (100,000 instances): 400 holds ~40 bytes less per instance than 200
-- for ~13% more CPU during the load; 300 gave nothing measurable for
-- ~10% more; 800 (round 1) ~110 bytes for ~35%. Only bursts pay it.
_M.BULK_STEPMUL = 400

--- Settles run so far (tests and benchmarks).
_M.settles = 0

-- loop -> { timer =, last = loop time of the last request }
local states = setmetatable({}, { __mode = "k" })
-- Bursts under way (one per loop at most), and the pause and step
-- multiplier they replaced.
local bursts, saved_pause, saved_stepmul = 0, nil, nil

--- Collects garbage and trims the C heap now.
function _M.settle_now()
    collectgarbage("collect")
    core.trim_memory()
    _M.settles = _M.settles + 1
end

--- Runs `fn(...)` with the collector stopped, and starts it again after
-- (also when `fn` raises: the error is raised again). Left alone when the
-- collector was stopped already. For building a large structure that
-- stays live, such as a consumer's first list of 10,000 URLs: what it
-- allocates is kept, so the collector, which in a burst runs without
-- pause, would walk the whole heap again and again and free next to
-- nothing (cold discovery at 10,000 instances: 215 ms to build the list
-- with it running, 90 ms without).
function _M.without_collector(fn, ...)
    if not collectgarbage("isrunning") then
        return fn(...)
    end
    collectgarbage("stop")
    local results = { pcall(fn, ...) }
    collectgarbage("restart")
    if not results[1] then
        error(results[2], 0)
    end
    return unpack(results, 2, table.maxn(results))
end

--- Asks for a settle on `loop` once requests have been quiet for
-- QUIET_MS. The timer does not keep the loop alive.
function _M.settle(loop)
    local state = states[loop]
    if not state then
        state = {}
        states[loop] = state
    end
    state.last = loop:now()
    if state.timer and not state.timer:is_closed() then
        return
    end
    local timer = loop:timer("memory settle")
    if not timer then
        return
    end
    state.timer = timer
    -- While a burst lasts the collector starts each cycle as soon as the
    -- last ended: the heap (which LuaJIT never gives back) then peaks
    -- nearer what is live than twice that.
    bursts = bursts + 1
    if bursts == 1 then
        saved_pause = collectgarbage("setpause", _M.BULK_PAUSE)
        saved_stepmul = collectgarbage("setstepmul", _M.BULK_STEPMUL)
        -- The pause only counts from the next cycle: the threshold the
        -- last one left (twice the heap after a settle) would let garbage
        -- pile up to it first, and a heap doubled mid-load stays doubled.
        -- One step starts a cycle now.
        collectgarbage("step", 0)
    end
    local function fire()
        local quiet = loop:now() - state.last
        if quiet < _M.QUIET_MS then
            timer:start(_M.QUIET_MS - quiet, 0, fire)
            return
        end
        timer:close()
        state.timer = nil
        bursts = bursts - 1
        if bursts == 0 then
            collectgarbage("setpause", saved_pause)
            collectgarbage("setstepmul", saved_stepmul)
        end
        _M.settle_now()
    end
    timer:start(_M.QUIET_MS, 0, fire)
    timer:unref()
end

return _M
