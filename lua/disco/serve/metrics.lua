--- What `GET /metrics` of `disco serve` reports, built from a plain
-- snapshot of the daemon's counters (`disco.serve.daemon` gathers it), so
-- that the page can be checked without a daemon.
--
-- Label cardinality is bounded: no label names an instance; applications
-- get a label of their own up to `max_apps` (by name order), the rest are
-- summed under app="_other_"; the other labels come from bounded sets
-- (event types, session states, configured subscriptions and rules, HTTP
-- status codes).
--
-- The snapshot (every part optional):
--
--    { registry = { state =, generation =, connects =, disconnects =, expiries = },
--      events = { [type] = n },
--      apps = { [app] = { instances = n, revisions = n } },
--      cache = consumer:counters(), validation = consumer:validation_stats(),
--      plugins = { loaded =, reloaded =, failed =, unloaded =, running = n },
--      subscriptions = { { id =, addresses =, ready =, stale =, protected =, age_ms = } },
--      provider = { registered = bool }, admin = { [status] = n },
--      start_time_ms = n, max_apps = 1000 }
-- @module disco.serve.metrics

local prometheus = require "disco.serve.prometheus"

local _M = {}

--- The label value that stands for the applications over the cap.
_M.OTHER_APP = "_other_"

--- The registry session states, each a series of
-- disco_registry_session_state (1 for the current one).
_M.SESSION_STATES = { "connecting", "connected", "expired", "auth_failed", "closed" }

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t or {}) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    return keys
end

local function labelled(t, label)
    local samples = {}
    for _, k in ipairs(sorted_keys(t)) do
        samples[#samples + 1] = { labels = { [label] = k }, value = t[k] }
    end
    return samples
end

--- Per-application series with at most `max_apps` labels: returns
-- instances and revisions samples and how many applications were summed
-- into "_other_".
function _M.app_samples(apps, max_apps)
    local names = sorted_keys(apps)
    local instances, revisions = {}, {}
    local other_i, other_r, overflow = 0, 0, 0
    for i, app in ipairs(names) do
        local a = apps[app]
        if i <= max_apps then
            instances[#instances + 1] = { labels = { app = app }, value = a.instances or 0 }
            revisions[#revisions + 1] = { labels = { app = app }, value = a.revisions or 0 }
        else
            overflow = overflow + 1
            other_i = other_i + (a.instances or 0)
            other_r = other_r + (a.revisions or 0)
        end
    end
    if overflow > 0 then
        instances[#instances + 1] = { labels = { app = _M.OTHER_APP }, value = other_i }
        revisions[#revisions + 1] = { labels = { app = _M.OTHER_APP }, value = other_r }
    end
    return instances, revisions, overflow
end

local function registry_families(page, reg)
    page:gauge("disco_registry_session_up", "1 while the registry session is connected.",
               reg.state == "connected" and 1 or 0)
    local states = {}
    for i, state in ipairs(_M.SESSION_STATES) do
        states[i] = { labels = { state = state }, value = reg.state == state and 1 or 0 }
    end
    page:gauge("disco_registry_session_state", "The registry session's state (1 for the current one).",
               states)
    page:gauge("disco_registry_session_generation",
               "The registry session's generation (a new one after each expiry).", reg.generation or 0)
    local connects = reg.connects or 0
    page:counter("disco_registry_connects_total", "Times the registry session connected.", connects)
    page:counter("disco_registry_reconnects_total",
                 "Times the registry session connected again after the first time.",
                 math.max(connects - 1, 0))
    page:counter("disco_registry_disconnects_total", "Times the registry connection dropped.",
                 reg.disconnects or 0)
    page:counter("disco_registry_session_expiries_total", "Times the registry session expired.",
                 reg.expiries or 0)
end

local CACHE_COUNTERS = {
    { "hits", "disco_revision_cache_hits_total", "Revision cache lookups answered from the cache." },
    { "misses", "disco_revision_cache_misses_total", "Revision cache lookups that had to fetch." },
    { "fetches", "disco_revision_cache_fetches_total", "Metadata fetches the revision cache started." },
    { "failures", "disco_revision_cache_failures_total", "Metadata fetches that failed." },
    { "evictions", "disco_revision_cache_evictions_total", "Revisions evicted from the cache." },
    { "fetch_calls", "disco_metadata_fetch_calls_total", "Calls to read a MetadataInfo from an instance." },
    { "fetch_errors", "disco_metadata_fetch_errors_total", "Calls to read a MetadataInfo that failed." },
    { "invalid_metadata", "disco_metadata_invalid_total", "MetadataInfo documents refused as invalid." },
}

local function cache_families(page, cache)
    for _, c in ipairs(CACHE_COUNTERS) do
        page:counter(c[2], c[3], cache[c[1]] or 0)
    end
    page:gauge("disco_revision_cache_entries", "Revisions held by the cache.", cache.entries or 0)
    page:gauge("disco_revision_cache_bytes", "Bytes of metadata held by the cache.", cache.bytes or 0)
end

local function validation_families(page, v)
    page:counter("disco_validation_kept_total",
                 "Removals the validation chain refused (the instance kept), by deciding rule.",
                 labelled(v.kept, "rule"))
    page:counter("disco_validation_removed_total",
                 "Removals the validation chain confirmed, by deciding rule"
                     .. " (end_of_chain: every rule deferred).",
                 labelled(v.removed_by or {}, "rule"))
    page:counter("disco_validation_deferred_total", "Rule answers that deferred to the next rule.",
                 v.deferred or 0)
    page:counter("disco_validation_errors_total",
                 "Rules that raised, answered garbage or timed out.", v.errors or 0)
    page:gauge("disco_validation_kept_instances",
               "Removed instances the address lists hold now for the validation chain.",
               v.kept_now or 0)
end

local function subscription_families(page, subs)
    local addresses, ready, stale, protected, ages = {}, {}, {}, {}, {}
    for _, s in ipairs(subs) do
        local labels = { service_id = s.id }
        addresses[#addresses + 1] = { labels = labels, value = s.addresses or 0 }
        ready[#ready + 1] = { labels = labels, value = s.ready and 1 or 0 }
        stale[#stale + 1] = { labels = labels, value = s.stale and 1 or 0 }
        protected[#protected + 1] = { labels = labels, value = s.protected and 1 or 0 }
        if s.stale and s.age_ms then
            ages[#ages + 1] = { labels = labels, value = s.age_ms / 1000 }
        end
    end
    page:gauge("disco_subscription_addresses", "Addresses in the list of a subscription.", addresses)
    page:gauge("disco_subscription_ready",
               "1 once a subscription was resolved (or is served from a snapshot).", ready)
    page:gauge("disco_subscription_stale", "1 while a subscription is served from a disk snapshot.",
               stale)
    page:gauge("disco_subscription_protected",
               "1 while empty-push protection holds a subscription's addresses.", protected)
    page:gauge("disco_snapshot_age_seconds",
               "Age of the disk snapshot a stale subscription is served from.", ages)
end

--- The page's text for snapshot `s`.
function _M.render(s)
    local page = prometheus.new()
    if s.start_time_ms then
        page:gauge("disco_start_time_seconds", "When disco serve started (Unix time).",
                   s.start_time_ms / 1000)
    end
    if s.registry then
        registry_families(page, s.registry)
    end
    page:counter("disco_events_total", "Runtime events dispatched, by type.",
                 labelled(s.events, "type"))
    local instances, revisions, overflow = _M.app_samples(s.apps or {}, s.max_apps or 1000)
    page:gauge("disco_app_instances", "Instances of an application the consumer watches.", instances)
    page:gauge("disco_app_revisions", "Distinct metadata revisions among an application's instances.",
               revisions)
    page:gauge("disco_app_label_overflow",
               "Applications summed under app=\"_other_\" (over metrics.max_apps).", overflow)
    if s.cache then
        cache_families(page, s.cache)
    end
    if s.validation then
        validation_families(page, s.validation)
    end
    local p = s.plugins or {}
    page:counter("disco_plugin_reloads_total", "Plugin reloads, by result.", {
        { labels = { result = "success" }, value = p.reloaded or 0 },
        { labels = { result = "failure" }, value = p.failed or 0 },
    })
    page:gauge("disco_plugins_running", "Plugins loaded and running.", p.running or 0)
    subscription_families(page, s.subscriptions or {})
    if s.provider then
        page:gauge("disco_provider_registered", "1 while the provider's instance is registered.",
                   s.provider.registered and 1 or 0)
    end
    page:counter("disco_admin_requests_total", "Admin HTTP requests answered, by status code.",
                 labelled(s.admin, "code"))
    return page:render()
end

return _M
