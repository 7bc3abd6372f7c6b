-- The chaos suite's invariants (spec/support/chaos/checker.lua) on made-up
-- timelines: each violation it must report, and the delays it must allow.
local checker = require "spec.support.chaos.checker"

local BOUND = 1000

local function list(t, ...)
    local set, n = {}, select("#", ...)
    for i = 1, n do
        set[select(i, ...)] = true
    end
    return { t = t, ports = set, n = n }
end

local function kinds(violations)
    local out = {}
    for i, v in ipairs(violations) do
        out[i] = v.kind .. ":" .. tostring(v.port)
    end
    return out
end

describe("chaos checker", function()
    it("accepts a consumer that follows liveness within the bound", function()
        local chk = checker.new(BOUND, { 1, 2 })
        chk:set_live(2, false, 100)
        chk:set_live(2, true, 3000)
        local v, open = chk:check({ list(0, 1, 2), list(900, 1), list(3800, 1, 2) }, 5000)
        assert.same({}, v)
        assert.same({}, open)
    end)

    it("reports a dead provider kept past the bound, once", function()
        local chk = checker.new(BOUND, { 1, 2 })
        chk:set_live(2, false, 100)
        local v, open = chk:check({ list(0, 1, 2) }, 1500)
        assert.same({ "dead provider kept:2" }, kinds(v))
        assert.equal(1, #open)
        assert.equal(1100, open[1].deadline)
        -- Removed later: the same violation is not reported again.
        v = chk:check({ list(0, 1, 2), list(2000, 1) }, 2500)
        assert.same({}, v)
    end)

    it("reports a live provider missing past the bound", function()
        local chk = checker.new(BOUND, { 1, 2 })
        local v = chk:check({ list(0, 1, 2), list(500, 1), list(1600, 1, 2) }, 2000)
        assert.same({ "live provider missing:2" }, kinds(v))
        assert.matches("1100 ms", v[1].text)
    end)

    it("starts the clock when a window that cut the consumer off ends", function()
        local chk = checker.new(BOUND, { 1, 2 })
        chk:set_live(2, false, 100)
        chk:cut_off(50, 2000)
        local v, open = chk:check({ list(0, 1, 2), list(2900, 1) }, 3000)
        assert.same({}, v)
        assert.same({}, open)
        -- Past the window's end plus the bound it counts again.
        chk = checker.new(BOUND, { 1, 2 })
        chk:set_live(2, false, 100)
        chk:cut_off(50, 2000)
        v = chk:check({ list(0, 1, 2), list(3100, 1) }, 3200)
        assert.same({ "dead provider kept:2" }, kinds(v))
    end)

    it("also waits for a window that opened after the mismatch began", function()
        local chk = checker.new(BOUND, { 1, 2 })
        chk:set_live(2, false, 100)
        chk:cut_off(300, 2000)
        assert.same({}, (chk:check({ list(0, 1, 2), list(2900, 1) }, 3000)))
        -- A window that opened after the bound had passed changes nothing.
        chk = checker.new(BOUND, { 1, 2 })
        chk:set_live(2, false, 100)
        chk:cut_off(1200, 2000)
        assert.same({ "dead provider kept:2" }, kinds((chk:check({ list(0, 1, 2), list(2900, 1) }, 3000))))
    end)

    it("reports an empty push while a provider is live, not when all are dead", function()
        local chk = checker.new(BOUND, { 1, 2 })
        chk:set_live(2, false, 10)
        local v = chk:check({ list(0, 1, 2), list(100) }, 200)
        assert.same({ "empty push:nil" }, kinds(v))
        chk = checker.new(BOUND, { 1 })
        chk:set_live(1, false, 10)
        assert.same({}, chk:check({ list(0, 1), list(500) }, 600))
    end)

    it("knows liveness at a time", function()
        local chk = checker.new(BOUND, { 7 })
        chk:set_live(7, false, 10)
        chk:set_live(7, true, 20)
        assert.is_true(chk:live_at(7, 5))
        assert.is_false(chk:live_at(7, 15))
        assert.is_true(chk:live_at(7, 25))
    end)
end)
