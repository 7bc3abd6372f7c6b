-- The rockspec and the Makefile must build the same module from the same
-- sources, and the rockspec must install every Lua module of the runtime.
local helpers = require "spec.helpers"

local function load_rockspec()
    local env = {}
    local chunk = assert(loadfile("rockspec/disco-scm-1.rockspec"))
    setfenv(chunk, env)
    chunk()
    return env
end

local function sorted(list)
    local copy = {}
    for i, v in ipairs(list) do
        copy[i] = v
    end
    table.sort(copy)
    return copy
end

describe("rockspec/disco-scm-1.rockspec", function()
    local rockspec = load_rockspec()

    it("lists the same C sources as the Makefile", function()
        local pipe = assert(io.popen("make -s --no-print-directory print-module-sources"))
        local line = pipe:read("*a")
        pipe:close()
        local from_make = {}
        for src in line:gmatch("%S+") do
            from_make[#from_make + 1] = src
        end
        assert.is_true(#from_make > 0)
        assert.same(sorted(from_make), sorted(rockspec.build.modules["disco.core"].sources))
    end)

    it("installs every Lua module under lua/disco", function()
        local pipe = assert(io.popen("cd lua && find disco -name '*.lua' | sort"))
        local expected = {}
        for path in pipe:lines() do
            local module = path:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
            expected[module] = "lua/" .. path
        end
        pipe:close()
        local listed = {}
        for module, src in pairs(rockspec.build.modules) do
            if type(src) == "string" then
                listed[module] = src
            end
        end
        assert.same(expected, listed)
    end)

    it("declares libuv and ZooKeeper as external dependencies", function()
        assert.is_table(rockspec.external_dependencies.LIBUV)
        assert.is_table(rockspec.external_dependencies.ZOOKEEPER)
        assert.equals("builtin", rockspec.build.type)
    end)

    it("has the version the C header declares", function()
        local header = helpers.read_file("core/disco.h")
        local c_version = header:match('#define DISCO_VERSION_STRING "([^"]+)"')
        assert.equals(require("disco").VERSION, c_version)
        assert.equals("scm-1", rockspec.version)
    end)
end)
