-- A plugin's ZooKeeper session belongs to the host: it is closed with the
-- instance that opened it, unless the next version adopts it in restore;
-- and it goes back to the old version when that reload fails.
local helpers = require "spec.helpers"
local plugins = require "spec.support.plugins"

local SOURCE = [[
local M = { name = "zk", version = "%s", kind = "listener" }
function M.init(ctx, conf)
    M.ctx = ctx
    if not conf.adopt_only then
        M.session = assert(ctx:zk({ hosts = conf.hosts }))
    end
end
function M.save() return { session = M.session } end
function M.restore(state)
    %s
end
return M
]]

describe("a plugin's ZooKeeper session #zookeeper", function()
    local root, rt, hosts

    before_each(function()
        hosts = helpers.zookeeper().connect_string
        root = plugins.root()
        rt = plugins.runtime(root)
    end)

    after_each(function()
        rt:close()
    end)

    local function connected(session)
        return helpers.run_until(rt, function() return session:state() == "connected" end, 10000)
    end

    it("is adopted across a reload and stays open", function()
        local adopt = "if state then M.session = M.ctx:adopt(state.session) end"
        plugins.write(root, "listener/zk", SOURCE:format("1.0.0", adopt))
        local v1 = assert(rt:load_plugin("listener/zk", { hosts = hosts }))
        local session = v1.session
        assert.is_true(connected(session))
        local id = session:session_id()
        plugins.write(root, "listener/zk", SOURCE:format("1.0.1", adopt))
        assert.is_true(rt:reload("listener/zk", { hosts = hosts, adopt_only = true }))
        local v2 = rt.plugins:get("listener/zk")
        assert.equals(session, v2.session)
        assert.is_false(session:is_closed())
        assert.equals(id, session:session_id())
        assert.equals(1, rt.plugins:list()[1].resources)
        -- and it is closed with the instance that owns it now
        rt.plugins:unload("listener/zk")
        assert.is_true(session:is_closed())
    end)

    it("is closed with its instance when the next version does not adopt it", function()
        plugins.write(root, "listener/zk", SOURCE:format("1.0.0", ""))
        local v1 = assert(rt:load_plugin("listener/zk", { hosts = hosts }))
        local session = v1.session
        assert.is_true(connected(session))
        assert.is_true(rt:reload("listener/zk"))
        assert.is_true(session:is_closed())
        assert.is_true(connected(rt.plugins:get("listener/zk").session))
    end)

    it("goes back to the old version when restore fails after adopting it", function()
        plugins.write(root, "listener/zk", SOURCE:format("1.0.0",
            "if state then M.session = M.ctx:adopt(state.session) end"))
        local v1 = assert(rt:load_plugin("listener/zk", { hosts = hosts }))
        local session = v1.session
        assert.is_true(connected(session))
        plugins.write(root, "listener/zk", SOURCE:format("1.0.1",
            "M.ctx:adopt(state.session) error('restore boom')"))
        local ok, err = rt:reload("listener/zk", { hosts = hosts, adopt_only = true })
        assert.is_nil(ok)
        assert.matches("restore failed", err)
        assert.equals(v1, rt.plugins:get("listener/zk"))
        assert.is_false(session:is_closed())
        assert.equals("connected", session:state())
        rt.plugins:unload("listener/zk")
        assert.is_true(session:is_closed())
    end)
end)
