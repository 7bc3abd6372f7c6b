-- `disco provide`, `resolve` and `watch`: usage errors and a registry that
-- has nothing (the runs against a real ZooKeeper are in flows_zookeeper_spec),
-- and the option parser they share.
local helpers = require "spec.helpers"
local options = require "disco.cli.options"

describe("disco provide, resolve and watch", function()
    local function usage_error(args, message)
        local status, out, err = helpers.run_disco(args)
        assert.equal(2, status, err)
        assert.equal("", out)
        assert.matches(message, err, 1, true)
        assert.matches("usage: disco " .. args[1], err, 1, true)
    end

    it("refuses incomplete or malformed command lines with status 2", function()
        usage_error({ "resolve", "dubbo:com.acme.Cart" }, "--registry URL is required")
        usage_error({ "resolve", "--registry", "memory://x" }, "expected exactly one SERVICE_ID")
        usage_error({ "resolve", "--registry", "memory://x", "com.acme.Cart" },
                    "expected protocol:interface[:version][:group], got 'com.acme.Cart'")
        usage_error({ "watch", "--registry", "memory://x", "a", "b" }, "expected exactly one SERVICE_ID")
        usage_error({ "watch", "--bogus", "1" }, "unknown option '--bogus'")
        usage_error({ "provide", "--registry", "memory://x", "--app", "shop", "--port", "20880" },
                    "at least one --service is required")
        usage_error({ "provide", "--registry", "memory://x", "--app", "shop", "--port", "70000",
                      "--service", "com.acme.Cart" }, "--port needs a port from 1 to 65535")
        usage_error({ "provide", "--registry", "memory://x", "--app", "shop", "--port", "1",
                      "--service", "com.acme.Cart", "--storage", "disk" }, "--storage must be remote or local")
    end)

    it("resolves nothing on an empty registry: status 2, no output", function()
        local status, out, err = helpers.run_disco({ "resolve", "--registry", "memory://empty",
                                                     "dubbo:com.acme.Cart:1.0.0" })
        assert.equal(2, status, err)
        assert.equal("", out)
    end)

    it("fails with status 1 on a registry URL it cannot use", function()
        local status, _, err = helpers.run_disco({ "resolve", "--registry", "nope://x", "dubbo:a.B" })
        assert.equal(1, status)
        assert.matches("disco resolve:", err, 1, true)
    end)

    it("runs examples/introspection.lua: publish, resolve, a new revision, stop", function()
        local port = require("disco.testing.ports").pick_port()
        local status, out, err = helpers.run_disco({ "run", "examples/introspection.lua", tostring(port) })
        assert.equal(0, status, err)
        assert.matches("dubbo:com.acme.Cart:1.0.0: 1 address(es) (+1 -0)\n"
                       .. "  dubbo://127.0.0.1:" .. port .. "/com.acme.Cart?", out, 1, true)
        -- The service exported later is mapped and found by the live subscription.
        assert.matches("dubbo:com.acme.Payment: 1 address(es) (+1 -0)", out, 1, true)
        assert.matches("dubbo:com.acme.Cart:1.0.0: 0 address(es) (+0 -1)", out, 1, true)
        assert.matches("metadata fetches: 2\n", out, 1, true)
    end)

    it("lists the new commands in help", function()
        local status, out = helpers.run_disco({ "help" })
        assert.equal(0, status)
        for _, name in ipairs({ "provide", "resolve", "watch", "revision" }) do
            assert.matches("\n  " .. name .. " ", out, 1, true)
        end
    end)
end)

describe("disco.cli.options", function()
    local SPEC = { registry = "string", json = "flag", timeout = "ms", service = "list", port = "port",
                   cache_file = "string" }

    it("parses values, flags, lists, numbers and positionals", function()
        local opts = assert(options.parse({ "--registry", "zk://h", "--json", "x", "--service", "a",
                                            "--service", "b", "--timeout", "250", "--cache-file", "/f",
                                            "y" }, SPEC))
        assert.equal("zk://h", opts.registry)
        assert.is_true(opts.json)
        assert.same({ "a", "b" }, opts.service)
        assert.equal(250, opts.timeout)
        assert.equal("/f", opts.cache_file)
        assert.same({ "x", "y" }, { opts[1], opts[2] })
    end)

    it("explains what is wrong", function()
        assert.same({ nil, "unknown option '--nope'" }, { options.parse({ "--nope" }, SPEC) })
        assert.same({ nil, "--registry needs a value" }, { options.parse({ "--registry" }, SPEC) })
        assert.same({ nil, "--timeout needs a positive number of milliseconds" },
                    { options.parse({ "--timeout", "-1" }, SPEC) })
        assert.same({ nil, "--port needs a port from 1 to 65535" }, { options.parse({ "--port", "0" }, SPEC) })
    end)
end)
