-- `luarocks make` builds disco.core from the rockspec into a temporary tree,
-- and a plain luajit loads the runtime from that tree.
local helpers = require "spec.helpers"

describe("luarocks make", function()
    it("builds the rock into a tree that luajit can require disco from", function()
        local tree = helpers.tmpdir() .. "/tree"
        local src = helpers.tmpdir()
        local log = helpers.tmpdir() .. "/luarocks.log"
        local q = helpers.shell_quote
        -- The builtin backend compiles next to the sources: build from a
        -- copy so that the checkout stays clean.
        assert(os.execute("cp -r core bindings lua plugins docs rockspec " .. q(src)) == 0)
        -- LD_PRELOAD (set under `make asan`) must not reach the compiler run.
        local status = os.execute(table.concat({
            "cd", q(src), "&& env -u LD_PRELOAD luarocks --lua-version=5.1 make --tree", q(tree),
            "rockspec/disco-scm-1.rockspec LUA_INCDIR=/usr/include/luajit-2.1",
            ">" .. q(log), "2>&1",
        }, " "))
        assert.is_true(status == 0 or status == true, helpers.read_file(log))

        local out = helpers.tmpdir() .. "/out"
        local script = "local d = require 'disco'; local rt = d.runtime(); "
            .. "local n = 0; rt:every(1, function() n = n + 1; if n == 3 then rt:stop() end end); "
            .. "rt:run(); rt:close(); "
            .. "print(d.VERSION, n, package.loaded['disco.core'].ABI_VERSION)"
        -- Only the tree's paths: nothing may come from the source checkout.
        local cmd = table.concat({
            "cd / &&",
            "env -u LD_PRELOAD",
            "LUA_PATH=" .. q(tree .. "/share/lua/5.1/?.lua;" .. tree .. "/share/lua/5.1/?/init.lua"),
            "LUA_CPATH=" .. q(tree .. "/lib/lua/5.1/?.so"),
            "luajit -e", q(script), ">" .. q(out), "2>&1",
        }, " ")
        status = os.execute(cmd)
        local output = helpers.read_file(out)
        assert.is_true(status == 0 or status == true, output)
        assert.equals("0.1.0\t3\t1\n", output)
    end)
end)
