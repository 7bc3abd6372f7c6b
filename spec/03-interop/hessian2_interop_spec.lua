-- disco's Hessian 2 codec against Caucho Hessian, the Java reference
-- (WIRE.md §7b), in both directions: every vector the Java peer writes
-- (spec/interop/Interop.java `vectors`) decodes in disco to exactly the
-- graph the peer describes in NAME.json, and disco's encoding of that same
-- graph reads back equal in Java (`check`).
--
-- The NAME.json files are the peer's canonical rendering of the graph, a
-- JSON array of the stream's top-level values in disco's Lua conventions;
-- JSON cannot hold a list with extra keys or raw bytes, so a list is
-- {"@list": type, "@items": [...]} and binary is {"@binary": "hex"}.
local helpers = require "spec.helpers"
local java = require "spec.support.java"
local cjson = require "cjson"

local core = helpers.core
local unpack = unpack or table.unpack -- luacheck: ignore 143

-- What the peer writes (Interop.vectorSet); the first spec checks that the
-- list and index.txt agree, so a vector added in Java is not left untested.
local VECTORS = {
    "basic", "concurrent_map", "back_references", "long_strings", "unicode",
    "null_fields", "empty_services", "empty_params", "int_ports", "newer_fields",
    "info_list", "many_services", "request_body", "response_value", "response_null",
}

local function codec()
    if type(core.hessian2_decode) ~= "function" or type(core.hessian2_encode) ~= "function"
        or core.hessian2_null == nil then
        error("disco.core has no hessian2_decode/hessian2_encode/hessian2_null: the C Hessian2"
              .. " codec (core/hessian2_*.c and its bindings) is not built into this disco.core", 2)
    end
    return core
end

local function hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function unhex(h)
    return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function expected_of(name)
    local dir = java.vectors()
    local text = assert(helpers.read_file(dir .. "/" .. name .. ".json"), "no " .. name .. ".json")
    return cjson.decode(text), dir .. "/" .. name .. ".hessian", dir .. "/" .. name .. ".json"
end

local function short(v)
    local s
    if type(v) == "table" then
        local ok, text = pcall(cjson.encode, v)
        s = ok and text or tostring(v)
    elseif type(v) == "string" then
        s = string.format("%q", v)
    else
        s = tostring(v)
    end
    if #s > 120 then
        s = s:sub(1, 120) .. "... (" .. #s .. " bytes)"
    end
    return s
end

local function is_null(v)
    return v == nil or v == cjson.null or v == core.hessian2_null
end

-- Where the decoded Lua value `a` differs from the expected JSON value `e`
-- (a path and both values), or nil when they are the same graph.
local function differ(e, a, path)
    local function bad(why)
        return path .. ": " .. why .. " (expected " .. short(e) .. ", got " .. short(a) .. ")"
    end
    if e == cjson.null then
        return not is_null(a) and bad("not null") or nil
    end
    if type(e) ~= "table" then
        if type(a) ~= type(e) or a ~= e then
            return bad("different value")
        end
        return nil
    end
    if type(a) ~= "table" then
        return bad("not a table")
    end
    if e["@class"] then
        if a["@class"] ~= e["@class"] then
            return bad("different @class")
        end
        if type(a["@fields"]) ~= "table" then
            return bad("no @fields")
        end
        if #a["@fields"] ~= #e["@fields"] then
            return bad(#a["@fields"] .. " fields, not " .. #e["@fields"])
        end
        local known = {}
        for i, name in ipairs(e["@fields"]) do
            if a["@fields"][i] ~= name then
                return bad("field " .. i .. " is " .. tostring(a["@fields"][i]) .. ", not " .. name)
            end
            known[name] = true
            local d = differ(e[name], a[name], path .. "." .. name)
            if d then
                return d
            end
        end
        for k in pairs(a) do
            if k ~= "@class" and k ~= "@fields" and not known[k] then
                return bad("unexpected member " .. tostring(k))
            end
        end
        return nil
    end
    if e["@map"] then
        if a["@map"] ~= e["@map"] then
            return bad("map type " .. tostring(a["@map"]) .. ", not " .. e["@map"])
        end
        for k, v in pairs(e) do
            if k ~= "@map" then
                local d = differ(v, a[k], path .. "[" .. short(k) .. "]")
                if d then
                    return d
                end
            end
        end
        for k in pairs(a) do
            if k ~= "@map" and e[k] == nil then
                return bad("unexpected key " .. short(k))
            end
        end
        return nil
    end
    if e["@list"] then
        if a["@list"] ~= e["@list"] then
            return bad("list type " .. tostring(a["@list"]) .. ", not " .. e["@list"])
        end
        local items = e["@items"]
        local n = a.n or #a
        if n ~= #items then
            return bad(n .. " items, not " .. #items)
        end
        for i = 1, #items do
            local d = differ(items[i], a[i], path .. "[" .. i .. "]")
            if d then
                return d
            end
        end
        return nil
    end
    for _, tag in ipairs({ "@long", "@date" }) do
        if e[tag] ~= nil then
            return a[tag] ~= e[tag] and bad("different " .. tag) or nil
        end
    end
    if e["@binary"] then
        if type(a["@binary"]) ~= "string" or hex(a["@binary"]) ~= e["@binary"] then
            return bad("different @binary")
        end
        return nil
    end
    return bad("unknown expected form")
end

-- The Lua value of an expected JSON value, in the codec's conventions.
local function to_lua(e)
    if e == cjson.null then
        return core.hessian2_null
    end
    if type(e) ~= "table" then
        return e
    end
    if e["@class"] then
        local t = { ["@class"] = e["@class"], ["@fields"] = {} }
        for i, name in ipairs(e["@fields"]) do
            t["@fields"][i] = name
            t[name] = to_lua(e[name])
        end
        return t
    end
    if e["@map"] then
        local t = { ["@map"] = e["@map"] }
        for k, v in pairs(e) do
            if k ~= "@map" then
                t[k] = to_lua(v)
            end
        end
        return t
    end
    if e["@list"] then
        local t = { ["@list"] = e["@list"] }
        for i, v in ipairs(e["@items"]) do
            t[i] = to_lua(v)
        end
        return t
    end
    if e["@binary"] then
        return { ["@binary"] = unhex(e["@binary"]) }
    end
    return { ["@long"] = e["@long"], ["@date"] = e["@date"] }
end

local function decode_file(path)
    local bytes = assert(helpers.read_file(path))
    local values, err = codec().hessian2_decode(bytes)
    return values, err, bytes
end

describe("Hessian 2 interop with Caucho Hessian (Java)", function()
    it("the Java peer writes the vectors this spec lists", function()
        local dir = java.vectors()
        local names = {}
        for line in (helpers.read_file(dir .. "/index.txt") or ""):gmatch("[^\n]+") do
            names[#names + 1] = line
        end
        assert.same(VECTORS, names)
    end)

    describe("Java writes, disco decodes:", function()
        for _, name in ipairs(VECTORS) do
            it(name, function()
                local expected, file = expected_of(name)
                local values, err = decode_file(file)
                assert(values, "hessian2_decode(" .. name .. ") failed: " .. tostring(err))
                assert.equal(#expected, values.n)
                for i = 1, #expected do
                    local d = differ(expected[i], values[i], name .. "[" .. i .. "]")
                    assert(d == nil, d)
                end
            end)
        end
    end)

    describe("disco encodes, Java reads back:", function()
        for _, name in ipairs(VECTORS) do
            it(name, function()
                local expected, _, json_file = expected_of(name)
                local values = {}
                for i = 1, #expected do
                    values[i] = to_lua(expected[i])
                end
                local bytes = codec().hessian2_encode(unpack(values, 1, #expected))
                assert.equal("string", type(bytes))
                local file = helpers.write_file(helpers.tmpdir() .. "/" .. name .. ".hessian", bytes)
                local status, out, err = java.run({ "check", file, json_file })
                assert(status == 0, "Java check of disco's " .. name .. " (status " .. tostring(status)
                       .. "):\n" .. out .. err)
                -- And disco reads its own encoding back to the same graph.
                local again, derr = core.hessian2_decode(bytes)
                assert(again, "hessian2_decode of disco's own " .. name .. ": " .. tostring(derr))
                for i = 1, #expected do
                    local d = differ(expected[i], again[i], name .. "[" .. i .. "]")
                    assert(d == nil, d)
                end
            end)
        end
    end)

    it("shares one table referenced twice as a Hessian back-reference Java resolves", function()
        local expected, _, json_file = expected_of("back_references")
        local info = to_lua(expected[1])
        -- One ServiceInfo table under two keys, one params table under
        -- two services, as in the Java graph.
        info.services["b:dubbo"] = info.services["a:dubbo"]
        info.services["c:dubbo"].params = info.services["a:dubbo"].params
        local bytes = codec().hessian2_encode(info)
        local file = helpers.write_file(helpers.tmpdir() .. "/shared.hessian", bytes)
        local status, out, err = java.run({ "check", file, json_file })
        assert(status == 0, "Java check of disco's shared graph:\n" .. out .. err)
        local again = assert(core.hessian2_decode(bytes))
        assert.equal(again[1].services["a:dubbo"], again[1].services["b:dubbo"])
    end)

    it("answers nil and an error, never raises, for every truncation of a Java vector", function()
        local _, file = expected_of("concurrent_map")
        local bytes = assert(helpers.read_file(file))
        local decode = codec().hessian2_decode
        for i = 0, #bytes - 1 do
            local ok, values, err = pcall(decode, bytes:sub(1, i))
            assert(ok, "hessian2_decode raised on a " .. i .. "-byte prefix: " .. tostring(values))
            -- A prefix that ends right after the class definitions holds no
            -- value yet: an empty result is as right as an error for it.
            assert((values == nil and type(err) == "string")
                   or (type(values) == "table" and values.n == 0),
                   "a " .. i .. "-byte prefix decoded to " .. short(values))
        end
    end)
end)
