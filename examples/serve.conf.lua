-- A configuration for `disco serve` (docs/serve.md describes every key):
--
--   build/disco serve examples/serve.conf.lua
--   curl -s http://127.0.0.1:9901/readyz
--
-- The file is Lua and returns a table; unknown keys are errors.
return {
    -- memory://NAME runs without a server; zookeeper://host:port,...[/chroot]?root=&session_timeout=
    registry = "zookeeper://127.0.0.1:2181?session_timeout=30000",

    -- The admin endpoint: loopback unless you say otherwise; port 0 picks one
    -- (printed on the first line of standard output).
    admin = { host = "127.0.0.1", port = 9901 },

    -- Service IDs to keep resolved: a string, or a table with options.
    subscriptions = {
        "dubbo:com.acme.Cart:1.0.0",
        { id = "dubbo:com.acme.Payment", empty_protection = true, debounce_ms = 100,
          provided_by = { "billing" } },
    },

    -- The consumer (see rt:consumer in docs/lua-api.md).
    consumer = {
        validation = { rules = { "validation/recent_call", "validation/registration_identity",
                                 "health/dubbo_probe" } },
        cache_file = "/var/lib/disco/revisions.cache",
        snapshot_dir = "/var/lib/disco/snapshots",
        snapshot_max_age_ms = 86400000,
        snapshot_wait_ms = 3000,
    },

    -- An application this process publishes, as `disco provide` does.
    provider = {
        app = "cart-sidecar",
        host = "127.0.0.1",
        port = 20880,
        storage = "local",
        services = { "com.acme.Inventory:1.0.0", { interface = "com.acme.Stock", methods = { "get" } } },
    },

    -- Plugins: extra directories (searched before the shipped ones) and the
    -- plugins to load at start; changed files are reloaded by themselves.
    plugins = {
        paths = { "/etc/disco/plugins" },
        load = { "listener/log_changes" },
        watch = true,
    },

    runtime = { log_level = "info" },

    -- Applications with a label of their own in /metrics; the rest are
    -- summed under app="_other_".
    metrics = { max_apps = 1000 },
}
