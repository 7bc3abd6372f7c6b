--- validation/registration_identity: a removal of an old registration
-- leaves the newer one at the same address alone (dubbo-go issue 1141).
--
-- Registries re-use host:port: a new provider may register at an address
-- before the old one's registration is gone, and the old one's delete must
-- then not remove the new one. When an instance is registered at the
-- address now (`req.current`) and its identity differs from the removed
-- instance's (the registration's creation number, e.g. a znode's czxid;
-- else the `timestamp` metadata; else `registration_time`), the removal
-- concerns the old registration only: the address is kept, served by the
-- newer registration. Without a current registration it has no opinion.
local M = {
    name = "registration_identity",
    version = "1.0.0",
    kind = "validation",
}

function M.init()
end

-- The first identity both registrations carry, as a pair of strings.
local function identities(old, new)
    local oi, ni = old.identity or {}, new.identity or {}
    if oi.created ~= nil and ni.created ~= nil then
        return tostring(oi.created), tostring(ni.created), "creation"
    end
    local om, nm = old.metadata or {}, new.metadata or {}
    if om.timestamp ~= nil and nm.timestamp ~= nil then
        return tostring(om.timestamp), tostring(nm.timestamp), "timestamp"
    end
    if old.registration_time ~= nil and new.registration_time ~= nil then
        return tostring(old.registration_time), tostring(new.registration_time), "registration time"
    end
end

function M.validate(req, cb)
    local current = req.current
    if not current then
        return cb({ verdict = "defer" })
    end
    local old, new, what = identities(req.instance, current)
    if old and old ~= new then
        return cb({ verdict = "keep", reason = "address re-registered by a newer registration ("
                    .. what .. " " .. old .. " -> " .. new .. ")" })
    end
    cb({ verdict = "defer" })
end

return M
