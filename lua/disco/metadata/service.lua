--- The MetadataService of this process's providers, in local storage mode.
--
-- In Dubbo's default ("local") storage mode every instance serves its own
-- MetadataInfo and consumers call it once per revision (WIRE.md §5). This
-- module is the table of what each provider instance of this process
-- serves, keyed by the address it serves on, and the call a consumer makes
-- to read it. Until the dubbo-protocol server and client exist it answers
-- only callers in the same process (a provider and a consumer in one test
-- or program); the fetcher interface (`fetch(instance, app, revision, cb)`)
-- is the one the dubbo client plugs into, so the consumer will not change.
--
-- Like Dubbo, a provider keeps its last few revisions servable: a consumer
-- that saw the previous revision a moment ago can still read it.
-- @module disco.metadata.service

local _M = {}

--- How many revisions an address keeps servable (Dubbo keeps 16).
_M.KEEP_REVISIONS = 16

-- address ("host:port") -> { app = name, revisions = {rev -> json}, order = {rev...} }
local served = {}

--- Serves `json` (canonical MetadataInfo) for `revision` of `app` at
-- host:port, keeping the previous revisions up to KEEP_REVISIONS.
function _M.publish(host, port, app, revision, json)
    local address = host .. ":" .. port
    local entry = served[address]
    if not entry or entry.app ~= app then
        entry = { app = app, revisions = {}, order = {} }
        served[address] = entry
    end
    if entry.revisions[revision] == nil then
        entry.order[#entry.order + 1] = revision
        if #entry.order > _M.KEEP_REVISIONS then
            entry.revisions[table.remove(entry.order, 1)] = nil
        end
    end
    entry.revisions[revision] = json
end

--- Stops serving at host:port (the provider stopped).
function _M.withdraw(host, port)
    served[host .. ":" .. port] = nil
end

--- What `getMetadataInfo(revision)` answers at host:port: the JSON, or nil
-- and the reason.
function _M.lookup(host, port, app, revision)
    local entry = served[host .. ":" .. port]
    if not entry then
        return nil, "ECONNREFUSED: no MetadataService at " .. host .. ":" .. port
    end
    if entry.app ~= app then
        return nil, "ENOENT: the MetadataService at " .. host .. ":" .. port
            .. " serves application " .. entry.app .. ", not " .. app
    end
    local json = entry.revisions[revision]
    if not json then
        -- Dubbo answers null for a revision it does not know.
        return nil, "ENOENT: " .. app .. " at " .. host .. ":" .. port
            .. " does not know revision " .. revision
    end
    return json
end

return _M
