-- core.hessian2_encode / core.hessian2_decode: every Lua convention round
-- trips, a MetadataInfo-shaped object graph (Dubbo's class names), Java's
-- bytes (Caucho Hessian2Output), cycles, garbage and limits.
local core = require "disco.core"

local NULL = core.hessian2_null

local function hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function unhex(h)
    return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function roundtrip(...)
    local bytes = assert(core.hessian2_encode(...))
    return assert(core.hessian2_decode(bytes)), bytes
end

describe("core.hessian2", function()
    it("has a null sentinel distinct from nil and false", function()
        assert.equals("userdata", type(NULL))
        local t = roundtrip(NULL, { 1, NULL, 3 }, { k = NULL })
        assert.equals(3, t.n)
        assert.equals(NULL, t[1])
        assert.equals(3, #t[2])
        assert.equals(NULL, t[2][2])
        assert.equals(NULL, t[3].k)
    end)

    it("round trips scalars with Java's compact forms", function()
        local t, bytes = roundtrip(true, false, 0, -16, 47, 2047, -2147483648,
                                   2147483647, 2147483648, 1.5, 0.001, "héllo")
        assert.same({ true, false, 0, -16, 47, 2047, -2147483648, 2147483647,
                      2147483648, 1.5, 0.001, "héllo", n = 12 }, t)
        -- T F 0x90 0x80 0xbf 0xcf 0xff, I min, I max, a long (0x4c), then
        -- doubles as thousandths (0x5f) and a 5-unit string.
        assert.equals("5446" .. "9080bfcfff" .. "4980000000" .. "497fffffff"
                      .. "4c0000000080000000" .. "5f000005dc" .. "5f00000001"
                      .. "0568c3a96c6c6f", hex(bytes))
    end)

    it("maps longs, dates, binaries and forced doubles to tagged tables", function()
        local t, bytes = roundtrip({ ["@long"] = "9223372036854775807" },
                                   { ["@long"] = 5 },
                                   { ["@date"] = 894621060000 },
                                   { ["@binary"] = "\0\1\2" },
                                   { ["@double"] = 2 })
        assert.same({ ["@long"] = "9223372036854775807" }, t[1])
        assert.equals(5, t[2])
        assert.same({ ["@date"] = 894621060000 }, t[3])
        assert.same({ ["@binary"] = "\0\1\2" }, t[4])
        assert.equals(2, t[5])
        assert.equals("4c7fffffffffffffff" .. "e5" .. "4b00e3838f"
                      .. "23000102" .. "5d02", hex(bytes))
    end)

    it("decodes lists and maps with their types and encodes them back", function()
        local t, bytes = roundtrip({ 1, "a", { ["@list"] = "[int", 7 } },
                                   { ["@list"] = "" },
                                   { ["@map"] = "java.util.TreeMap", b = 2, a = 1 },
                                   { x = 1, [5] = "five" },
                                   {})
        assert.same({ 1, "a", { 7, ["@list"] = "[int" }, ["@list"] = "" }, t[1])
        assert.same({ ["@list"] = "" }, t[2])
        assert.same({ ["@map"] = "java.util.TreeMap", a = 1, b = 2 }, t[3])
        assert.same({ ["@map"] = "", x = 1, [5] = "five" }, t[4])
        assert.same({ ["@map"] = "" }, t[5])
        -- Map keys go out sorted: numbers, then strings.
        assert.truthy(hex(bytes):find("4d116a6176612e7574696c2e547265654d6170"
                                      .. "0161910162925a", 1, true))
        assert.truthy(hex(bytes):find("489504666976650178915a", 1, true))
        local again = assert(core.hessian2_encode(t[1], t[2], t[3], t[4], t[5]))
        assert.equals(bytes, again)
    end)

    it("reads Java's bytes: typed lists, type references, back-references", function()
        -- int[] {1,2,3}; two TreeMaps (the second names its type by index:
        -- type 0 is "[int"); an ArrayList holding one HashMap twice (ref 4:
        -- the list, both maps and the ArrayList come first).
        local t = assert(core.hessian2_decode(unhex(
            "73045b696e74919293"
            .. "4d116a6176612e7574696c2e547265654d61700161915a4d915a"
            .. "7a480178915a5194")))
        assert.equals(4, t.n)
        assert.same({ 1, 2, 3, ["@list"] = "[int" }, t[1])
        assert.equals("java.util.TreeMap", t[3]["@map"])
        assert.equals(t[4][1], t[4][2])
    end)

    it("turns a cyclic graph into cyclic tables and writes it back with a back-reference", function()
        local t = assert(core.hessian2_decode(unhex("795190")))
        assert.equals(t[1], t[1][1])
        local bytes = assert(core.hessian2_encode(t[1]))
        -- A one-item untyped list whose item is a reference to itself.
        assert.equals("W" .. "Q\144" .. "Z", bytes)
        local back = assert(core.hessian2_decode(bytes))
        assert.equals(back[1], back[1][1])
        -- Shared tables are written once, then referenced.
        local shared = { 1 }
        local r = roundtrip({ shared, shared })
        assert.equals(r[1][1], r[1][2])
        assert.same({ 1, ["@list"] = "" }, r[1][2])
    end)

    describe("a MetadataInfo graph", function()
        local function service(name)
            return {
                ["@class"] = "org.apache.dubbo.metadata.MetadataInfo$ServiceInfo",
                ["@fields"] = { "name", "group", "version", "protocol", "port",
                                "path", "params" },
                name = name, group = NULL, version = "1.0.0", protocol = "dubbo",
                port = 20880, path = name,
                params = { side = "provider", methods = "sayHello" },
            }
        end

        local info = {
            ["@class"] = "org.apache.dubbo.metadata.MetadataInfo",
            ["@fields"] = { "app", "revision", "services" },
            app = "demo-provider",
            revision = "a662fd2213a8a49dc6ff43a4c2ae7b9e",
            services = {
                ["org.apache.dubbo.demo.DemoService:1.0.0:dubbo"] =
                    service("org.apache.dubbo.demo.DemoService"),
                ["org.apache.dubbo.demo.GreetingService:1.0.0:dubbo"] =
                    service("org.apache.dubbo.demo.GreetingService"),
            },
        }

        it("round trips with one class definition per class", function()
            local t, bytes = roundtrip(info)
            local v = t[1]
            assert.equals("org.apache.dubbo.metadata.MetadataInfo", v["@class"])
            assert.same({ "app", "revision", "services" }, v["@fields"])
            assert.equals("demo-provider", v.app)
            local s = v.services["org.apache.dubbo.demo.GreetingService:1.0.0:dubbo"]
            assert.equals("org.apache.dubbo.metadata.MetadataInfo$ServiceInfo",
                          s["@class"])
            assert.equals(20880, s.port)
            assert.equals(NULL, s.group)
            assert.same({ ["@map"] = "", side = "provider", methods = "sayHello" },
                        s.params)
            local _, defs = hex(bytes):gsub("4330[23][0-9a-f]", "")
            assert.equals(2, defs)
        end)

        it("reads the bytes Caucho writes for Dubbo's classes", function()
            local java = unhex(
                "4330266f72672e6170616368652e647562626f2e6d657461646174612e4d6574"
                .. "6164617461496e666f9303617070087265766973696f6e087365727669636573"
                .. "600d64656d6f2d70726f766964657230206136363266643232313361386134"
                .. "39646336666634336134633261653762396548" .. "0161"
                .. "4330326f72672e6170616368652e647562626f2e6d657461646174612e4d65"
                .. "746164617461496e666f2453657276696365496e666f97046e616d650567726f"
                .. "75700776657273696f6e0870726f746f636f6c04706f72740470617468067061"
                .. "72616d73614e4e4e4e9a4e4e5a")
            local t = assert(core.hessian2_decode(java))
            assert.equals(1, t.n)
            assert.equals("a662fd2213a8a49dc6ff43a4c2ae7b9e", t[1].revision)
            local s = t[1].services.a
            assert.equals(10, s.port)
            assert.equals(NULL, s.params)
            assert.equals("port", s["@fields"][5])
        end)

        it("orders object fields by sorted keys without @fields", function()
            local t, bytes = roundtrip({ ["@class"] = "P", y = 2, x = 1 })
            assert.same({ "x", "y" }, t[1]["@fields"])
            assert.equals("4301509201780179609192", hex(bytes))
        end)
    end)

    it("returns an error tuple for garbage and truncated input", function()
        local ok, err, ename = core.hessian2_decode("\64")
        assert.is_nil(ok)
        assert.equals("EPROTO", ename)
        assert.equals("EPROTO: unknown tag 0x40 at byte 0", err)
        ok, err, ename = core.hessian2_decode("\145\83\0\5ab")
        assert.is_nil(ok)
        assert.equals("EPROTO", ename)
        assert.matches("truncated", err)
        local empty = assert(core.hessian2_decode(""))
        assert.equals(0, empty.n)
    end)

    it("applies limits before allocating", function()
        -- An untyped fixed list announcing 2^31-1 items.
        local ok, err, ename = core.hessian2_decode("\88\73\127\255\255\255")
        assert.is_nil(ok)
        assert.equals("E2BIG", ename)
        assert.matches("max_elements", err)
        ok, err, ename = core.hessian2_decode("\4abcd", { max_string = 3 })
        assert.is_nil(ok)
        assert.equals("E2BIG", ename)
        assert.matches("max_string", err)
        ok, err, ename = core.hessian2_decode(string.rep("\87", 10) .. string.rep("Z", 10),
                                            { max_depth = 5 })
        assert.is_nil(ok)
        assert.equals("E2BIG", ename)
        assert.matches("max_depth", err)
        assert.truthy(core.hessian2_decode(string.rep("\87", 5) .. string.rep("Z", 5),
                                           { max_depth = 5 }))
        assert.has_error(function() core.hessian2_decode("", { max_depth = -1 }) end)
    end)

    it("refuses values Hessian cannot carry", function()
        for _, v in ipairs({ print, coroutine.create(print), { [true] = 1 },
                             { ["@long"] = "12x" }, { ["@class"] = 1 },
                             "\255" }) do
            local ok, err, ename = core.hessian2_encode(v)
            assert.is_nil(ok)
            assert.equals("EINVAL", ename)
            assert.matches("^EINVAL: ", err)
        end
        local deep = {}
        local cur = deep
        for _ = 1, 300 do
            cur[1] = {}
            cur = cur[1]
        end
        local ok, _, ename = core.hessian2_encode(deep)
        assert.is_nil(ok)
        assert.equals("EINVAL", ename)
    end)
end)
