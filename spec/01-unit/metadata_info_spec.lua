-- MetadataInfo: the parameter filter, the revision (byte-exact with Dubbo
-- 3.1.1+, checked against python3-computed constants and against a Java
-- reference run on real TreeMap/String/MessageDigest), the canonical JSON
-- and tolerant, bounded decoding.
local helpers = require "spec.helpers"
local mi = require "disco.metadata_info"
local js = require "disco.java_string"

-- U+00E9, U+4E2D, U+1F600 (a supplementary character, a surrogate pair in
-- Java) and U+FF21 (a BMP character above U+E000): Java sorts U+1F600 before
-- U+FF21, byte order does the opposite.
local E_ACUTE, ZHONG, EMOJI, FULL_A = "\195\169", "\228\184\173", "\240\159\152\128", "\239\188\161"

local function info_of(app, services)
    local info = mi.new(app)
    for _, t in ipairs(services) do
        local s = mi.service(t)
        if t.nil_path then
            s.path = nil
        end
        info:add(s)
    end
    return info
end

-- The test vectors: { app, services = { mi.service arguments... } }.
local BASE_PARAMS = { side = "provider", application = "shop", methods = "get,put", dubbo = "2.0.2" }

local function with(extra)
    local t = {}
    for k, v in pairs(BASE_PARAMS) do
        t[k] = v
    end
    for k, v in pairs(extra) do
        t[k] = v
    end
    return t
end

local VECTORS = {
    { app = "empty", services = {} },
    { app = "demo-provider", services = {
        { name = "com.acme.DemoService", port = 20880, params = BASE_PARAMS } } },
    { app = "shop", services = {
        { name = "com.z.Last", port = 20880, params = BASE_PARAMS },
        { name = "com.acme.Cart", group = "g1", version = "2.0.0", protocol = "tri", port = 50051 },
        { name = "com.acme.Cart", version = "1.0.0", port = 20880, params = { a = "1" } },
        { name = "com.acme.Cart", group = "a", port = -1 },
        { name = "com.acme.Aaa", port = 20880 } } },
    { app = "unicode", services = {
        { name = "com.x.Svc", port = 1, params = {
            [E_ACUTE] = "3", [ZHONG] = "4", [EMOJI] = "2", [FULL_A] = "1", z = "5", Z = "6", ["a.b"] = "c" } },
        { name = "com.x." .. FULL_A, port = 1 },
        { name = "com.x." .. EMOJI, port = 1 } } },
    { app = "nil-path", services = { { name = "com.acme.P", port = -1, nil_path = true } } },
    { app = "other-path", services = { { name = "com.acme.P", port = 7, path = "custom/path" } } },
    { app = "filtered", services = { { name = "com.acme.F", port = 20880, params = BASE_PARAMS } } },
    { app = "filtered", services = { { name = "com.acme.F", port = 20880, params = with({
        timestamp = "1", pid = "2", ["x.timestamp"] = "3", TIMESTAMP = "4", ["qos.port"] = "5",
        ["bind.ip"] = "6", ["a.ipv6"] = "7", Monitor = "8", ["heartbeat.timeout"] = "9" }) } } },
    -- "X.TIMESTAMP" contains ".TIMESTAMP", not ".timestamp": Java keeps it.
    { app = "filtered", services = { { name = "com.acme.F", port = 20880, params = with({
        ["X.TIMESTAMP"] = "1" }) } } },
    { app = "values", services = { { name = "com.acme.V", port = 20880, params = {
        eq = "a=b", comma = "x, y", braces = "{}", empty = "", space = " " } } } },
    { app = ZHONG .. "app", services = { { name = "com.acme.Q", version = "1", port = 20880 } } },
}

local function hex(s)
    if s == nil then
        return "-"
    end
    if s == "" then
        return "_"
    end
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- The RevisionVectors input for VECTORS (raw parameters: Java filters them
-- with its own implementation of the rule).
local function java_input()
    local lines = {}
    for _, v in ipairs(VECTORS) do
        lines[#lines + 1] = "V " .. hex(v.app)
        for _, t in ipairs(v.services) do
            local path = t.path or t.name
            if t.nil_path then
                path = nil
            end
            lines[#lines + 1] = table.concat({ "S", hex(t.name), hex(t.group), hex(t.version),
                                               hex(t.protocol or "dubbo"), tostring(t.port), hex(path) }, " ")
            for _, k in ipairs(js.sorted_keys(t.params or {})) do
                lines[#lines + 1] = "P " .. hex(k) .. " " .. hex(t.params[k])
            end
        end
        lines[#lines + 1] = "E"
    end
    return table.concat(lines, "\n") .. "\n"
end

local function run(cmd)
    local pipe = assert(io.popen(cmd .. " 2>&1; echo \"exit:$?\""))
    local out = pipe:read("*a")
    pipe:close()
    local body, status = out:match("^(.-)exit:(%d+)%s*$")
    return tonumber(status), body
end

local function java_revisions()
    local q = helpers.shell_quote
    if run("command -v javac >/dev/null") ~= 0 then
        error("javac not found: the revision reference vectors need a JDK (Debian: default-jdk-headless)")
    end
    local dir = helpers.tmpdir()
    local status, out = run("javac -d " .. q(dir) .. " spec/fixtures/revision/RevisionVectors.java")
    assert(status == 0, "javac spec/fixtures/revision/RevisionVectors.java failed:\n" .. out)
    local input = helpers.write_file(dir .. "/input.txt", java_input())
    status, out = run("java -cp " .. q(dir) .. " RevisionVectors < " .. q(input))
    assert(status == 0, "java RevisionVectors failed:\n" .. out)
    local revs = {}
    for line in out:gmatch("[^\n]+") do
        revs[#revs + 1] = line
    end
    return revs
end

describe("disco.metadata_info", function()
    describe("filter_params", function()
        it("drops the WIRE.md §4 keys: equal ignoring case, or containing '.'..x", function()
            local out = mi.filter_params({
                timestamp = "1", TIMESTAMP = "1", Pid = "1", pid = "1", ["x.timestamp"] = "1",
                ["a.b.pid"] = "1", ["qos.accept.foreign.ip"] = "1", ["dubbo.qos.port"] = "1",
                ["bind.port"] = "1", ["x.pidfile"] = "1", monitor = "1", interfaces = "1",
                validation = "1", ["heartbeat.timeout"] = "1", ipv6 = "1", ["qos.enable"] = "1",
                side = "provider", methods = "a,b", release = "3.2", dubbo = "2.0.2",
                application = "shop", interface = "com.acme.Foo", anyhost = "true",
                ["X.TIMESTAMP"] = "kept", ["xtimestamp"] = "kept", ["timestamp.x"] = "kept",
                port = 20880,
            })
            assert.same({
                side = "provider", methods = "a,b", release = "3.2", dubbo = "2.0.2",
                application = "shop", interface = "com.acme.Foo", anyhost = "true",
                ["X.TIMESTAMP"] = "kept", xtimestamp = "kept", ["timestamp.x"] = "kept",
                port = "20880",
            }, out)
        end)
    end)

    describe("service", function()
        it("fills the defaults and filters the params", function()
            assert.same({ name = "com.acme.Foo", protocol = "dubbo", port = -1, path = "com.acme.Foo",
                          params = { side = "provider" } },
                        mi.service({ interface = "com.acme.Foo", group = "",
                                     params = { side = "provider", pid = "9" } }))
            local s = mi.service({ name = "com.acme.Foo", group = "g", version = "1", protocol = "tri",
                                   port = 50051, path = "p" })
            assert.equals("g/com.acme.Foo:1:tri", mi.match_key(s))
        end)

        it("raises on programmer errors", function()
            assert.has_error(function() mi.service({}) end,
                             "metadata_info.service: name (the interface) must be a non-empty string")
            assert.has_error(function() mi.service({ name = "x", port = 1.5 }) end)
            assert.has_error(function() mi.new() end)
        end)
    end)

    describe("revision", function()
        it('is "0" without services', function()
            assert.equals("0", mi.revision_of(mi.new("app")))
        end)

        -- Constants computed independently of this code, with
        --   python3 -c 'import hashlib; print(hashlib.md5(S.encode("utf-8")).hexdigest())'
        -- where S is the string in the comment above each, written by hand
        -- from the WIRE.md §4 rule.
        it("equals python3 hashlib vectors", function()
            -- "demo-providercom.acme.DemoService:dubbo20880com.acme.DemoService"
            --   .. "{application=demo-provider, methods=sayHello, side=provider}"
            local a = info_of("demo-provider", { { name = "com.acme.DemoService", port = 20880, params = {
                side = "provider", methods = "sayHello", application = "demo-provider", timestamp = "17" } } })
            assert.equals("f461ce982fd485564cf3ec0fef86102b", mi.revision_of(a))
            -- "shopcom.acme.Order:dubbo-1null{side=provider}g1/com.acme.Cart:2.0.0:tri50051com.acme.Cart{}"
            local b = info_of("shop", {
                { name = "com.acme.Cart", group = "g1", version = "2.0.0", protocol = "tri", port = 50051 },
                { name = "com.acme.Order", params = { side = "provider" }, nil_path = true } })
            assert.equals("125df641a8da1e469465d1145cd19f47", mi.revision_of(b))
            -- "\u5e94\u7528com.x.Svc:dubbo1com.x.Svc{\u00e9=3, \U0001F600=2, \uFF21=1}"
            local c = info_of("\229\186\148\231\148\168", { { name = "com.x.Svc", port = 1, params = {
                [FULL_A] = "1", [EMOJI] = "2", [E_ACUTE] = "3" } } })
            assert.equals("df32494ffd4e7645c6bf94b5bd12a743", mi.revision_of(c))
            assert.equals("df32494ffd4e7645c6bf94b5bd12a743", c.revision)
            assert.equals(c.revision, mi.revision_of(c))
            assert.equals(c.revision, mi.compute_revision(c))
        end)

        it("equals the Java reference (TreeMap, String.compareTo, MessageDigest)", function()
            local java = java_revisions()
            assert.equals(#VECTORS, #java)
            for i, v in ipairs(VECTORS) do
                assert.equals(java[i], mi.revision_of(info_of(v.app, v.services)),
                              "vector " .. i .. " (" .. v.app .. ")")
            end
            -- Sanity of the vectors themselves: the filtered keys did not
            -- change the revision, X.TIMESTAMP did.
            assert.equals(java[7], java[8])
            assert.not_equals(java[7], java[9])
            assert.equals("0", java[1])
        end)

        it("orders services and params by Java String.compareTo", function()
            assert.is_true(js.less(EMOJI, FULL_A))
            assert.is_false(js.less(FULL_A, EMOJI))
            assert.is_true(FULL_A < EMOJI) -- byte order differs
            assert.is_true(js.less(E_ACUTE, EMOJI))
            assert.is_true(js.less(ZHONG, FULL_A))
            assert.is_true(js.less("a" .. EMOJI, "a" .. FULL_A .. "b"))
            assert.is_true(js.less("Z", "a"))
            assert.is_true(js.less("ab", "abc"))
            assert.is_false(js.less("abc", "abc"))
            assert.equals("{" .. EMOJI .. "=1, " .. FULL_A .. "=2}",
                          js.tree_map_string({ [FULL_A] = "2", [EMOJI] = "1" }))
            assert.equals("{}", js.tree_map_string({}))
            local info = info_of("u", { { name = "com.x." .. FULL_A }, { name = "com.x." .. EMOJI } })
            assert.equals("com.x." .. EMOJI, info:service_list()[1].name)
            assert.equals("u" .. "com.x." .. EMOJI .. ":dubbo-1com.x." .. EMOJI .. "{}"
                          .. "com.x." .. FULL_A .. ":dubbo-1com.x." .. FULL_A .. "{}", mi.revision_input(info))
        end)

        it("is recomputed after add and remove, and add replaces the same matchKey", function()
            local info = mi.new("shop")
            local mk = info:add(mi.service({ name = "com.acme.A", port = 1 }))
            assert.equals("com.acme.A:dubbo", mk)
            local r1 = mi.revision_of(info)
            assert.equals(r1, info.revision) -- cached in the field
            assert.equals(r1, mi.revision_of(info))
            info:add(mi.service({ name = "com.acme.A", port = 2 }))
            assert.is_nil(rawget(info, "revision")) -- cleared: the method is visible again
            local r2 = mi.revision_of(info)
            assert.not_equals(r1, r2)
            assert.equals(1, #info:service_list())
            info:add(mi.service({ name = "com.acme.B" }))
            assert.not_equals(r2, mi.revision_of(info))
            assert.equals("com.acme.B", info:remove("com.acme.B:dubbo").name)
            assert.equals(r2, mi.revision_of(info))
            info:remove("com.acme.A:dubbo")
            assert.equals("0", mi.revision_of(info))
            assert.has_error(function() info:add({ port = 1 }) end)
        end)

        it("keeps an assigned revision for to_json, and compute_revision ignores it", function()
            local info = info_of("shop", { { name = "com.acme.A", port = 1 } })
            local computed = mi.compute_revision(info)
            info.revision = "provider-name"
            assert.equals("provider-name", mi.revision_of(info))
            assert.matches('"revision":"provider%-name"', info:to_json())
            assert.equals(computed, mi.compute_revision(info))
        end)

        it("includes the app name", function()
            local s = { name = "com.acme.A", port = 1 }
            assert.not_equals(mi.revision_of(info_of("a", { s })), mi.revision_of(info_of("b", { s })))
        end)
    end)

    describe("to_json / from_json", function()
        it("writes the canonical form", function()
            local info = info_of("shop", {
                { name = "com.z.Z", port = 20880, params = { side = "provider", methods = "a,b", b = 'q"\\' } },
                { name = "com.a.A", group = "g", version = "1.0", protocol = "tri", port = -1, path = "x/y" } })
            assert.equals('{"app":"shop","revision":"' .. mi.revision_of(info) .. '","services":{'
                .. '"com.z.Z:dubbo":{"name":"com.z.Z","protocol":"dubbo","port":20880,"path":"com.z.Z",'
                .. '"params":{"b":"q\\"\\\\","methods":"a,b","side":"provider"}},'
                .. '"g/com.a.A:1.0:tri":{"name":"com.a.A","group":"g","version":"1.0","protocol":"tri",'
                .. '"port":-1,"path":"x/y","params":{}}}}', info:to_json())
        end)

        it("round-trips", function()
            for i, v in ipairs(VECTORS) do
                local info = info_of(v.app, v.services)
                local back = assert(mi.from_json(info:to_json()))
                assert.equals(mi.revision_of(info), mi.revision_of(back), "vector " .. i)
                assert.equals(info:to_json(), back:to_json(), "vector " .. i)
                assert.equals(info.revision, back.declared_revision or "0")
            end
        end)

        it("reads Dubbo's form tolerantly", function()
            local info = assert(mi.from_json([[{"app":"demo","revision":"stale","extra":[1,2],
                "services":{"g/com.acme.Foo:dubbo":{"name":"com.acme.Foo","group":null,"version":null,
                "protocol":"dubbo","port":"20880","path":"com.acme.Foo","params":{"side":"provider",
                "n":1,"nul":null},"matchKey":"x","serviceKey":"y"}}}]]))
            assert.equals("demo", info.app)
            assert.equals("stale", info.declared_revision)
            local s = info.services["com.acme.Foo:dubbo"]
            assert.same({ name = "com.acme.Foo", protocol = "dubbo", port = 20880, path = "com.acme.Foo",
                          params = { side = "provider", n = "1" } }, s)
            local no_services = assert(mi.from_json('{"app":"x"}'))
            assert.equals("0", mi.revision_of(no_services))
            assert.same({}, no_services:service_list())
            local no_port = assert(mi.from_json('{"app":"x","services":{"a":{"name":"a"}}}'))
            assert.equals(-1, no_port.services["a"].port)
            assert.is_nil(no_port.services["a"].protocol)
        end)

        it("refuses garbage with a reason, without raising", function()
            local cases = {
                { "", "invalid JSON" },
                { "{", "invalid JSON" },
                { "[]", "missing app" },
                { "3", "not a JSON object" },
                { '{"app":1}', "app must be a string" },
                { '{"app":"x","services":[1]}', "keyed by matchKey" },
                { '{"app":"x","services":{"a":1}}', "service 'a' is not an object" },
                { '{"app":"x","services":{"a":{"port":1}}}', "has no name" },
                { '{"app":"x","services":{"a":{"name":"a","port":"x"}}}', "port must be an integer" },
                { '{"app":"x","services":{"a":{"name":"a","params":{"k":{}}}}}', "is not a string" },
                { string.rep("[", 100) .. string.rep("]", 100), "too many nested" },
                { '{"app":"' .. string.rep("x", mi.MAX_BYTES) .. '"}', "over the 1048576%-byte limit" },
            }
            for _, c in ipairs(cases) do
                local info, err = mi.from_json(c[1])
                assert.is_nil(info)
                assert.matches(c[2], err)
            end
            assert.is_nil(mi.from_json(nil))
        end)
    end)
end)
