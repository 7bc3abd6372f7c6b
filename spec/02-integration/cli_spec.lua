-- The `disco` host binary: subcommands, exit statuses, `disco run` with
-- errors in scripts and callbacks, and clean stops on signals.
local helpers = require "spec.helpers"

local function script(body)
    return helpers.write_file(helpers.tmpdir() .. "/script.lua", body)
end

describe("disco (host binary)", function()
    it("prints its version", function()
        local status, out = helpers.run_disco({ "version" })
        assert.equals(0, status)
        local lua_dir = assert(io.popen("pwd")):read("*l") .. "/lua"
        assert.equals(string.format("disco 0.1.0 (core ABI 1, %s, libuv %s, modules from build %s)\n",
                                    jit.version, require("disco.core").LIBUV_VERSION, lua_dir), out)
    end)

    it("lists the commands, and shows one command's help", function()
        local status, out = helpers.run_disco({ "help" })
        assert.equals(0, status)
        assert.matches("run%s+run a Lua script", out)
        assert.matches("version%s+print the versions", out)
        status, out = helpers.run_disco({ "help", "run" })
        assert.equals(0, status)
        assert.matches("usage: disco run SCRIPT.lua", out)
    end)

    it("exits 2 on usage errors", function()
        local status, _, err = helpers.run_disco({})
        assert.equals(2, status)
        assert.matches("usage: disco COMMAND", err)
        status, _, err = helpers.run_disco({ "frobnicate" })
        assert.equals(2, status)
        assert.matches("unknown command 'frobnicate'", err)
        status, _, err = helpers.run_disco({ "run" })
        assert.equals(2, status)
        assert.matches("missing the script", err)
        status, _, err = helpers.run_disco({ "run", "/nonexistent/x.lua" })
        assert.equals(2, status)
        assert.matches("cannot read '/nonexistent/x.lua'", err)
        status = helpers.run_disco({ "help", "nope" })
        assert.equals(2, status)
    end)

    it("ls: checks its arguments and reads a registry", function()
        local status, _, err = helpers.run_disco({ "ls" })
        assert.equals(2, status)
        assert.matches("%-%-registry URL is required", err)
        status, _, err = helpers.run_disco({ "ls", "--registry", "memory://x", "--bogus" })
        assert.equals(2, status)
        assert.matches("unknown option '%-%-bogus'", err)
        status, _, err = helpers.run_disco({ "ls", "--registry", "redis://x" })
        assert.equals(1, status)
        assert.matches("unknown registry scheme 'redis'", err)
        local out
        status, out = helpers.run_disco({ "ls", "--registry", "memory://x", "--json" })
        assert.equals(0, status)
        assert.equals("[]\n", out)
        status, out = helpers.run_disco({ "ls", "--registry", "memory://x", "shop", "--json" })
        assert.equals(0, status)
        assert.equals("[]\n", out)
    end)

    it("runs a script with the runtime and its arguments", function()
        local path = script([[
            local rt, a, b = ...
            print(type(rt.loop), a, b, arg[0] ~= nil, arg[1], #arg)
            rt:after(10, function() print("timer fired"); rt:stop(0) end)
        ]])
        local status, out = helpers.run_disco({ "run", path, "x", "y" })
        assert.equals(0, status)
        assert.equals("userdata\tx\ty\ttrue\tx\t2\ntimer fired\n", out)
    end)

    it("exits with the code the script stops with", function()
        local status = helpers.run_disco({ "run", script("local rt = ... rt:stop(7)") })
        assert.equals(7, status)
    end)

    it("exits 1 with the traceback when the script raises", function()
        local path = script("local function inner() error('script failed') end\ninner()\n")
        local status, _, err = helpers.run_disco({ "run", path })
        assert.equals(1, status)
        assert.matches("script failed", err)
        assert.matches("stack traceback", err)
        assert.matches("in function 'inner'", err)
    end)

    it("exits 1 on a syntax error", function()
        local status, _, err = helpers.run_disco({ "run", script("local x = = 1") })
        assert.equals(1, status)
        assert.matches("unexpected symbol", err)
    end)

    it("logs an error in a timer callback and keeps the other timers running", function()
        local path = script([[
            local rt = ...
            local ticks = 0
            rt:after(5, function() error("timer exploded") end, "exploding")
            rt:every(5, function()
                ticks = ticks + 1
                if ticks == 10 then
                    print("ticks " .. ticks)
                    rt:stop(0)
                end
            end, "steady")
        ]])
        local status, out, err = helpers.run_disco({ "run", path })
        assert.equals(0, status)
        assert.equals("ticks 10\n", out)
        assert.matches("ERROR %[exploding%] callback error: .*timer exploded", err)
        assert.matches("stack traceback", err)
    end)

    it("runs from an installed prefix, away from the checkout", function()
        local prefix = helpers.tmpdir() .. "/prefix"
        local q = helpers.shell_quote
        local log = helpers.tmpdir() .. "/install.log"
        local status = os.execute("make -s install PREFIX=" .. q(prefix) .. " BUILD="
                                  .. q(os.getenv("BUILD") or "build") .. " >" .. q(log) .. " 2>&1")
        assert.is_true(status == 0 or status == true, helpers.read_file(log))
        local dir = helpers.tmpdir()
        helpers.write_file(dir .. "/s.lua", "local rt = ... rt:after(1, function() "
                           .. "print(package.loaded['disco.host'].tree) rt:stop(0) end)")
        local out = dir .. "/out"
        status = os.execute("cd / && env -u LUA_PATH -u LUA_CPATH " .. q(prefix .. "/bin/disco")
                            .. " run " .. q(dir .. "/s.lua") .. " >" .. q(out) .. " 2>&1")
        assert.is_true(status == 0 or status == true, helpers.read_file(out))
        assert.equals("installed\n", helpers.read_file(out))
        -- A moved prefix still finds its modules (they sit beside bin/).
        local moved = helpers.tmpdir() .. "/moved"
        os.execute("mv " .. q(prefix) .. " " .. q(moved))
        status = os.execute("cd / && env -u LUA_PATH -u LUA_CPATH " .. q(moved .. "/bin/disco")
                            .. " version >" .. q(out) .. " 2>&1")
        assert.is_true(status == 0 or status == true, helpers.read_file(out))
        assert.matches("modules from installed " .. moved:gsub("%p", "%%%0")
                       .. "/share/lua/5.1", helpers.read_file(out))
    end)

    it("runs examples/reload.lua: a live reload through the file watch", function()
        local status, out = helpers.run_disco({ "run", "examples/reload.lua" })
        assert.equals(0, status, out)
        assert.matches("reloaded listener/greeter: 1.0.0 %-> 1.1.0, without a call", out)
        assert.matches("reload: OK", out)
    end)

    it("reloads the script's plugins on SIGHUP", function()
        local dir = helpers.tmpdir()
        local plugin_file = dir .. "/listener/hup.lua"
        os.execute("mkdir -p " .. helpers.shell_quote(dir .. "/listener"))
        local plugin_source = [[
            return { name = "hup", version = "%s", kind = "listener", init = function() end }
        ]]
        helpers.write_file(plugin_file, plugin_source:format("1.0.0"))
        local ready = dir .. "/ready"
        local path = script(string.format([[
            local rt = ...
            rt.plugins.watch = false -- only SIGHUP may trigger the reload
            rt.plugins:add_path(%q)
            assert(rt:load_plugin("listener/hup"))
            rt:on("PluginReloaded", function(e) print("reloaded " .. e.version); rt:stop(0) end)
            rt:every(1000, function() end)
            rt:after(20000, function() print("no reload"); rt:stop(1) end)
            local f = assert(io.open(%q, "w")); f:write("1"); f:close()
        ]], dir, ready))
        local cmd = string.format(
            "%s run %s >%s/out 2>%s/err & pid=$!; "
            .. "i=0; while [ ! -f %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
            .. "printf '%%s' %s > %s; kill -HUP $pid; wait $pid; echo $?",
            helpers.shell_quote(helpers.disco_bin), helpers.shell_quote(path), dir, dir,
            helpers.shell_quote(ready),
            helpers.shell_quote(plugin_source:format("2.0.0")), helpers.shell_quote(plugin_file))
        local pipe = assert(io.popen("timeout -s KILL 30 sh -c " .. helpers.shell_quote(cmd)))
        local status = tonumber(pipe:read("*l"))
        pipe:close()
        assert.equals(0, status, helpers.read_file(dir .. "/err"))
        assert.equals("reloaded 2.0.0\n", helpers.read_file(dir .. "/out"))
    end)

    for _, signame in ipairs({ "INT", "TERM" }) do
        it("stops cleanly with status 0 on SIG" .. signame, function()
            local dir = helpers.tmpdir()
            local ready = dir .. "/ready"
            local path = script(string.format([[
                local rt = ...
                rt:every(1000, function() end)  -- would run forever
                local f = assert(io.open(%q, "w")); f:write("1"); f:close()
            ]], ready))
            local cmd = string.format(
                "%s run %s >%s/out 2>%s/err & pid=$!; "
                .. "i=0; while [ ! -f %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
                .. "kill -%s $pid; wait $pid; echo $?",
                helpers.shell_quote(helpers.disco_bin), helpers.shell_quote(path),
                dir, dir, helpers.shell_quote(ready), signame)
            local pipe = assert(io.popen("timeout -s KILL 30 sh -c " .. helpers.shell_quote(cmd)))
            local status = tonumber(pipe:read("*l"))
            pipe:close()
            assert.equals(0, status)
            assert.matches("SIG" .. signame .. " received, stopping",
                           helpers.read_file(dir .. "/err"))
        end)
    end
end)
