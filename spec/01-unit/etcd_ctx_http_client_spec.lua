-- ctx:http_client, the handle registry/etcd takes its connections from:
-- owned by the plugin instance, closed when the instance goes (pending
-- requests answer ECANCELED), released early with ctx:release, handed to
-- a new version with ctx:adopt.
local core = require "disco.core"
local plugin_ctx = require "disco.plugin_ctx"

describe("ctx:http_client", function()
    local loop, owners

    local function new_ctx(name)
        return plugin_ctx.new({
            name = name or "registry/etcd", kind = "registry", conf = {}, loop = loop,
            events = {}, owners = owners, guard = function(fn) return fn end,
            log = { warn = function() end, info = function() end, error = function() end },
        })
    end

    before_each(function()
        loop = assert(core.new_loop())
        owners = {}
    end)

    after_each(function()
        assert(loop:close())
    end)

    it("is closed with the instance, answering pending requests ECANCELED", function()
        local ctx = new_ctx()
        -- Port 9 (discard) on loopback: nothing answers before the release.
        local client = assert(ctx:http_client({ host = "127.0.0.1", port = 9, connect_timeout = 60000 }))
        assert.equal(1, ctx:_resource_count())
        local answer
        assert(client:request({ path = "/" }, function(err) answer = err end))
        ctx:_release()
        assert.matches("^ECANCELED: client closed", answer)
        assert.has_error(function() client:request({ path = "/" }, function() end) end)
        assert.equal(0, ctx:_resource_count())
    end)

    it("passes option errors through as tuples", function()
        local ctx = new_ctx()
        local client, err, ename = ctx:http_client({ host = "127.0.0.1", port = 2379, bogus = 1 })
        assert.is_nil(client)
        assert.matches("^EINVAL: ", err)
        assert.equal("EINVAL", ename)
        assert.equal(0, ctx:_resource_count())
        ctx:_release()
    end)

    it("is released early with ctx:release and survives a hand-over with ctx:adopt", function()
        local old, new = new_ctx(), new_ctx()
        local kept = assert(old:http_client({ host = "127.0.0.1", port = 2379 }))
        local dropped = assert(old:http_client({ host = "127.0.0.1", port = 2380 }))
        old:release(dropped)
        assert.has_error(function() dropped:request({ path = "/" }, function() end) end)
        assert.equal(kept, new:adopt(kept))
        new:_keep_adopted()
        old:_release()
        -- Still open: the new instance owns it now.
        local req = assert(kept:request({ path = "/" }, function() end))
        req:cancel()
        new:_release()
        assert.has_error(function() kept:request({ path = "/" }, function() end) end)
    end)
end)
