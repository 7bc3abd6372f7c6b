-- The pure parts of registry/etcd (disco.registry.etcd_codec): base64 as
-- the gateway wants it, range ends, the key layout, gateway answers and
-- errors, and the translation of ranges and watch events into diffs.
local codec = require "disco.registry.etcd_codec"
local cjson = require "cjson.safe"
local zk_instance = require "disco.registry.zk_instance"

local b64 = codec.b64encode

-- A kv as the gateway writes it.
local function kv(key, instance, create, mod, lease)
    return { key = b64(key), value = instance and b64(zk_instance.encode(instance)) or nil,
             create_revision = tostring(create), mod_revision = tostring(mod),
             version = "1", lease = lease }
end

local function shop(port, meta)
    return { name = "shop", host = "10.0.0.1", port = port, metadata = meta or {}, registration_time = 1 }
end

describe("etcd codec", function()
    describe("base64", function()
        it("encodes and decodes the RFC 4648 test vectors", function()
            local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                              fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
            for plain, encoded in pairs(vectors) do
                assert.equal(encoded, b64(plain))
                assert.equal(plain, codec.b64decode(encoded))
            end
        end)

        it("round-trips every byte value", function()
            local bytes = {}
            for i = 0, 255 do
                bytes[#bytes + 1] = string.char(i)
            end
            local all = table.concat(bytes)
            for cut = 0, 3 do
                local s = all:sub(1, #all - cut)
                assert.equal(s, codec.b64decode(b64(s)))
            end
            assert.equal("/w==", b64("\255"))
        end)

        it("refuses bad input with a reason", function()
            local v, err = codec.b64decode("Zm9")
            assert.is_nil(v)
            assert.matches("multiple of 4", err)
            v, err = codec.b64decode("Zm!v")
            assert.is_nil(v)
            assert.matches("bad character", err)
            -- Padding only at the very end, and "=" never before a non-"=".
            assert.is_nil(codec.b64decode("Zg==Zm9v"))
            assert.is_nil(codec.b64decode("Zm=v"))
            assert.is_nil(codec.b64decode(42))
        end)
    end)

    it("computes the range end of a prefix", function()
        assert.equal("/services/shoq", codec.prefix_end("/services/shop"))
        assert.equal("/a0", codec.prefix_end("/a/"))
        assert.equal("b", codec.prefix_end("a\255\255"))
        assert.equal("\0", codec.prefix_end("\255"))
        assert.equal("\0", codec.prefix_end(""))
    end)

    it("lays out keys under the prefix", function()
        local inst = { name = "shop", host = "10.0.0.1", port = 20880 }
        assert.equal("/p/services/shop/10.0.0.1:20880", codec.instance_key("/p", inst))
        assert.equal("/services/shop/10.0.0.1:20880", codec.instance_key("", inst))
        assert.equal("/p/services/", codec.services_prefix("/p"))
        assert.equal("/p/dubbo/mapping/com.acme.Foo", codec.config_key("/p", "/dubbo/mapping/com.acme.Foo"))
        assert.equal("", codec.check_prefix(nil))
        assert.equal("", codec.check_prefix("/"))
        assert.equal("/a/b", codec.check_prefix("/a/b"))
        for _, bad in ipairs({ "a", "/a/", "//a", "/a//b" }) do
            local ok, err = codec.check_prefix(bad)
            assert.is_nil(ok, bad)
            assert.matches("prefix must be", err)
        end
    end)

    it("builds gateway requests with base64 keys and string integers", function()
        local put = cjson.decode(codec.put_request("/k", "v", "7587869389826498562"))
        assert.same({ key = "L2s=", value = "dg==", lease = "7587869389826498562" }, put)
        local watch = cjson.decode(codec.watch_request("/a/", "/a0", 42)).create_request
        assert.equal("L2Ev", watch.key)
        assert.equal("L2Ew", watch.range_end)
        assert.equal("42", watch.start_revision)
        assert.is_true(watch.prev_kv)
        local txn = cjson.decode(codec.txn_request({ codec.compare("/k", "LEASE", "99") },
                                                   { { delete = "/k" } }, { { range = "/k" } }))
        assert.same({ key = "L2s=", target = "LEASE", result = "EQUAL", lease = "99" }, txn.compare[1])
        assert.equal("L2s=", txn.success[1].request_delete_range.key)
        assert.equal("L2s=", txn.failure[1].request_range.key)
        local cas = cjson.decode(codec.txn_request({ codec.compare("/k", "MOD", 0) },
                                                   { { put = { "/k", "x" } } }))
        assert.equal("0", cas.compare[1].mod_revision)
        assert.is_nil(cas.failure)
        assert.has_error(function() codec.compare("/k", "NOPE", 1) end)
    end)

    it("decodes answers and turns gateway errors into EETCD", function()
        local doc = assert(codec.decode('{"header":{"revision":"5"},"count":"1"}\n'))
        assert.equal(5, codec.revision(doc.header.revision))
        assert.equal(0, codec.revision(nil))
        local v, err = codec.decode('{"error":"etcdserver: mvcc: required revision has been compacted",'
                                    .. '"code":11,"message":"etcdserver: mvcc: required revision has been compacted"}')
        assert.is_nil(v)
        assert.equal("EETCD: etcdserver: mvcc: required revision has been compacted (code 11)", err)
        v, err = codec.decode('{"error":{"grpc_code":9,"http_code":400,"message":"boom"}}')
        assert.is_nil(v)
        assert.equal("EETCD: boom (code 9)", err)
        v, err = codec.decode("<html>")
        assert.is_nil(v)
        assert.matches("^EPROTO: ", err)
        assert.matches("^EPROTO: ", select(2, codec.decode("")))
        assert.matches("^EPROTO: ", select(2, codec.decode("[1]")) or "EPROTO: array")
    end)

    it("reads an instance and its identity from a kv", function()
        local k = kv("/services/shop/10.0.0.1:1", shop(1, { a = "b" }), 3, 9, "77")
        local key, value = codec.kv_bytes(k)
        assert.equal("/services/shop/10.0.0.1:1", key)
        local inst = assert(codec.kv_instance(k, "10.0.0.1:1", value))
        assert.equal("shop", inst.name)
        assert.equal("10.0.0.1:1", inst.id)
        assert.equal("b", inst.metadata.a)
        assert.equal(3, inst.identity.created)
        assert.equal(9, inst.identity.modified)
        assert.equal("77", inst.identity.owner)
        assert.has_error(function() inst.identity.created = 1 end)
        local bad, why = codec.kv_instance(k, "x", "not json")
        assert.is_nil(bad)
        assert.matches("not JSON", why)
        bad, why = codec.kv_instance(k, "x", string.rep(" ", zk_instance.MAX_BYTES + 1))
        assert.is_nil(bad)
        assert.matches("limit", why)
        local _, none, berr = codec.kv_bytes({ key = b64("/k"), value = "%%%%" })
        assert.is_nil(none)
        assert.matches("base64", berr)
    end)

    it("lists the children of a path from keys", function()
        assert.same({ "a", "b" }, codec.children({ "/m/b/x", "/m/a", "/m/a/y", "/m/b", "/n/c" }, "/m/"))
        assert.same({}, codec.children({}, "/m/"))
    end)

    describe("watch events", function()
        local base = "/p/services/shop/"

        local function decode(id, k)
            local _, value = codec.kv_bytes(k)
            return codec.kv_instance(k, id, value)
        end

        it("keeps the last change of each key, in order, and the highest revision", function()
            local events = {
                { kv = kv(base .. "10.0.0.1:1", shop(1), 5, 5, "1") },
                { kv = kv(base .. "10.0.0.1:2", shop(2), 6, 6, "1") },
                { type = "DELETE", kv = { key = b64(base .. "10.0.0.1:1"), mod_revision = "7" },
                  prev_kv = kv(base .. "10.0.0.1:1", shop(1), 5, 5, "1") },
                -- Not instances: deeper keys, other applications.
                { kv = kv(base .. "10.0.0.1:3/extra", shop(3), 8, 8, "1") },
                { kv = kv("/p/services/shopping/10.0.0.1:4", shop(4), 9, 9, "1") },
            }
            local changes, top = codec.event_changes(events, base)
            assert.equal(9, top)
            assert.equal(2, #changes)
            assert.equal("10.0.0.1:1", changes[1].id)
            assert.is_true(changes[1].deleted)
            assert.equal("10.0.0.1:2", changes[2].id)
            assert.is_nil(changes[2].deleted)
        end)

        it("turns changes into real differences only", function()
            local held = {}
            local diff = codec.apply(held, codec.event_changes({
                { kv = kv(base .. "10.0.0.1:1", shop(1), 5, 5, "1") },
                { kv = kv(base .. "10.0.0.1:2", shop(2), 6, 6, "1") },
            }, base), decode)
            assert.equal(2, #diff.added)
            -- The same revision again (a replay) is no change; a new one
            -- with another lease (re-registered) is an update; a delete of
            -- a key never held is nothing.
            diff = codec.apply(held, codec.event_changes({
                { kv = kv(base .. "10.0.0.1:1", shop(1), 5, 5, "1") },
                { kv = kv(base .. "10.0.0.1:2", shop(2, { w = "1" }), 6, 10, "2") },
                { type = "DELETE", kv = { key = b64(base .. "10.0.0.1:9"), mod_revision = "11" } },
            }, base), decode)
            assert.same({ 0, 1, 0 }, { #diff.added, #diff.updated, #diff.removed })
            assert.equal("2", held["10.0.0.1:2"].identity.owner)
            assert.equal("1", held["10.0.0.1:2"].metadata.w)
            -- A bad value keeps the last good instance.
            local bad = kv(base .. "10.0.0.1:2", nil, 6, 12, "2")
            bad.value = b64("garbage")
            diff = codec.apply(held, codec.event_changes({ { kv = bad } }, base), decode)
            assert.same({ 0, 0, 0 }, { #diff.added, #diff.updated, #diff.removed })
            assert.equal(10, held["10.0.0.1:2"].identity.modified)
            -- The delete's removal is the registration held.
            diff = codec.apply(held, codec.event_changes({
                { type = "DELETE", kv = { key = b64(base .. "10.0.0.1:1"), mod_revision = "13" } },
            }, base), decode)
            assert.equal(1, #diff.removed)
            assert.equal(5, diff.removed[1].identity.created)
            assert.is_nil(held["10.0.0.1:1"])
        end)

        it("re-lists after a compaction with only the real differences", function()
            local held = {}
            codec.apply(held, codec.relist_changes(held, {
                kv(base .. "10.0.0.1:1", shop(1), 5, 5, "1"),
                kv(base .. "10.0.0.1:2", shop(2), 6, 6, "1"),
                kv(base .. "10.0.0.1:3", shop(3), 7, 7, "1"),
            }, base), decode)
            -- While compacted away: :1 unchanged, :2 modified, :3 deleted,
            -- :4 created.
            local diff = codec.apply(held, codec.relist_changes(held, {
                kv(base .. "10.0.0.1:1", shop(1), 5, 5, "1"),
                kv(base .. "10.0.0.1:2", shop(2, { x = "y" }), 6, 20, "1"),
                kv(base .. "10.0.0.1:4", shop(4), 21, 21, "3"),
            }, base), decode)
            assert.equal(1, #diff.added)
            assert.equal("10.0.0.1:4", diff.added[1].id)
            assert.equal(1, #diff.updated)
            assert.equal("10.0.0.1:2", diff.updated[1].id)
            assert.equal(1, #diff.removed)
            assert.equal("10.0.0.1:3", diff.removed[1].id)
        end)
    end)
end)
