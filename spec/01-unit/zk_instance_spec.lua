-- The instance node JSON: byte-exact with what Dubbo 3 writes (the example
-- of WIRE.md §1, compacted), and tolerant decoding of the Java 2.7 and
-- dubbo-go variants with clear reasons for what it refuses.
local zk_instance = require "disco.registry.zk_instance"

-- WIRE.md §1, the data of /services/dubbo-demo-api-provider/192.168.1.9:20880
-- as Dubbo 3.0.8 wrote it (a documented vector; nothing connects to it).
local DUBBO3 = [[{"name":"dubbo-demo-api-provider","id":"192.168.1.9:20880","address":"192.168.1.9",]]
    .. [["port":20880,"sslPort":null,"payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance",]]
    .. [["id":"192.168.1.9:20880","name":"dubbo-demo-api-provider","metadata":{"dubbo.endpoints":]]
    .. [["[{\"port\":20880,\"protocol\":\"dubbo\"}]","dubbo.metadata-service.url-params":]]
    .. [["{\"connections\":\"1\",\"version\":\"1.0.0\",\"dubbo\":\"2.0.2\",\"release\":\"3.0.8\",]]
    .. [[\"side\":\"provider\",\"port\":\"20880\",\"protocol\":\"dubbo\"}",]]
    .. [["dubbo.metadata.revision":"a662fd2213a8a49dc6ff43a4c2ae7b9e","dubbo.metadata.storage-type":"local",]]
    .. [["timestamp":"1654916298616"}},"registrationTimeUTC":1654917265499,"serviceType":"DYNAMIC","uriSpec":null}]]

describe("disco.registry.zk_instance", function()
    it("decodes what Dubbo 3 writes", function()
        local i = assert(zk_instance.decode(DUBBO3, "192.168.1.9:20880"))
        assert.equals("dubbo-demo-api-provider", i.name)
        assert.equals("192.168.1.9", i.host)
        assert.equals(20880, i.port)
        assert.equals(1654917265499, i.registration_time)
        assert.equals("a662fd2213a8a49dc6ff43a4c2ae7b9e", i.metadata["dubbo.metadata.revision"])
        assert.equals('[{"port":20880,"protocol":"dubbo"}]', i.metadata["dubbo.endpoints"])
        assert.equals("dubbo3", i.flavor)
        assert.equals("192.168.1.9:20880", i.id)
    end)

    it("encodes byte for byte what Dubbo 3 writes", function()
        local i = assert(zk_instance.decode(DUBBO3, "192.168.1.9:20880"))
        assert.equals(DUBBO3, zk_instance.encode(i))
    end)

    it("escapes strings as Jackson does", function()
        assert.equals([["a\"b\\c/d\n\t\u0001é"]], zk_instance.quote('a"b\\c/d\n\t\1é'))
        local json = zk_instance.encode({ name = "app/x", host = "127.0.0.1", port = 1,
                                         metadata = { z = "1", a = "x\"y" }, registration_time = 5 })
        assert.matches('"metadata":{"a":"x\\"y","z":"1"}', json, 1, true)
        local back = assert(zk_instance.decode(json))
        assert.equals("app/x", back.name)
        assert.equals('x"y', back.metadata.a)
    end)

    it("decodes the Dubbo 2.7 variant (null payload id, unsorted metadata)", function()
        local data = [[{"name":"old-app","id":"127.0.0.1:20881","address":"127.0.0.1","port":20881,]]
            .. [["sslPort":null,"payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance",]]
            .. [["id":null,"name":"old-app","metadata":{"timestamp":"1","dubbo.exported-services.revision":"-42"}},]]
            .. [["registrationTimeUTC":1600000000000,"serviceType":"DYNAMIC","uriSpec":null}]]
        local i = assert(zk_instance.decode(data, "127.0.0.1:20881"))
        assert.equals("dubbo2", i.flavor)
        assert.equals("-42", i.metadata["dubbo.exported-services.revision"])
    end)

    it("decodes the dubbo-go variant (no sslPort/serviceType/uriSpec, no time, a tag)", function()
        local data = [[{"name":"go-app","id":"127.0.0.1:20000","address":"127.0.0.1","port":20000,]]
            .. [["payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance",]]
            .. [["id":"127.0.0.1:20000","metadata":{"dubbo.metadata.revision":"abc","meta-v":"1.0.0"},]]
            .. [["name":"go-app"},"tag":"gray"}]]
        local i = assert(zk_instance.decode(data, "127.0.0.1:20000"))
        assert.equals("dubbo-go", i.flavor)
        assert.is_nil(i.registration_time)
        assert.equals("gray", i.tag)
        assert.equals("abc", i.metadata["dubbo.metadata.revision"])
    end)

    it("reads scalar metadata values as text, as Jackson does", function()
        local i = assert(zk_instance.decode([[{"name":"a","address":"127.0.0.1","port":1,]]
            .. [["payload":{"metadata":{"n":5,"b":true,"z":null}}}]]))
        assert.same({ n = "5", b = "true" }, i.metadata)
    end)

    it("refuses bad nodes with a reason", function()
        local cases = {
            { "", "empty node data" },
            { "\0\1\2\255binary", "not JSON" },
            { "{\"name\":", "not JSON" },
            { "[1,2]", "no application name" },
            { "42", "not a JSON object" },
            { '{"name":"a","port":1,"payload":{}}', "no address" },
            { '{"name":"a","address":"h","port":0,"payload":{}}', "bad port 0" },
            { '{"name":"a","address":"h","port":1.5,"payload":{}}', "bad port 1.5" },
            { '{"name":"a","address":"h","port":1}', "no payload object" },
            { '{"name":"a","address":"h","port":1,"payload":{"metadata":[{"x":1}]}}', "is not a string" },
            { '{"name":"a","address":"h","port":1,"payload":{"metadata":"x"}}', "not an object" },
            { string.rep(" ", 900 * 1024), "over the 65536-byte limit" },
        }
        for _, case in ipairs(cases) do
            local ok, err = zk_instance.decode(case[1], "h:1")
            assert.is_nil(ok, case[2])
            assert.matches(case[2], err, 1, true)
        end
    end)
end)
