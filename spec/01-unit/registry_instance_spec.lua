-- disco.registry.instance: what every registry plugin shares.
local registry_instance = require "disco.registry.instance"

describe("disco.registry.instance", function()
    it("finds an id in a list sorted by id, or where it would go", function()
        local sorted = { { id = "a" }, { id = "c" }, { id = "e" } }
        assert.same({ 2, true }, { registry_instance.locate(sorted, "c") })
        assert.same({ 1, false }, { registry_instance.locate(sorted, "0") })
        assert.same({ 3, false }, { registry_instance.locate(sorted, "d") })
        assert.same({ 4, false }, { registry_instance.locate(sorted, "z") })
        assert.same({ 1, false }, { registry_instance.locate({}, "a") })
    end)

    it("keeps the sorted list up to date change by change", function()
        local function inst(id, tag)
            return { id = id, tag = tag }
        end
        local sorted = {}
        registry_instance.update_sorted(sorted, { added = { inst("b"), inst("d"), inst("a") },
                                                  updated = {}, removed = {} })
        registry_instance.update_sorted(sorted, { added = { inst("c") }, updated = { inst("d", "new") },
                                                  removed = { inst("a"), inst("zz") } })
        local ids = {}
        for i, x in ipairs(sorted) do
            ids[i] = x.id
        end
        assert.same({ "b", "c", "d" }, ids)
        assert.equal("new", sorted[3].tag)
    end)


    it("stamps a registration with the time now and leaves the caller's table alone", function()
        local zk_instance = require "disco.registry.zk_instance"
        local inst = { name = "shop", host = "127.0.0.1", port = 20880, metadata = { a = "1" },
                       registration_time = 5 }
        local before = os.time() * 1000
        local json = zk_instance.encode_registration(inst)
        local stamp = tonumber(json:match('"registrationTimeUTC":(%d+)'))
        assert.is_true(stamp >= before and stamp <= os.time() * 1000)
        assert.equal(5, inst.registration_time)
    end)
end)
