-- Service instance tables: validation, metadata accessors for every variant
-- of WIRE.md §2 (3.x and 2.7 url-params, malformed JSON), the setters'
-- exact JSON, and the memoized decoding.
local instance = require "disco.instance"

local function with_meta(metadata)
    return instance.new({ name = "shop", host = "10.0.0.1", port = 20880, metadata = metadata })
end

describe("disco.instance", function()
    before_each(function()
        instance.clear_cache()
    end)

    it("builds and validates instances", function()
        local i = instance.new({ name = "shop", host = "10.0.0.1", port = 20880, registration_time = 5 })
        assert.same({ name = "shop", host = "10.0.0.1", port = 20880, metadata = {}, enabled = true,
                      registration_time = 5 }, i)
        assert.is_false(instance.new({ name = "a", host = "h", port = 1, enabled = false }).enabled)
        assert.has_error(function() instance.new({ host = "h", port = 1 }) end,
                         "instance.new: instance.name (the application) must be a non-empty string without '/'")
        assert.has_error(function() instance.new({ name = "a", host = "h", port = 0 }) end)
        assert.has_error(function() instance.new({ name = "a", host = "h", port = 1, metadata = { k = 1 } }) end)
        assert.has_error(function() instance.new({ name = "a", host = "h", port = 1, enabled = "yes" }) end)
        local meta = { k = "v" }
        local copy = instance.new({ name = "a", host = "h", port = 1, metadata = meta })
        meta.k = "changed"
        assert.equals("v", copy.metadata.k)
    end)

    it("reads the revision and the storage type", function()
        assert.equals("abc", instance.revision(with_meta({ [instance.REVISION] = "abc" })))
        assert.equals("0", instance.revision(with_meta({ [instance.REVISION] = "0" })))
        assert.is_nil(instance.revision(with_meta({ [instance.REVISION] = "" })))
        assert.is_nil(instance.revision(with_meta({})))
        assert.is_nil(instance.revision({ name = "x" }))
        assert.equals("local", instance.storage_type(with_meta({})))
        assert.equals("remote", instance.storage_type(with_meta({ [instance.STORAGE_TYPE] = "remote" })))
        assert.equals("local", instance.storage_type(with_meta({ [instance.STORAGE_TYPE] = "bogus" })))
        assert.equals("dubbo.metadata.revision", instance.REVISION)
        assert.equals("dubbo.exported-services.revision", instance.EXPORTED_REVISION)
        assert.equals("meta-v", instance.META_V)
    end)

    it("reads endpoints, skipping what is malformed, never raising", function()
        local i = with_meta({ [instance.ENDPOINTS] = '[{"port":20880,"protocol":"dubbo"},'
            .. '{"port":"50051","protocol":"tri"},{"port":0,"protocol":"x"},{"protocol":"y"},7]' })
        assert.same({ { port = 20880, protocol = "dubbo" }, { port = 50051, protocol = "tri" } },
                    instance.endpoints(i))
        assert.equals(20880, instance.endpoint_port(i, "dubbo"))
        assert.equals(50051, instance.endpoint_port(i, "tri"))
        assert.is_nil(instance.endpoint_port(i, "rest"))
        for _, bad in ipairs({ "", "[", "null", "{}", '"x"', "3" }) do
            local b = with_meta({ [instance.ENDPOINTS] = bad })
            assert.same({}, instance.endpoints(b))
            assert.is_nil(instance.endpoint_port(b, "dubbo"))
        end
        assert.same({}, instance.endpoints(with_meta({})))
    end)

    it("reads url-params in the 3.x flat form", function()
        -- WIRE.md §1, from Dubbo 3.0.8.
        local i = with_meta({ [instance.URL_PARAMS] = '{"connections":"1","version":"1.0.0","dubbo":"2.0.2",'
            .. '"release":"3.0.8","side":"provider","port":"20880","protocol":"dubbo"}' })
        local p = instance.url_params(i)
        assert.equals("20880", p.port)
        assert.equals("dubbo", p.protocol)
        assert.equals(p, instance.url_params(i, "dubbo"))
        assert.is_nil(instance.url_params(i, "tri"))
    end)

    it("reads url-params in the 2.7 per-protocol form", function()
        local i = with_meta({ [instance.URL_PARAMS] = '{"dubbo":{"version":"1.0.0","dubbo":"2.0.2","port":"20881"},'
            .. '"rest":{"port":"8080"}}' })
        assert.same({ version = "1.0.0", dubbo = "2.0.2", port = "20881", protocol = "dubbo" },
                    instance.url_params(i, "dubbo"))
        assert.same({ port = "8080", protocol = "rest" }, instance.url_params(i, "rest"))
        assert.same({ version = "1.0.0", dubbo = "2.0.2", port = "20881", protocol = "dubbo" },
                    instance.url_params(i))
        assert.is_nil(instance.url_params(i, "tri"))
        assert.is_nil(instance.url_params(with_meta({ [instance.URL_PARAMS] = "{bad" })))
        assert.is_nil(instance.url_params(with_meta({})))
    end)

    it("decodes each distinct JSON text once", function()
        local text = '[{"port":20880,"protocol":"dubbo"}]'
        local first = instance.endpoints(with_meta({ [instance.ENDPOINTS] = text }))
        for _ = 1, 10000 do
            assert(instance.endpoints(with_meta({ [instance.ENDPOINTS] = text })) == first)
        end
        -- One text read as two kinds keeps an entry for each.
        local both = with_meta({ [instance.ENDPOINTS] = "{}", [instance.URL_PARAMS] = "{}" })
        assert.same({}, instance.endpoints(both))
        assert.same({}, instance.url_params(both))
        -- The cache is bounded.
        local old = instance.CACHE_SIZE
        instance.CACHE_SIZE = 10
        for n = 1, 100 do
            local i = with_meta({ [instance.ENDPOINTS] = '[{"port":' .. n .. ',"protocol":"dubbo"}]' })
            assert.equals(n, instance.endpoint_port(i, "dubbo"))
        end
        instance.CACHE_SIZE = old
    end)

    it("writes metadata as Java does", function()
        local i = with_meta({})
        instance.set_revision(i, "abc")
        instance.set_storage_type(i, "remote")
        instance.set_endpoints(i, { { port = 20880, protocol = "dubbo" }, { port = 50051, protocol = "tri" } })
        instance.set_url_params(i, { protocol = "dubbo", port = "20880", version = "1.0.0", side = "provider" })
        assert.same({
            ["dubbo.metadata.revision"] = "abc",
            ["dubbo.metadata.storage-type"] = "remote",
            ["dubbo.endpoints"] = '[{"port":20880,"protocol":"dubbo"},{"port":50051,"protocol":"tri"}]',
            ["dubbo.metadata-service.url-params"] =
                '{"port":"20880","protocol":"dubbo","side":"provider","version":"1.0.0"}',
        }, i.metadata)
        assert.equals(50051, instance.endpoint_port(i, "tri"))
        assert.equals("20880", instance.url_params(i, "dubbo").port)
        assert.equals("abc", instance.revision(i))
        assert.has_error(function() instance.set_storage_type(i, "cloud") end)
        assert.has_error(function() instance.set_revision(i, "") end)
        assert.has_error(function() instance.set_endpoints(i, { { port = "x", protocol = "dubbo" } }) end)
        local bare = { name = "a", host = "h", port = 1 }
        instance.set_revision(bare, "r")
        assert.equals("r", bare.metadata[instance.REVISION])
    end)
    it("reads the compact endpoints form without the JSON decoder, with the same answers", function()
        -- The compact form has its own reader; any other form goes through
        -- the JSON decoder. Every text here must give, for every protocol,
        -- the port of the first valid entry that the decoded list names.
        local texts = {
            '[{"port":20880,"protocol":"dubbo"}]',
            '[{"protocol":"dubbo","port":20880}]',
            '[{"port":20880,"protocol":"dubbo"},{"port":50051,"protocol":"tri"}]',
            '[{"port":0,"protocol":"dubbo"},{"port":20881,"protocol":"dubbo"}]',
            '[{"port":70000,"protocol":"dubbo"},{"port":1,"protocol":"dubbo"}]',
            '[{"port":20880,"protocol":"dubbo"},{"port":20881,"protocol":"dubbo"}]',
            '[{"port":20880,"protocol":"dubbo"}, {"port":1,"protocol":"tri"}]',
            '[ {"port":20880,"protocol":"dubbo"}]',
            '[{"port":"20880","protocol":"dubbo"}]',
            '[{"port":020880,"protocol":"dubbo"}]',
            '[{"port":20880,"protocol":""}]',
            '[{"port":20880,"protocol":"dubbo","x":1}]',
            '[{"port":20880,"protocol":"dubbo"},]',
            '[{"port":20880,"protocol":"dubbo"}',
            '[{"port":20880,"protocol":"dubbo"}]]',
            '[{"port":20880,"protocol":"dub\\"bo"}]',
            '[]', '{}', '', 'null', '[1]',
        }
        for _, text in ipairs(texts) do
            local inst = with_meta({ [instance.ENDPOINTS] = text })
            for _, protocol in ipairs({ "dubbo", "tri", "rest", "" }) do
                local expected
                for _, e in ipairs(instance.endpoints(inst)) do
                    if e.protocol == protocol then
                        expected = e.port
                        break
                    end
                end
                assert.equal(expected, instance.endpoint_port(inst, protocol), text .. " " .. protocol)
            end
        end
        -- The compact reader answers without filling the decoding cache.
        instance.clear_cache()
        assert.equal(20880, instance.endpoint_port(with_meta({ [instance.ENDPOINTS] = texts[1] }), "dubbo"))
    end)
end)
