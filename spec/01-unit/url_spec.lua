-- Dubbo URLs: parsing, building, parameter order, encoding and exact round
-- trips, and errors that name the problem.
local url = require "disco.url"

describe("disco.url", function()
    it("parses every part", function()
        local u = assert(url.parse("dubbo://admin:s%40cret@10.0.0.1:20880/com.acme.Foo?side=provider"
            .. "&methods=get,put&interface=com.acme.Foo&empty="))
        assert.equals("dubbo", u.protocol)
        assert.equals("admin", u.username)
        assert.equals("s@cret", u.password)
        assert.equals("10.0.0.1", u.host)
        assert.equals(20880, u.port)
        assert.equals("com.acme.Foo", u.path)
        assert.same({ side = "provider", methods = "get,put", interface = "com.acme.Foo", empty = "" }, u.params)
        assert.same({ "side", "methods", "interface", "empty" }, u.keys)
        assert.equals("get,put", u:get("methods"))
        assert.equals("10.0.0.1:20880", u:address())
    end)

    it("parses IPv6 hosts, and URLs without port, path or query", function()
        local u = assert(url.parse("dubbo://[fe80::1%25eth0]:20880/com.acme.Foo"))
        assert.equals("fe80::1%25eth0", u.host)
        assert.equals(20880, u.port)
        assert.equals("[fe80::1%25eth0]:20880", u:address())
        u = assert(url.parse("tri://[::1]"))
        assert.equals("::1", u.host)
        assert.is_nil(u.port)
        assert.is_nil(u.path)
        u = assert(url.parse("empty://10.0.0.1/com.acme.Foo?category=providers"))
        assert.is_nil(u.port)
        assert.equals("com.acme.Foo", u.path)
        u = assert(url.parse("consumer://h:1/"))
        assert.equals("", u.path)
        u = assert(url.parse("file:///tmp/x"))
        assert.is_nil(u.host)
        assert.equals("tmp/x", u.path)
        u = assert(url.parse("dubbo://h?a=1"))
        assert.equals("h", u.host)
        assert.is_nil(u.path)
        assert.equals("1", u:get("a"))
    end)

    it("decodes %XX everywhere in parameters and + as a space", function()
        local u = assert(url.parse("d://h/p?k%3D=a%26b%3Dc%25d%2Be+f&n=%E4%B8%AD%C3%A9&bad=100%&x=%zz"))
        assert.equals("a&b=c%d+e f", u:get("k="))
        assert.equals("\228\184\173\195\169", u:get("n"))
        assert.equals("100%", u:get("bad")) -- kept as Dubbo's raw toString writes it
        assert.equals("%zz", u:get("x"))
    end)

    it("reads a bare key as key=key, and keeps the last of duplicate keys in the first place", function()
        local u = assert(url.parse("d://h/p?anyhost&a=1&b=2&a=3"))
        assert.equals("anyhost", u:get("anyhost"))
        assert.same({ "anyhost", "a", "b" }, u.keys)
        assert.equals("3", u:get("a"))
    end)

    it("round-trips exactly what it writes", function()
        local samples = {
            "dubbo://10.0.0.1:20880/com.acme.Foo?anyhost=true&application=shop&methods=get,put&side=provider",
            "dubbo://[::1]:20880/com.acme.Foo?a=1",
            "dubbo://[2001:db8::7]/x",
            "tri://h",
            "tri://h:0",
            "empty://h/com.acme.Foo?category=providers,configurators",
            "consumer://h:1/",
            "file:///tmp/x",
            "d://u@h",
            "d://u:p%40%3A%2F@h:1/p",
            "d://h/p?k=",
            "d://h/p?comma=a,b&amp=a%26b&eq=a%3Db&pct=100%25&plus=1%2B1&space=a%20b&hash=%23&q=%3F",
            "d://h/p?utf8=%E4%B8%AD%C3%A9%F0%9F%98%80&%E4%B8%AD=key",
            "d://h/p?url=http://x/y:z@w;v!$'()*~",
            "d://h/some/deep/path?z=1&a=2",
        }
        for _, s in ipairs(samples) do
            local u = assert(url.parse(s))
            assert.equals(s, url.format(u))
            assert.equals(s, u:to_string())
            assert.equals(s, tostring(u))
        end
    end)

    it("keeps any value through format and parse", function()
        local values = { "a&b=c", "100%", "1+1", " lead", "x, y", "?#", "\228\184\173", "\0\1\n", "" }
        for _, v in ipairs(values) do
            local u = url.new({ protocol = "d", host = "h", params = { [v .. "k"] = v } })
            local back = assert(url.parse(url.format(u)))
            assert.equals(v, back:get(v .. "k"))
        end
        local u = url.new({ protocol = "d", host = "h", username = "a:b@c", password = "p/q:r@" })
        local back = assert(url.parse(url.format(u)))
        assert.equals("a:b@c", back.username)
        assert.equals("p/q:r@", back.password)
    end)

    it("builds URLs with sorted params, and edits them in place", function()
        local u = url.new({ protocol = "dubbo", host = "::1", port = 20880, path = "/com.acme.Foo",
                            params = { side = "provider", application = "shop", port = 1 } })
        assert.equals("dubbo://[::1]:20880/com.acme.Foo?application=shop&port=1&side=provider", u:to_string())
        u:set("application", "cart"):set("zz", "last"):set("aa", true)
        assert.equals("dubbo://[::1]:20880/com.acme.Foo?application=cart&port=1&side=provider&zz=last&aa=true",
                      u:to_string())
        u:remove("port"):remove("nope")
        u:set("side", nil)
        assert.same({ "application", "zz", "aa" }, u.keys)
        local c = u:copy()
        c:set("application", "other")
        c.host = "10.0.0.2"
        assert.equals("cart", u:get("application"))
        assert.equals("::1", u.host)
        assert.is_true(url.is_url(c))
        assert.equals("d://h", url.new({ protocol = "d", host = "h" }):to_string())
    end)

    it("names the problem in errors", function()
        local cases = {
            { "xyz", "url: missing '://' in 'xyz'" },
            { "://h", "url: bad protocol '' in '://h'" },
            { "d://h:99999", "url: port 99999 out of range in 'd://h:99999'" },
            { "d://h:x/p", "url: bad port 'x' in 'd://h:x/p'" },
            { "d://h:/p", "url: bad port '' in 'd://h:/p'" },
            { "d://::1:20880/p", "more than one ':' in the host" },
            { "d://[::1/p", "bad IPv6 host" },
            { "d://[::1]x/p", "bad port after IPv6 host" },
            { "d://h/p?=v", "empty parameter name" },
        }
        for _, c in ipairs(cases) do
            local u, err = url.parse(c[1])
            assert.is_nil(u)
            assert.is_truthy(err:find(c[2], 1, true), err)
        end
        assert.same({ nil, "url: expected a string, got nil" }, { url.parse(nil) })
        assert.has_error(function() url.new({ host = "h" }) end)
        assert.has_error(function() url.new({ protocol = "d", port = 70000 }) end)
        assert.has_error(function() url.new({ protocol = "d" }):set("", "x") end)
    end)
end)
