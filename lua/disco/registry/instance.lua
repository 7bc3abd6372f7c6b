--- Validation of the service instances given to a registry's register,
-- update and unregister, shared by every registry plugin. Names and hosts
-- may not contain '/': on ZooKeeper they are path segments
-- (`{root}/{app}/{host}:{port}`), and an instance one registry accepts must
-- be valid on the others too.
-- @module disco.registry.instance

local _M = {}

--- Checks `instance` ({ name, host, port, metadata? }).
-- @treturn ?string nil when valid, else what is wrong with it
function _M.check(instance)
    if type(instance) ~= "table" then
        return "instance must be a table"
    end
    if type(instance.name) ~= "string" or not instance.name:match("^[^/]+$") then
        return "instance.name (the application) must be a non-empty string without '/'"
    end
    if type(instance.host) ~= "string" or not instance.host:match("^[^/]+$") then
        return "instance.host must be a non-empty string without '/'"
    end
    if type(instance.port) ~= "number" or instance.port % 1 ~= 0
        or instance.port < 1 or instance.port > 65535 then
        return "instance.port must be an integer from 1 to 65535"
    end
    if instance.metadata ~= nil and type(instance.metadata) ~= "table" then
        return "instance.metadata must be a table of strings"
    end
    return nil
end

--- Wraps the registry hook `hook(instance, cb)`: an invalid instance is
-- answered `cb("EINVAL: ...")` through `defer` (so never synchronously, as
-- every registry answer) and the hook does not run.
-- @tparam function hook
-- @tparam function defer `defer(fn)` runs fn on a later loop turn
function _M.checked(hook, defer)
    return function(instance, cb)
        local bad = _M.check(instance)
        if bad then
            return defer(function() cb("EINVAL: " .. bad) end)
        end
        return hook(instance, cb)
    end
end

--- Where `id` is (or would go) in `sorted`, a list of instances sorted by
-- `id`: its index, and whether it is there. Registries keep each watch's
-- instances in one such list: re-sorting thousands of instances on every
-- event would dominate a watch's cost, and a second index by id would
-- cost a consumer memory per instance.
function _M.locate(sorted, id)
    local lo, hi = 1, #sorted
    -- A first load comes in id order: each id then goes after the last.
    if hi == 0 or sorted[hi].id < id then
        return hi + 1, false
    end
    while lo <= hi do
        local mid = math.floor((lo + hi) / 2)
        local other = sorted[mid].id
        if other == id then
            return mid, true
        elseif other < id then
            lo = mid + 1
        else
            hi = mid - 1
        end
    end
    return lo, false
end

--- Brings `sorted` (see locate) up to date with `diff` (`added`,
-- `updated`, `removed` instances), change by change.
-- @treturn table sorted
function _M.update_sorted(sorted, diff)
    local locate = _M.locate
    for _, instance in ipairs(diff.removed) do
        local at, found = locate(sorted, instance.id)
        if found then
            table.remove(sorted, at)
        end
    end
    for _, list in ipairs({ diff.updated, diff.added }) do
        for _, instance in ipairs(list) do
            local at, found = locate(sorted, instance.id)
            if found then
                sorted[at] = instance
            else
                table.insert(sorted, at, instance)
            end
        end
    end
    return sorted
end

return _M
