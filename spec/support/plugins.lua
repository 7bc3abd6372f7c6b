-- Writes plugin files into temporary plugin directories for the plugin
-- specs, and makes runtimes that load from them.
local helpers = require "spec.helpers"

local _M = {}

--- A fresh plugin root directory.
function _M.root()
    return helpers.tmpdir()
end

--- Writes `source` as plugin `spec` ("kind/name") under `root`, or as the
-- submodule file `sub` ("kind/name/util.lua") when given a path.
function _M.write(root, path, source)
    local file = root .. "/" .. path
    if not file:match("%.lua$") then
        file = file .. ".lua"
    end
    os.execute("mkdir -p " .. helpers.shell_quote(file:match("^(.*)/[^/]+$")))
    return helpers.write_file(file, source)
end

--- A listener plugin `listener/<name>` at `version` that counts the
-- ServiceInstancesChanged events it sees in `state.count` and records their
-- `seq`; `extra` is Lua source spliced into the module table (hooks).
function _M.counter(name, version, extra)
    return string.format([[
local state = { count = 0, seqs = {} }
local M = { name = %q, version = %q, kind = "listener" }
function M.init(ctx, conf)
    ctx:on("ServiceInstancesChanged", function(event)
        state.count = state.count + 1
        state.seqs[#state.seqs + 1] = event.seq
    end)
end
function M.save() return state end
function M.restore(old) if old then state = old end end
function M.state() return state end
%s
return M
]], name, version, extra or "")
end

--- A runtime loading plugins from `root`, not watching files unless asked.
function _M.runtime(root, conf)
    local disco = require "disco"
    conf = conf or {}
    conf.plugin_paths = { root }
    if conf.plugin_watch == nil then
        conf.plugin_watch = false
    end
    local rt = disco.runtime(conf)
    -- Log lines are kept for assertions instead of cluttering the output.
    rt.logged = {}
    rt.loop:set_log_sink(function(level, component, message)
        rt.logged[#rt.logged + 1] = { level = level, component = component, message = message }
    end)
    return rt
end

--- Collects events of the given types fired on `rt`.
function _M.record(rt, types)
    local seen = {}
    for _, t in ipairs(types) do
        rt:on(t, function(event) seen[#seen + 1] = event end)
    end
    return seen
end

return _M
