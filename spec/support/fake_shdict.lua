--- A stand-in for ngx.shared.DICT outside nginx, for the unit specs of
-- disco.resty: `safe_set`/`safe_add` answer "no memory" past `capacity`
-- bytes (keys plus string values; numbers count 8) instead of evicting,
-- `incr` without an init value answers "not found" for a missing key, lists
-- with `lpush`/`rpop`. `d.data` and `d.lists` expose the content, `d.reads`
-- counts `get`s, `d.on_get(key)` runs before each.
local _M = {}

-- A dict of `capacity` bytes (keys plus string values; numbers count 8).
function _M.new(capacity)
    local data, lists, used = {}, {}, 0
    local d = { data = data, lists = lists }
    local function size(key, value)
        return #key + (type(value) == "string" and #value or 8)
    end
    local function store(key, value, add)
        if add and data[key] ~= nil then
            return false, "exists"
        end
        local old = data[key]
        local delta = size(key, value) - (old ~= nil and size(key, old) or 0)
        if used + delta > capacity then
            return false, "no memory"
        end
        used = used + delta
        data[key] = value
        return true
    end
    function d.safe_set(_, key, value)
        return store(key, value, false)
    end
    function d.safe_add(_, key, value)
        return store(key, value, true)
    end
    function d.get(_, key)
        d.reads = (d.reads or 0) + 1
        if d.on_get then
            d.on_get(key)
        end
        return data[key]
    end
    function d.delete(_, key)
        if data[key] ~= nil then
            used = used - size(key, data[key])
            data[key] = nil
        end
    end
    function d.incr(_, key, by)
        if data[key] == nil then
            return nil, "not found"
        end
        data[key] = data[key] + by
        return data[key]
    end
    function d.lpush(_, key, value)
        if used + #value > capacity then
            return nil, "no memory"
        end
        used = used + #value
        local list = lists[key] or {}
        lists[key] = list
        table.insert(list, 1, value)
        return #list
    end
    function d.rpop(_, key)
        local list = lists[key]
        local v = list and table.remove(list)
        if v then
            used = used - #v
        end
        return v
    end
    function d.used()
        return used
    end
    return d
end

return _M
