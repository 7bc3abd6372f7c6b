-- /metrics of `disco serve`: the Prometheus text writer, the page built
-- from a daemon snapshot (label cap included), and the text-format checker
-- the specs read pages with, which must refuse what Prometheus refuses.
local metrics = require "disco.serve.metrics"
local prometheus = require "disco.serve.prometheus"
local prom = require "spec.support.prometheus"

describe("the Prometheus text-format checker", function()
    local function refuses(text, message)
        local page, err = prom.parse(text)
        assert.is_nil(page, "accepted: " .. text)
        assert.matches(message, err, 1, true)
    end

    it("accepts a well-formed page and reads its values back", function()
        local page = assert(prom.parse(table.concat({
            "# HELP a_total Things, with a \\\\ and a \\n.",
            "# TYPE a_total counter",
            'a_total{k="x \\"q\\" \\\\ \\n",z="1"} 3',
            "a_total 4",
            "# TYPE b gauge",
            "b NaN",
            "b{x=\"\"} -1.5e3",
        }, "\n") .. "\n"))
        assert.equal("counter", prom.type_of(page, "a_total"))
        assert.equal(3, prom.value(page, "a_total", { k = 'x "q" \\ \n', z = "1" }))
        assert.equal(4, prom.value(page, "a_total"))
        assert.equal(-1500, prom.value(page, "b", { x = "" }))
        assert.is_nil(prom.value(page, "a_total", { k = "other" }))
    end)

    it("refuses what the format does not allow", function()
        refuses("a 1\n", "sample of a before its TYPE")
        refuses("# TYPE a gauge\na 1\na 2\n", "duplicate series a{}")
        refuses('# TYPE a gauge\na{x="1",y="2"} 1\na{y="2",x="1"} 1\n', "duplicate series")
        refuses('# TYPE a gauge\na{x="\\t"} 1\n', "invalid escape")
        refuses('# TYPE a gauge\na{x="1} 1\n', "unterminated value")
        refuses('# TYPE a gauge\na{1x="1"} 1\n', "malformed label name")
        refuses('# TYPE a gauge\na{__x="1"} 1\n', "reserved label name")
        refuses('# TYPE a gauge\na{x="1",x="2"} 1\n', "given twice")
        refuses("# TYPE a gauge\na one\n", "invalid value")
        refuses("# TYPE a gauge\na  1\n", "expected one space and a value")
        refuses("# HELP a bad \\t escape\n", "invalid escape in HELP")
        refuses("# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n", "not in one group")
        refuses("# TYPE a gauge\na 1\n# TYPE a gauge\n", "second TYPE for a")
        refuses("# TYPE a gauge\na 1\n# TYPE b gauge\n# HELP a late\n", "after the samples of a ended")
        refuses("# TYPE 1a gauge\n", "invalid metric name")
        refuses("# TYPE a widget\n", "unknown type widget")
        refuses("# just a comment\n", "neither # HELP nor # TYPE")
        refuses("# TYPE a gauge\na 1", "does not end with a newline")
        refuses("# TYPE a gauge\n\na 1\n", "empty line")
    end)
end)

describe("disco.serve.prometheus", function()
    it("escapes label values and help text, and orders labels by name", function()
        local page = prometheus.new()
        page:counter("x_total", "back\\slash and\nnewline", {
            { labels = { b = 'say "hi"', a = "c:\\dir\nnext" }, value = 2 },
        })
        local text = page:render()
        assert.equal('# HELP x_total back\\\\slash and\\nnewline\n# TYPE x_total counter\n'
                     .. 'x_total{a="c:\\\\dir\\nnext",b="say \\"hi\\""} 2\n', text)
        local parsed = assert(prom.parse(text))
        assert.equal(2, prom.value(parsed, "x_total", { a = "c:\\dir\nnext", b = 'say "hi"' }))
    end)

    it("writes values as Prometheus reads them", function()
        assert.equal("3", prometheus.format_value(3))
        assert.equal("0.25", prometheus.format_value(0.25))
        assert.equal("1795274560.639", prometheus.format_value(1795274560.639))
        assert.equal("NaN", prometheus.format_value(0 / 0))
        assert.equal("+Inf", prometheus.format_value(math.huge))
        assert.equal("-Inf", prometheus.format_value(-math.huge))
        assert.equal("1", prometheus.format_value(true))
    end)

    it("refuses invalid names and duplicate series as programming errors", function()
        local page = prometheus.new()
        assert.has_error(function() page:gauge("bad-name", "h", 1) end, "invalid metric name 'bad-name'")
        assert.has_error(function()
            page:gauge("ok", "h", { { labels = { ["bad-label"] = "x" }, value = 1 } })
        end)
        assert.has_error(function()
            page:gauge("dup", "h", { { labels = { a = "1" }, value = 1 }, { labels = { a = "1" }, value = 2 } })
        end)
        page:gauge("once", "h", 1)
        assert.has_error(function() page:gauge("once", "h", 1) end, "metric once is on the page already")
    end)
end)

describe("disco.serve.metrics", function()
    local snapshot = {
        start_time_ms = 1700000000000,
        registry = { state = "connected", generation = 2, connects = 3, disconnects = 1, expiries = 1 },
        events = { ServiceInstancesChanged = 5, PluginReloaded = 2 },
        apps = { shop = { instances = 2, revisions = 1 }, ['we"ird\\app'] = { instances = 1, revisions = 1 } },
        cache = { hits = 7, misses = 2, fetches = 2, failures = 1, evictions = 0, entries = 1, bytes = 397,
                  fetch_calls = 3, fetch_errors = 1, invalid_metadata = 0 },
        validation = { removed = 4, removed_by = { ["health/dubbo_probe"] = 3, end_of_chain = 1 },
                       kept = { ["validation/recent_call"] = 2 }, deferred = 6, errors = 0,
                       kept_now = 1 },
        plugins = { reloaded = 2, failed = 1, running = 7 },
        subscriptions = {
            { id = "dubbo:com.acme.Cart:1.0.0", addresses = 2, ready = true },
            { id = "dubbo:com.acme.Pay", addresses = 1, ready = true, stale = true, age_ms = 1500 },
        },
        provider = { registered = true },
        admin = { [200] = 4, [404] = 1 },
        max_apps = 1000,
    }

    it("renders every family as valid text with the snapshot's values", function()
        local page = assert(prom.parse(metrics.render(snapshot)))
        assert.equal(1, prom.value(page, "disco_registry_session_up"))
        assert.equal(1, prom.value(page, "disco_registry_session_state", { state = "connected" }))
        assert.equal(0, prom.value(page, "disco_registry_session_state", { state = "expired" }))
        assert.equal(2, prom.value(page, "disco_registry_reconnects_total"))
        assert.equal(1, prom.value(page, "disco_registry_session_expiries_total"))
        assert.equal("counter", prom.type_of(page, "disco_registry_reconnects_total"))
        assert.equal(5, prom.value(page, "disco_events_total", { type = "ServiceInstancesChanged" }))
        assert.equal(2, prom.value(page, "disco_app_instances", { app = "shop" }))
        assert.equal(1, prom.value(page, "disco_app_instances", { app = 'we"ird\\app' }))
        assert.equal(1, prom.value(page, "disco_app_revisions", { app = "shop" }))
        assert.equal(7, prom.value(page, "disco_revision_cache_hits_total"))
        assert.equal(1, prom.value(page, "disco_revision_cache_failures_total"))
        assert.equal(397, prom.value(page, "disco_revision_cache_bytes"))
        assert.equal("gauge", prom.type_of(page, "disco_revision_cache_bytes"))
        assert.equal(2, prom.value(page, "disco_validation_kept_total", { rule = "validation/recent_call" }))
        assert.equal(3, prom.value(page, "disco_validation_removed_total", { rule = "health/dubbo_probe" }))
        assert.equal(1, prom.value(page, "disco_validation_removed_total", { rule = "end_of_chain" }))
        assert.equal(2, prom.value(page, "disco_plugin_reloads_total", { result = "success" }))
        assert.equal(1, prom.value(page, "disco_plugin_reloads_total", { result = "failure" }))
        assert.equal(1.5, prom.value(page, "disco_snapshot_age_seconds", { service_id = "dubbo:com.acme.Pay" }))
        assert.is_nil(prom.value(page, "disco_snapshot_age_seconds",
                                 { service_id = "dubbo:com.acme.Cart:1.0.0" }))
        assert.equal(2, prom.value(page, "disco_subscription_addresses",
                                   { service_id = "dubbo:com.acme.Cart:1.0.0" }))
        assert.equal(1, prom.value(page, "disco_provider_registered"))
        assert.equal(4, prom.value(page, "disco_admin_requests_total", { code = "200" }))
        assert.equal(1700000000, prom.value(page, "disco_start_time_seconds"))
        -- No series names an instance.
        for _, name in ipairs(page.order) do
            for _, s in ipairs(page.families[name].samples) do
                for label in pairs(s.labels) do
                    assert.is_true(label ~= "instance" and label ~= "address" and label ~= "host",
                                   name .. " has a per-instance label")
                end
            end
        end
    end)

    it("caps the application labels and sums the rest under app=\"_other_\"", function()
        local apps = {}
        for i = 1, 1500 do
            apps[string.format("app%04d", i)] = { instances = 2, revisions = 1 }
        end
        local page = assert(prom.parse(metrics.render({ apps = apps, max_apps = 1000 })))
        local series = page.families.disco_app_instances.samples
        assert.equal(1001, #series)
        assert.equal(2, prom.value(page, "disco_app_instances", { app = "app1000" }))
        assert.is_nil(prom.value(page, "disco_app_instances", { app = "app1001" }))
        assert.equal(1000, prom.value(page, "disco_app_instances", { app = "_other_" }))
        assert.equal(500, prom.value(page, "disco_app_revisions", { app = "_other_" }))
        assert.equal(500, prom.value(page, "disco_app_label_overflow"))
        -- Under the cap nothing is aggregated.
        local small = assert(prom.parse(metrics.render({ apps = { a = { instances = 1, revisions = 1 } },
                                                          max_apps = 1 })))
        assert.is_nil(prom.value(small, "disco_app_instances", { app = "_other_" }))
        assert.equal(0, prom.value(small, "disco_app_label_overflow"))
    end)

    it("renders a page with nothing to report", function()
        local page = assert(prom.parse(metrics.render({})))
        assert.equal("counter", prom.type_of(page, "disco_events_total"))
        assert.equal(0, #page.families.disco_events_total.samples)
        assert.is_nil(page.families.disco_registry_session_up)
    end)
end)
