-- disco.resty.upstream_file (the `server` lines of the rendered-upstream
-- mode), the upstream_files options, and disco.resty.upstream_keeper
-- outside nginx (a stub `ngx`, a fake dict, the reload replaced by a
-- recorder).
local helpers = require "spec.helpers"
local options = require "disco.resty.options"
local upstream_file = require "disco.resty.upstream_file"
local fake_dict = require("spec.support.fake_shdict").new

local SID = "rest:com.acme.Hello"

local function node(host, port, weight)
    return { host = host, port = port, weight = weight or 100, metadata = {} }
end

-- The server lines of a text (the comments left out).
local function servers(text)
    local out = {}
    for line in text:gmatch("[^\n]+") do
        if not line:find("^#") then
            out[#out + 1] = line
        end
    end
    return out
end

describe("disco.resty.upstream_file.render", function()
    it("writes one sorted server line per address, with a header naming the subscription", function()
        local text, skipped = upstream_file.render({ node("10.0.0.2", 80), node("10.0.0.1", 8080),
                                                     node("10.0.0.1", 80) }, { sid = SID })
        assert.same({}, skipped)
        assert.same({ "server 10.0.0.1:80;", "server 10.0.0.1:8080;", "server 10.0.0.2:80;" },
                    servers(text))
        assert.matches("^# Written by disco %(disco.resty%): the providers of " .. SID:gsub("%p", "%%%0"),
                       text)
        assert.equal("\n", text:sub(-1))
    end)

    it("renders the same set as the same bytes, whatever the order and repeats", function()
        local a = upstream_file.render({ node("10.0.0.1", 80), node("10.0.0.2", 80) }, { sid = SID })
        local b = upstream_file.render({ node("10.0.0.2", 80), node("10.0.0.1", 80),
                                         node("10.0.0.2", 80) }, { sid = SID })
        assert.equal(a, b)
        assert.equal(2, #servers(b))
    end)

    it("puts IPv6 hosts in brackets", function()
        local text = upstream_file.render({ node("::1", 9000), node("fe80::1:2", 80) })
        assert.same({ "server [::1]:9000;", "server [fe80::1:2]:80;" }, servers(text))
    end)

    it("refuses hosts and ports that could inject configuration, and says why", function()
        local bad = {
            node("10.0.0.1; include /etc/passwd", 80), node("a b", 80), node("x{", 80),
            node("evil\nserver 1.2.3.4:80", 80), node("h}", 80), node("::1;", 80), node("", 80),
            node("#x", 80), node("10.0.0.3", 0), node("10.0.0.3", 70000), node("10.0.0.3", 1.5),
            { host = "10.0.0.4", port = "80", weight = 100 }, node("10.0.0.5", 80, -1), "junk",
        }
        local text, skipped = upstream_file.render(bad, { sid = SID })
        assert.equal(#bad, #skipped)
        for _, why in ipairs(skipped) do
            assert.is_nil(why:find("\n", 1, true), why)
        end
        assert.matches("node 1 %(10.0.0.1; include /etc/passwd:80%): the host has characters", skipped[1])
        assert.matches("node 4 %(evil%?server", skipped[4])
        -- Nothing valid left: the placeholder of an empty list.
        assert.same({ upstream_file.EMPTY_LINE }, servers(text))
        assert.is_nil(text:find("passwd", 1, true))
        assert.is_nil(text:find("1.2.3.4", 1, true))
    end)

    it("keeps the valid addresses next to refused ones", function()
        local text, skipped = upstream_file.render({ node("10.0.0.1", 80), node("a;b", 80) })
        assert.equal(1, #skipped)
        assert.same({ "server 10.0.0.1:80;" }, servers(text))
    end)

    it("renders an empty list as one server marked down, with a comment", function()
        local text = upstream_file.render({}, { sid = SID })
        assert.same({ "server 127.0.0.1:1 down;" }, servers(text))
        assert.matches("# No provider is listed", text, 1, true)
    end)

    it("writes weights only when they differ, the heaviest of repeats, weight 0 as backup", function()
        assert.same({ "server 10.0.0.1:80;", "server 10.0.0.2:80;" },
                    servers(upstream_file.render({ node("10.0.0.1", 80, 7), node("10.0.0.2", 80, 7) })))
        assert.same({ "server 10.0.0.1:80 weight=100;", "server 10.0.0.2:80 weight=50;",
                      "server 10.0.0.3:80 backup;" },
                    servers(upstream_file.render({ node("10.0.0.2", 80, 50), node("10.0.0.3", 80, 0),
                                                   node("10.0.0.1", 80, 100) })))
        local a = upstream_file.render({ node("10.0.0.1", 80, 10), node("10.0.0.1", 80, 30),
                                         node("10.0.0.2", 80, 20) })
        local b = upstream_file.render({ node("10.0.0.2", 80, 20), node("10.0.0.1", 80, 30),
                                         node("10.0.0.1", 80, 10) })
        assert.equal(a, b)
        assert.same({ "server 10.0.0.1:80 weight=30;", "server 10.0.0.2:80 weight=20;" }, servers(a))
        -- Every node at weight 0: equal, none a backup.
        assert.same({ "server 10.0.0.1:80;", "server 10.0.0.2:80;" },
                    servers(upstream_file.render({ node("10.0.0.1", 80, 0), node("10.0.0.2", 80, 0) })))
    end)

    it("adds max_fails and fail_timeout to every line when set", function()
        local text = upstream_file.render({ node("10.0.0.1", 80) }, { max_fails = 3, fail_timeout = 5 })
        assert.same({ "server 10.0.0.1:80 max_fails=3 fail_timeout=5s;" }, servers(text))
        assert.is_nil(upstream_file.check_params({ max_fails = -1 }))
        assert.is_nil(upstream_file.check_params({ fail_timeout = "5s" }))
        assert.is_true(upstream_file.check_params({ max_fails = 0, fail_timeout = 10 }))
    end)
end)

describe("disco.resty.upstream_file.write_if_changed", function()
    local dir
    before_each(function()
        dir = helpers.tmpdir()
    end)

    local function listing()
        local p = io.popen("ls -A " .. dir)
        local out = p:read("*a")
        p:close()
        return out
    end

    it("writes a new file, then reports an unchanged text as not written", function()
        local path = dir .. "/hello.servers"
        assert.is_true(upstream_file.write_if_changed(path, "a\n"))
        assert.equal("a\n", helpers.read_file(path))
        assert.is_false(upstream_file.write_if_changed(path, "a\n"))
        assert.is_true(upstream_file.write_if_changed(path, "b\n"))
        assert.equal("b\n", helpers.read_file(path))
        -- The temporary file was renamed: nothing else is left.
        assert.equal("hello.servers\n", listing())
    end)

    it("replaces the file by a rename (a reader holding the old one keeps reading it whole)", function()
        local path = dir .. "/hello.servers"
        assert.is_true(upstream_file.write_if_changed(path, "old text\n"))
        local reader = assert(io.open(path, "rb"))
        assert.is_true(upstream_file.write_if_changed(path, "new text\n"))
        assert.equal("old text\n", reader:read("*a"))
        reader:close()
        assert.equal("new text\n", helpers.read_file(path))
    end)

    it("fails with ENOENT for a missing directory, leaving nothing", function()
        local changed, err, code = upstream_file.write_if_changed(dir .. "/no/such.servers", "x")
        assert.is_nil(changed)
        assert.equal("ENOENT", code)
        assert.matches("^ENOENT: cannot create .*the directory of", err)
        assert.equal("", listing())
    end)

    it("fails with EACCES when the directory is not writable, keeping the old file", function()
        local id = io.popen("id -u")
        local uid = id:read("*l")
        id:close()
        if uid == "0" then
            pending("root writes anywhere")
            return
        end
        local path = dir .. "/hello.servers"
        assert.is_true(upstream_file.write_if_changed(path, "kept\n"))
        os.execute("chmod 555 " .. dir)
        local changed, err, code = upstream_file.write_if_changed(path, "new\n")
        os.execute("chmod 755 " .. dir)
        assert.is_nil(changed)
        assert.equal("EACCES", code, err)
        assert.equal("kept\n", helpers.read_file(path))
    end)

    it("refuses a path or a text that is not a string", function()
        local _, _, code = upstream_file.write_if_changed(nil, "x")
        assert.equal("EINVAL", code)
        _, _, code = upstream_file.write_if_changed(dir .. "/x", nil)
        assert.equal("EINVAL", code)
    end)
end)

describe("disco.resty.options: upstream_files", function()
    local base = { registry = "zookeeper://127.0.0.1:2181", subscriptions = { SID } }
    local function with(extra)
        local c = {}
        for k, v in pairs(base) do
            c[k] = v
        end
        for k, v in pairs(extra) do
            c[k] = v
        end
        return c
    end

    it("takes a path or a table, keyed by the canonical service ID, and a reload interval", function()
        local c = options.check(with({ upstream_files = { [SID] = "/tmp/hello.servers" } }))
        assert.same({ [SID] = { path = "/tmp/hello.servers" } }, c.upstream_files)
        assert.equal(1, c.reload_interval)
        c = options.check(with({ reload_interval = 0.5, upstream_files = {
            [SID] = { path = "/tmp/h.servers", max_fails = 2, fail_timeout = 3 } } }))
        assert.same({ path = "/tmp/h.servers", max_fails = 2, fail_timeout = 3 }, c.upstream_files[SID])
        assert.equal(0.5, c.reload_interval)
        assert.same({}, options.check(base).upstream_files)
    end)

    it("refuses what nginx or the owner could not use, naming it", function()
        local cases = {
            { { upstream_files = { ["rest:com.acme.Other"] = "/tmp/x" } }, "not one of 'subscriptions'" },
            { { upstream_files = { [SID] = "hello.servers" } }, "the path must be absolute" },
            { { upstream_files = { [SID] = 42 } }, "must be a path or" },
            { { upstream_files = { [SID] = { path = "/tmp/x", weight = 1 } } }, "unknown key 'weight'" },
            { { upstream_files = { [SID] = { path = "/tmp/x", max_fails = -1 } } }, "'max_fails' must be" },
            { { upstream_files = { "/tmp/x" } }, "keys must be service IDs" },
            { { upstream_files = { ["nonsense"] = "/tmp/x" } }, "upstream_files['nonsense']" },
            { { reload_interval = 0 }, "option 'reload_interval' must be a positive number up to 60" },
            { { reload_interval = 1000 }, "up to 60" },
        }
        for _, case in ipairs(cases) do
            local ok, err = pcall(options.check, with(case[1]))
            assert.is_false(ok)
            assert.matches(case[2], err, 1, true)
        end
    end)
end)

describe("disco.resty.upstream_keeper", function()
    local keeper_mod, logged, dir
    setup(function()
        _G.ngx = {
            ERR = 4, WARN = 5, NOTICE = 6, INFO = 7,
            log = function(level, ...)
                if level <= 5 then
                    logged[#logged + 1] = table.concat({ ... })
                end
            end,
            worker = { pid = function() return 4242 end },
        }
        package.loaded["disco.resty.upstream_keeper"] = nil
        keeper_mod = require "disco.resty.upstream_keeper"
    end)
    teardown(function()
        _G.ngx = nil
        package.loaded["disco.resty.upstream_keeper"] = nil
    end)

    -- A keeper for one file whose reloads are recorded in `hups`; `loaded`
    -- is what the nginx generation read; `current.v` whether it owns.
    local function new_keeper(loaded)
        logged = {}
        dir = helpers.tmpdir()
        local conf = options.check({ registry = "zookeeper://127.0.0.1:2181", subscriptions = { SID },
                                     upstream_files = { [SID] = dir .. "/hello.servers" } })
        local dict = fake_dict(1024 * 1024)
        local current = { v = true }
        local k = keeper_mod.new(conf, dict, loaded and { [dir .. "/hello.servers"] = loaded } or {},
                                 function() return current.v end)
        local hups = {}
        k.find_master = function() return 777 end
        k.hup = function(pid)
            hups[#hups + 1] = pid
            return true
        end
        return k, dict, hups, current, conf
    end

    it("writes the file and sends one HUP after the interval, for a burst of changes", function()
        local k, dict, hups, _, conf = new_keeper("")
        k:list(SID, { node("10.0.0.1", 80) }, 0)
        k:list(SID, { node("10.0.0.1", 80), node("10.0.0.2", 80) }, 100)
        k:step(500, 1000)
        assert.same({}, hups)
        k:step(1000, 1000)
        assert.same({ 777 }, hups)
        k:step(5000, 1000)
        assert.same({ 777 }, hups)
        assert.same({ "server 10.0.0.1:80;", "server 10.0.0.2:80;" },
                    servers(helpers.read_file(dir .. "/hello.servers")))
        local st = keeper_mod.status(dict, conf)
        assert.same({ renders = 2, writes = 2, reloads = 1, failures = 0,
                      files = { [SID] = dir .. "/hello.servers" } }, st)
    end)

    it("sends nothing when the text is what this nginx generation loaded (no reload loop)", function()
        local text = upstream_file.render({ node("10.0.0.1", 80) }, { sid = SID })
        local k, dict, hups = new_keeper(text)
        assert.is_true(upstream_file.write_if_changed(dir .. "/hello.servers", text))
        k:list(SID, { node("10.0.0.1", 80) }, 0)
        k:step(10000, 1000)
        assert.same({}, hups)
        assert.equal(0, dict:get("c/upstream_writes"))
    end)

    it("reloads when the file already holds the text but nginx loaded another", function()
        -- The previous owner wrote it after the reload that started this
        -- generation had read the configuration.
        local k, _, hups = new_keeper("old\n")
        local text = upstream_file.render({ node("10.0.0.1", 80) }, { sid = SID })
        assert.is_true(upstream_file.write_if_changed(dir .. "/hello.servers", text))
        k:list(SID, { node("10.0.0.1", 80) }, 0)
        k:step(1000, 1000)
        assert.same({ 777 }, hups)
    end)

    it("writes nothing and sends nothing once superseded", function()
        local k, _, hups, current = new_keeper("")
        k:list(SID, { node("10.0.0.1", 80) }, 0)
        current.v = false
        k:step(1000, 1000)
        assert.same({}, hups)
        k:list(SID, { node("10.0.0.9", 80) }, 2000)
        assert.is_nil(helpers.read_file(dir .. "/hello.servers"):find("10.0.0.9", 1, true))
    end)

    it("records a failed write and retries it", function()
        local k, dict, hups = new_keeper("")
        os.execute("rmdir " .. dir)
        k:list(SID, { node("10.0.0.1", 80) }, 0)
        assert.equal(1, dict:get("c/upstream_failures"))
        assert.matches("ENOENT", dict:get("upstream/last_error"), 1, true)
        k:step(1000, 1000)
        assert.same({}, hups)
        os.execute("mkdir -p " .. dir)
        k:step(2000, 1000)
        assert.is_truthy(helpers.read_file(dir .. "/hello.servers"))
        k:step(3000, 1000)
        assert.same({ 777 }, hups)
    end)

    it("never signals when no master is found, and says why", function()
        local k, dict, hups = new_keeper("")
        k.find_master = function() return nil, "this process is a single" end
        k:list(SID, { node("10.0.0.1", 80) }, 0)
        k:step(1000, 1000)
        assert.same({}, hups)
        assert.matches("no reload for the upstream files: this process is a single",
                       dict:get("upstream/last_error"), 1, true)
    end)

    it("finds no master outside nginx", function()
        local pid, why = keeper_mod.master_pid()
        assert.is_nil(pid)
        assert.is_string(why)
    end)
end)
