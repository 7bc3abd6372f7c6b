--- Choosing one node of a list: round robin and weighted random, both
-- skipping the nodes a request already tried. Pure functions (no ngx), for
-- disco.resty.balancer and its unit spec.
--
-- A node with weight 0 is chosen only when every candidate has weight 0
-- (then they count as equal), so an operator can drain a node by weight
-- without emptying a list of drained nodes.
-- @module disco.resty.picker

local math_random = math.random

local _M = {}

-- Whether the untried candidates all have weight 0.
local function all_zero(nodes, tried)
    for i = 1, #nodes do
        if not tried[i] and nodes[i].weight > 0 then
            return false
        end
    end
    return true
end

--- Round robin: the first untried node at or after `state.next` (wrapping
-- around), skipping weight-0 nodes unless all are; advances `state.next`
-- past it. `tried` is a set of indexes.
-- @return the index, or nil when every node was tried
function _M.round_robin(nodes, state, tried)
    local n = #nodes
    if n == 0 then
        return nil
    end
    local zero = all_zero(nodes, tried)
    local start = state.next or 1
    if start > n then
        start = 1
    end
    for k = 0, n - 1 do
        local i = (start + k - 1) % n + 1
        if not tried[i] and (zero or nodes[i].weight > 0) then
            state.next = i % n + 1
            return i
        end
    end
    return nil
end

--- Weighted random over the untried nodes; `random(m)` (default
-- math.random) answers an integer in 1..m.
-- @return the index, or nil when every node was tried
function _M.weighted(nodes, tried, random)
    random = random or math_random
    local zero = all_zero(nodes, tried)
    local total = 0
    for i = 1, #nodes do
        if not tried[i] then
            total = total + (zero and 1 or nodes[i].weight)
        end
    end
    if total <= 0 then
        return nil
    end
    local r = random(total)
    for i = 1, #nodes do
        if not tried[i] then
            r = r - (zero and 1 or nodes[i].weight)
            if r <= 0 then
                return i
            end
        end
    end
    return nil
end

--- The picker named `name` ("round_robin" or "weighted") as
-- `pick(nodes, state, tried)`, or nil.
function _M.get(name)
    if name == "round_robin" then
        return _M.round_robin
    elseif name == "weighted" then
        return function(nodes, _, tried)
            return _M.weighted(nodes, tried)
        end
    end
    return nil
end

return _M
