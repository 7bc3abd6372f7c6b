--- The JSON views of `disco serve`'s admin endpoints: a subscription's
-- address list with its state, and the plugins. Plain tables for
-- `disco.serve.json`; nothing here touches the network.
-- @module disco.serve.views

local instance_model = require "disco.instance"
local json = require "disco.serve.json"

local _M = {}

--- One address entry: where it is, the metadata revision it was built
-- from, whether it comes from a disk snapshot, and the validation chain's
-- reason when the registry no longer lists it but the chain keeps it.
function _M.address(entry)
    local inst = entry.instance or {}
    return {
        url = entry.url, host = entry.host, port = entry.port, protocol = entry.protocol,
        app = entry.app,
        revision = inst.metadata and instance_model.revision(inst) or nil,
        stale = entry.stale == true,
        kept_by_validation = inst.suspect ~= nil,
        validation_reason = inst.suspect,
    }
end

--- The view of one subscription. `rec` is the daemon's record:
-- `id`, `sub` (the consumer's subscription), `updates` (deliveries so
-- far), `updated_at` (wall ms of the last one).
function _M.service(rec)
    local sub = rec.sub
    local st = sub:status()
    local addresses, revisions, seen = json.array(), json.array(), {}
    for _, entry in ipairs(sub:list()) do
        local a = _M.address(entry)
        addresses[#addresses + 1] = a
        if a.revision and not seen[a.revision] then
            seen[a.revision] = true
            revisions[#revisions + 1] = a.revision
        end
    end
    table.sort(revisions)
    return {
        service_id = rec.id,
        apps = json.array(sub:apps()),
        ready = st.live or st.stale,
        live = st.live,
        stale = st.stale,
        age_ms = st.age_ms,
        snapshot = st.snapshot,
        snapshot_error = st.snapshot_error,
        protected = st.protected,
        protection_reason = st.reason,
        debouncing = st.debouncing,
        list_version = rec.updates,
        updated_at = rec.updated_at,
        count = #addresses,
        revisions = revisions,
        addresses = addresses,
    }
end

--- The view of the plugins: `rt.plugins:list()` entries, each with the
-- reason its last load or reload failed (`errors`: name -> reason, cleared
-- by a successful reload), and the host's counters.
function _M.plugins(list, stats, errors)
    local out = json.array()
    for i, p in ipairs(list) do
        out[i] = { name = p.name, kind = p.kind, version = p.version, path = p.path,
                   reloaded = p.reloaded, failed = p.failed, resources = p.resources,
                   last_error = errors[p.name] }
    end
    return { plugins = out, stats = { loaded = stats.loaded, reloaded = stats.reloaded,
                                      failed = stats.failed, unloaded = stats.unloaded } }
end

return _M
