-- Dubbo service IDs, matchKeys and serviceKeys, and subscription matching.
local sid = require "disco.service_id"

describe("disco.service_id", function()
    it("parses and formats protocol:interface[:version][:group]", function()
        assert.same({ protocol = "dubbo", interface = "com.acme.Foo", version = "1.0.0", group = "g" },
                    sid.parse("dubbo:com.acme.Foo:1.0.0:g"))
        assert.same({ protocol = "dubbo", interface = "com.acme.Foo", group = "g" }, sid.parse("dubbo:com.acme.Foo::g"))
        assert.same({ protocol = "tri", interface = "com.acme.Foo", version = "2" }, sid.parse("tri:com.acme.Foo:2"))
        assert.same({ protocol = "dubbo", interface = "com.acme.Foo" }, sid.parse("dubbo:com.acme.Foo"))
        assert.same({ protocol = "dubbo", interface = "com.acme.Foo" }, sid.parse("dubbo:com.acme.Foo::"))
        for _, s in ipairs({ "dubbo:com.acme.Foo:1.0.0:g", "dubbo:com.acme.Foo::g", "tri:com.acme.Foo:2",
                             "dubbo:com.acme.Foo" }) do
            assert.equals(s, sid.format(sid.parse(s)))
        end
        assert.equals("dubbo:com.acme.Foo", sid.format(sid.parse("dubbo:com.acme.Foo::")))
    end)

    it("refuses IDs without a protocol or an interface", function()
        local cases = {
            { "com.acme.Foo", "expected protocol:interface" },
            { ":com.acme.Foo", "missing the protocol" },
            { "dubbo:", "missing the interface" },
            { "dubbo::1.0", "missing the interface" },
            { "a:b:c:d:e", "expected protocol:interface" },
        }
        for _, c in ipairs(cases) do
            local t, err = sid.parse(c[1])
            assert.is_nil(t)
            assert.matches(c[2], err)
        end
        assert.is_nil(sid.parse(nil))
    end)

    it("builds Dubbo's matchKey and serviceKey", function()
        local full = { protocol = "dubbo", interface = "com.acme.Foo", version = "1.0.0", group = "g" }
        assert.equals("g/com.acme.Foo:1.0.0:dubbo", sid.match_key(full))
        assert.equals("g/com.acme.Foo:1.0.0", sid.service_key(full))
        assert.equals("com.acme.Foo:dubbo", sid.match_key({ protocol = "dubbo", interface = "com.acme.Foo",
                                                            version = "", group = "" }))
        assert.equals("com.acme.Foo", sid.match_key({ interface = "com.acme.Foo" }))
        assert.equals("g/com.acme.Foo:tri", sid.match_key({ name = "com.acme.Foo", group = "g", protocol = "tri" }))
    end)

    it("parses matchKeys back", function()
        for _, t in ipairs({
            { protocol = "dubbo", interface = "com.acme.Foo", version = "1.0.0", group = "g" },
            { protocol = "dubbo", interface = "com.acme.Foo", group = "g" },
            { protocol = "tri", interface = "com.acme.Foo", version = "2" },
            { protocol = "dubbo", interface = "com.acme.Foo" },
        }) do
            assert.same(t, sid.from_match_key(sid.match_key(t)))
        end
        assert.same({ interface = "com.acme.Foo" }, sid.from_match_key("com.acme.Foo"))
        assert.is_nil(sid.from_match_key(""))
        assert.is_nil(sid.from_match_key("g/:dubbo"))
        assert.is_nil(sid.from_match_key("a:b:c:d"))
    end)

    it("matches services against a subscription", function()
        local want = assert(sid.parse("dubbo:com.acme.Foo:1.0.0:g"))
        assert.is_true(sid.matches(want, { name = "com.acme.Foo", version = "1.0.0", group = "g", protocol = "dubbo" }))
        assert.is_true(sid.matches(want, { interface = "com.acme.Foo", version = "1.0.0", group = "g" }))
        assert.is_false(sid.matches(want, { name = "com.acme.Foo", version = "1.0.0", group = "g", protocol = "tri" }))
        assert.is_false(sid.matches(want, { name = "com.acme.Foo", version = "2.0.0", group = "g" }))
        assert.is_false(sid.matches(want, { name = "com.acme.Foo", version = "1.0.0" }))
        assert.is_false(sid.matches(want, { name = "com.acme.Bar", version = "1.0.0", group = "g" }))
        local plain = assert(sid.parse("dubbo:com.acme.Foo"))
        assert.is_true(sid.matches(plain, { name = "com.acme.Foo", version = "", group = "", protocol = "dubbo" }))
        assert.is_true(sid.matches(plain, { name = "com.acme.Foo" }))
        assert.is_false(sid.matches(plain, { name = "com.acme.Foo", group = "g" }))
        local any = assert(sid.parse("dubbo:com.acme.Foo:*:a,b"))
        assert.is_true(sid.matches(any, { name = "com.acme.Foo", version = "9", group = "b" }))
        assert.is_false(sid.matches(any, { name = "com.acme.Foo", version = "9", group = "c" }))
        assert.is_true(sid.matches({ interface = "com.acme.Foo" }, { name = "com.acme.Foo", protocol = "tri" }))
    end)
end)
