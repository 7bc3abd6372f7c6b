-- The consumer keeps its address lists up to date change by change
-- (subscription:update, address_list.changes_at / sorted merge, the
-- registered-address index): on random sequences of adds, removals and
-- updates, every list the listener gets, and its diff, must be what a
-- whole recomputation gives.
local disco = require "disco"
local address_list = require "disco.address_list"
local instance_model = require "disco.instance"
local metadata_info = require "disco.metadata_info"
local regspec = require "spec.support.registry"
local run_all = regspec.run_all

local APP = "shop"
local IFACE = "com.acme.Cart"

-- Three revisions of IFACE; the third has a fixed port, so that two of its
-- instances on one host without labels have one URL.
local function revisions()
    local infos = {}
    for v = 1, 3 do
        local info = metadata_info.new(APP)
        info:add(metadata_info.service({
            name = IFACE, version = "1.0.0", port = v == 3 and 20880 or -1,
            params = { application = APP, interface = IFACE, side = "provider",
                       version = "1.0.0", weight = tostring(100 * v) },
        }))
        metadata_info.revision_of(info)
        infos[v] = info
    end
    return infos
end

local function urls_of(list)
    local out = {}
    for i, entry in ipairs(list) do
        out[i] = entry.url
    end
    return out
end

local function sorted_urls(set)
    local out = {}
    for u in pairs(set) do
        out[#out + 1] = u
    end
    table.sort(out)
    return out
end

describe("address_list incremental helpers", function()
    local function random_set(n, pool)
        local set = {}
        for _ = 1, n do
            local u = "dubbo://h" .. math.random(pool) .. ":1/x"
            set[u] = { url = u }
        end
        return set
    end

    it("merges the sorted list and diffs at touched URLs exactly as a whole diff and sort", function()
        math.randomseed(7)
        for _ = 1, 200 do
            local old = random_set(math.random(0, 30), 40)
            local new = {}
            local touched = {}
            for u, e in pairs(old) do
                if math.random() < 0.8 then
                    new[u] = math.random() < 0.5 and e or { url = u } -- same URL, maybe a new entry
                    if new[u] ~= e then
                        touched[u] = true
                    end
                else
                    touched[u] = true
                end
            end
            for u, e in pairs(random_set(math.random(0, 5), 40)) do
                if not old[u] then
                    new[u], touched[u] = e, true
                end
            end
            local whole, whole_sorted = address_list.diff(old, new)
            local at = address_list.changes_at(old, new, touched)
            assert.same(urls_of(whole.added), urls_of(at.added))
            assert.same(urls_of(whole.removed), urls_of(at.removed))
            for i, e in ipairs(whole.removed) do
                assert.equal(e, at.removed[i]) -- the entries the listener had
            end
            local merged = address_list.sorted(new, at, address_list.sorted(old, nil))
            assert.equal(#whole_sorted, #merged)
            for i, e in ipairs(whole_sorted) do
                assert.equal(e, merged[i]) -- every entry is the new set's
            end
        end
    end)
end)

describe("consumer incremental lists", function()
    local rt, infos, by_revision, watcher, consumer, sub, got, changes

    before_each(function()
        rt = disco.runtime({ plugin_watch = false, log_level = "error" })
        changes = {}
        rt:on("ServiceInstancesChanged", function(event) changes[#changes + 1] = event end)
        infos, by_revision = revisions(), {}
        for _, info in ipairs(infos) do
            by_revision[info.revision] = info
        end
        watcher = nil
        local registry = {
            watch_instances = function(app, on_change)
                assert.equal(APP, app)
                watcher = on_change
                return { cancel = function() watcher = nil end }
            end,
        }
        local mapping = {
            subscribe = function(_, _, _, cb)
                cb({ APP })
                return { cancel = function() end }
            end,
        }
        consumer = rt:consumer({
            registry = registry, mapping = mapping, validation = false,
            fetchers = {
                ["local"] = function(_, _, revision, cb)
                    rt:after(0, function() cb(nil, by_revision[revision]:to_json()) end)
                end,
            },
        })
        got = {}
        sub = consumer:subscribe("dubbo:" .. IFACE .. ":1.0.0", function(diff, list)
            got[#got + 1] = { diff = diff, list = list }
        end)
    end)

    after_each(function()
        consumer:close()
        rt:close()
    end)

    -- Instance at address slot `slot` (hosts 10.0.0.1-4, ports 1-10) in
    -- revision `r`; `labelled` instances carry a label, which makes their
    -- URLs unique per address.
    local function make(slot, r, labelled)
        local host = "10.0.0." .. (slot % 4 + 1)
        local port = 1000 + slot
        local metadata = labelled and { zone = "z" .. slot } or {}
        local inst = instance_model.new({ name = APP, host = host, port = port, metadata = metadata })
        instance_model.set_revision(inst, infos[r].revision)
        instance_model.set_endpoints(inst, { { port = port, protocol = "dubbo" } })
        return inst
    end

    local function check(live)
        local last = got[#got]
        local whole = sub:compute(true)
        assert.same(sorted_urls(whole), urls_of(last.list))
        for _, entry in ipairs(last.list) do
            assert.equal(whole[entry.url], entry)
        end
        assert.same(urls_of(last.list), urls_of(sub:list()))
        -- Each diff takes the previous list to this one.
        local prev = {}
        for _, entry in ipairs(live.prev or {}) do
            prev[entry.url] = true
        end
        for _, entry in ipairs(last.diff.removed) do
            assert.is_true(prev[entry.url] ~= nil, "removed an URL it did not have")
            prev[entry.url] = nil
        end
        for _, entry in ipairs(last.diff.added) do
            assert.is_nil(prev[entry.url], "added an URL it had")
            prev[entry.url] = true
        end
        assert.same(urls_of(last.list), sorted_urls(prev))
    end

    local function run(seed, labelled_share, steps)
        math.randomseed(seed)
        assert.is_truthy(watcher)
        local current = {} -- slot -> instance
        local function list_of()
            local list = {}
            for _, inst in pairs(current) do
                list[#list + 1] = inst
            end
            table.sort(list, function(a, b) return address_list.address_of(a) < address_list.address_of(b) end)
            return list
        end
        for slot = 0, 19 do
            current[slot] = make(slot, slot % 3 + 1, math.random() < labelled_share)
        end
        local first = list_of()
        watcher({ added = first, updated = {}, removed = {} }, list_of())
        -- The instances the registry listed last: a lost one of them is a
        -- removal the consumer must find by itself.
        local given = {}
        for _, inst in ipairs(first) do
            given[inst] = true
        end
        assert.is_true(run_all({ rt }, function() return #got > 0 end, 5000), "no first list")
        local live = {}
        check(live)
        local calls = #got
        for _ = 1, steps do
            live.prev = got[#got].list
            local diff = { added = {}, updated = {}, removed = {} }
            for _ = 1, math.random(1, 3) do
                local slot = math.random(0, 39)
                local old = current[slot]
                local roll = math.random()
                if old and roll < 0.4 then
                    current[slot] = nil
                    diff.removed[#diff.removed + 1] = old
                elseif old then
                    local inst = make(slot, math.random(1, 3), math.random() < labelled_share)
                    current[slot] = inst
                    diff.updated[#diff.updated + 1] = inst
                else
                    local inst = make(slot, math.random(1, 3), math.random() < labelled_share)
                    current[slot] = inst
                    diff.added[#diff.added + 1] = inst
                end
            end
            -- A removal the registry does not name (a re-list that lost
            -- one) now and then.
            local lost
            if math.random() < 0.1 then
                local slot = next(current)
                if slot then
                    lost = current[slot]
                    current[slot] = nil
                end
            end
            local events = #changes
            local listed = list_of()
            watcher(diff, listed)
            if lost and given[lost] then
                -- Applied at once (validation = false), and said so.
                local said = false
                for i = events + 1, #changes do
                    for _, inst in ipairs(changes[i].diff.removed) do
                        said = said or inst == lost
                    end
                end
                assert.is_true(said, "the lost instance's removal was not announced")
            end
            if #got > calls then
                calls = #got
                check(live)
            else
                -- No call: the list did not change.
                assert.same(sorted_urls(sub:compute(true)), urls_of(sub:list()))
            end
            given = {}
            for _, inst in ipairs(listed) do
                given[inst] = true
            end
        end
    end

    it("gives what a whole recomputation gives, URLs unique per address", function()
        run(11, 1, 300)
    end)

    it("gives what a whole recomputation gives when addresses share URLs", function()
        run(12, 0.5, 300)
    end)

    it("updates only the changed instance's entries", function()
        run(13, 1, 5)
        local calls = 0
        local real = address_list.entries_of
        address_list.entries_of = function(...)
            calls = calls + 1
            return real(...)
        end
        local ok, err = pcall(function()
            local inst = make(45, 1, true)
            local list = {}
            for _, entry in ipairs(sub:list()) do
                list[#list + 1] = entry.instance
            end
            -- The instances the registry lists, plus one.
            local seen, registered = {}, {}
            for _, i in ipairs(list) do
                if not seen[i] then
                    seen[i] = true
                    registered[#registered + 1] = i
                end
            end
            registered[#registered + 1] = inst
            watcher({ added = { inst }, updated = {}, removed = {} }, registered)
        end)
        address_list.entries_of = real
        assert.is_true(ok, tostring(err))
        assert.equal(1, calls)
    end)
end)
