-- disco.properties: java.util.Properties.load's reading of .properties
-- text (escapes, comments, continuations, separators, whitespace, last
-- duplicate wins, malformed \u escapes), and the fixture Dubbo's static
-- mapping reads.
local properties = require "disco.properties"

local function parse(text)
    return assert(properties.parse(text))
end

describe("disco.properties", function()
    it("resolves escapes in keys and values", function()
        local p = parse("a\\:b\\=c\\ d = x\\:y\\=z\\\\w\\ v\\tq\n"
                        .. "uni = caf\\u00e9 \\u20AC \\ud83d\\ude00\n"
                        .. "other\\q = \\n\\r\\f\n")
        assert.equals("x:y=z\\w v\tq", p["a:b=c d"])
        assert.equals("caf\195\169 \226\130\172 \240\159\152\128", p.uni)
        assert.equals("\n\r\f", p["otherq"])
    end)

    it("skips comments and blank lines, and a comment never continues", function()
        local p = parse("# comment = no\n  ! also a comment\n\n   \t\f\nkey = v\n# ends with \\\nnext = w\n")
        assert.same({ key = "v", next = "w" }, p)
    end)

    it("joins continuation lines, dropping the continued line's leading whitespace", function()
        local p = parse("list = a,\\\n      b,\\\n\t  c\nodd = x\\\\\\\n   y\neven = x\\\\\nz = 1\n"
                        .. "hash = a\\\n   #not a comment\nlast = end\\")
        assert.equals("a,b,c", p.list)
        assert.equals("x\\y", p.odd)    -- three backslashes: one escaped, one continues
        assert.equals("x\\", p.even)    -- two backslashes: an escaped one, no continuation
        assert.equals("1", p.z)
        assert.equals("a#not a comment", p.hash)
        assert.equals("end", p.last)    -- a continuation at the end of the text
    end)

    it("accepts '=', ':' and whitespace as separators, with the spacing rules of Properties", function()
        local p = parse("k1=v1\nk2:v2\nk3 v3\nk4 = v4\nk5   :   v5\nk6 = = v6\nk7 \t\f v7  \n"
                        .. "k8\nk9=\n   k10 = leading whitespace dropped\nk11:=v\n")
        assert.equals("v1", p.k1)
        assert.equals("v2", p.k2)
        assert.equals("v3", p.k3)
        assert.equals("v4", p.k4)
        assert.equals("v5", p.k5)
        assert.equals("= v6", p.k6)     -- only one separator is skipped
        assert.equals("v7  ", p.k7)     -- trailing whitespace is kept
        assert.equals("", p.k8)
        assert.equals("", p.k9)
        assert.equals("leading whitespace dropped", p.k10)
        assert.equals("=v", p.k11)
    end)

    it("handles \\r\\n, \\r and \\n line ends alike", function()
        assert.same({ a = "1", b = "2", c = "3" }, parse("a=1\r\nb=2\rc=3\n"))
    end)

    it("lets the last of duplicate keys win", function()
        assert.same({ k = "third" }, parse("k = first\nk = second\nk: third\n"))
    end)

    it("rejects a malformed \\u escape with a clear error naming the line", function()
        local p, err, ename = properties.parse("ok = 1\n\nbad = \\u00zz\n")
        assert.is_nil(p)
        assert.equals("EINVAL", ename)
        assert.matches("^EINVAL: line 3: malformed \\uxxxx encoding", err)
        p, err = properties.parse("short\\u12 = x")
        assert.is_nil(p)
        assert.matches("line 1: malformed", err)
    end)

    it("reads Dubbo's service-name-mapping fixture", function()
        local p = assert(properties.load_file("spec/fixtures/mapping/service-name-mapping.properties"))
        assert.equals("P1 Service,P2 Service", p["dubbo:com.acme.Interface1:default"])
        assert.equals("Service1,Service2", p["thrift:com.acme.InterfaceX"])
        assert.equals("versioned-app", p["dubbo:com.acme.Versioned:g1:1.0.0"])
    end)

    it("reports a file it cannot read", function()
        local p, err, ename = properties.load_file("spec/fixtures/mapping/missing.properties")
        assert.is_nil(p)
        assert.equals("ENOENT", ename)
        assert.matches("missing.properties", err)
    end)
end)
