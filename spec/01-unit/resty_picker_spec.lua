-- disco.resty.picker: round robin order, weighted random distribution,
-- and the exclusion of nodes a request already tried.
local picker = require "disco.resty.picker"

local function nodes_of(weights)
    local list = {}
    for i, w in ipairs(weights) do
        list[i] = { host = "10.0.0." .. i, port = 80, weight = w }
    end
    return list
end

describe("disco.resty.picker", function()
    it("round robin walks the list in order and wraps around", function()
        local nodes = nodes_of({ 1, 1, 1 })
        local state, order = {}, {}
        for i = 1, 7 do
            order[i] = picker.round_robin(nodes, state, {})
        end
        assert.same({ 1, 2, 3, 1, 2, 3, 1 }, order)
    end)

    it("round robin skips tried and weight-0 nodes, and gives up when all were tried", function()
        local nodes = nodes_of({ 1, 0, 1, 1 })
        local state, tried = {}, {}
        local order = {}
        for i = 1, 3 do
            order[i] = picker.round_robin(nodes, state, tried)
            tried[order[i]] = true
        end
        assert.same({ 1, 3, 4 }, order)
        -- Only the weight-0 node is left: it is used rather than none.
        assert.equal(2, picker.round_robin(nodes, state, tried))
        tried[2] = true
        assert.is_nil(picker.round_robin(nodes, state, tried))
        assert.is_nil(picker.round_robin({}, {}, {}))
    end)

    it("weighted random follows the weights", function()
        local nodes = nodes_of({ 1, 3, 0, 6 })
        -- A deterministic walk over 1..total: each node is chosen exactly
        -- as often as its weight.
        local k = 0
        local function sweep(m)
            k = k % m + 1
            return k
        end
        local counts = { 0, 0, 0, 0 }
        for _ = 1, 1000 do
            local i = picker.weighted(nodes, {}, sweep)
            counts[i] = counts[i] + 1
        end
        assert.same({ 100, 300, 0, 600 }, counts)
        -- With math.random, over a bounded number of picks, the shares stay
        -- close to the weights (a 10000-pick sample: 6 sigma is under 3 %).
        math.randomseed(42)
        counts = { 0, 0, 0, 0 }
        for _ = 1, 10000 do
            local i = picker.weighted(nodes, {})
            counts[i] = counts[i] + 1
        end
        assert.equal(0, counts[3])
        assert.is_true(math.abs(counts[1] - 1000) < 300, tostring(counts[1]))
        assert.is_true(math.abs(counts[2] - 3000) < 300, tostring(counts[2]))
        assert.is_true(math.abs(counts[4] - 6000) < 300, tostring(counts[4]))
    end)

    it("weighted random never returns a tried node, and gives up when all were tried", function()
        local nodes = nodes_of({ 5, 5, 5 })
        for _ = 1, 200 do
            local i = picker.weighted(nodes, { [1] = true, [3] = true })
            assert.equal(2, i)
        end
        assert.is_nil(picker.weighted(nodes, { true, true, true }))
        -- Only weight-0 nodes left: they count as equal.
        local zero = nodes_of({ 4, 0, 0 })
        local seen = {}
        for _ = 1, 200 do
            seen[picker.weighted(zero, { [1] = true })] = true
        end
        assert.same({ [2] = true, [3] = true }, seen)
    end)

    it("names its pickers", function()
        assert.equal(picker.round_robin, picker.get("round_robin"))
        assert.is_function(picker.get("weighted"))
        assert.is_nil(picker.get("random"))
    end)
end)
