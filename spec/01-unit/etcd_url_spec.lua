-- etcd:// registry URLs (disco.registry.url) and registry/etcd's check of
-- the configuration they give.
local url = require "disco.registry.url"

describe("etcd registry URLs", function()
    it("parses hosts, the prefix and parameters", function()
        local u = assert(url.parse("etcd://127.0.0.1:2379,[::1]:22379/disco/prod?ttl=5"))
        assert.equal("etcd", u.scheme)
        assert.same({ "127.0.0.1:2379", "[::1]:22379" }, u.hosts)
        assert.equal("/disco/prod", u.prefix)
        assert.equal("/disco/prod", u.chroot)
        assert.same({ ttl = "5" }, u.params)
    end)

    it("takes no prefix, or a bare slash, as the root", function()
        assert.equal("", assert(url.parse("etcd://127.0.0.1:2379")).prefix)
        assert.equal("", assert(url.parse("ETCD://127.0.0.1:2379/")).prefix)
    end)

    it("refuses bad hosts and prefixes with a clear error", function()
        local cases = {
            ["etcd:///p"] = "no host given",
            ["etcd://127.0.0.1/p"] = "bad host '127.0.0.1'",
            ["etcd://127.0.0.1:99999/p"] = "bad host",
            ["etcd://127.0.0.1:2379/p/"] = "bad prefix '/p/'",
            ["etcd://127.0.0.1:2379/a//b"] = "bad prefix",
        }
        for text, why in pairs(cases) do
            local u, err = url.parse(text)
            assert.is_nil(u, text)
            assert.matches(why, err, 1, true)
        end
        local _, err = url.parse("consul://127.0.0.1:8500")
        assert.matches("etcd://", err, 1, true)
    end)
end)
