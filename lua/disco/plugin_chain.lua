--- What the chains of plugins have in common (the mapping chain, the
-- validation chain): finding the registry they hand to their plugins,
-- loading the plugins they list, and asking one plugin's hook for an
-- answer that comes exactly once, whatever the plugin does.
-- @module disco.plugin_chain

local debug_traceback = debug.traceback
local pairs = pairs
local xpcall = xpcall

local _M = {}

--- The plugin name of `registry` (a registry plugin's module, or its
-- plugin name such as "registry/zookeeper"), or nil.
function _M.registry_name(registry)
    if type(registry) == "string" then
        return registry
    elseif type(registry) == "table" and type(registry.name) == "string" then
        return "registry/" .. registry.name
    end
    return nil
end

--- The running registry plugin called `name`, looked up again on each call
-- so that a reload is followed, else `fallback` (the module given).
function _M.registry(rt, name, fallback)
    return (name and rt.plugins:get(name)) or fallback
end

--- Loads the plugins of `names` that are not loaded yet, each with
-- `conf_of(name)` (or {}). Returns true, or nil and the first error.
function _M.load(rt, names, conf_of)
    for _, name in ipairs(names) do
        if not rt.plugins:get(name) then
            local mod, err = rt:load_plugin(name, conf_of(name) or {})
            if not mod then
                return nil, err
            end
        end
    end
    return true
end

--- Calls `hook(request, answer)` (a plugin's hook) with a copy of
-- `request` (a plugin that changes it changes its own) and calls
-- `on_answer(...)` exactly once: with what the plugin answers, or, when it
-- raises or does not answer within `timeout_ms`, with `failed(message)`'s
-- results. `label` names the timer; `log` and `who` name the plugin in the
-- log line of a raise.
function _M.ask(rt, opts, hook, request, on_answer)
    local answered, timer = false, nil
    local function answer(...)
        if answered then
            return
        end
        answered = true
        if timer and not timer:is_closed() then
            timer:close()
        end
        on_answer(...)
    end
    timer = rt:after(opts.timeout_ms, function()
        timer = nil
        answer(opts.failed("no answer within " .. opts.timeout_ms .. " ms"))
    end, opts.label)
    local r = {}
    for k, v in pairs(request) do
        r[k] = v
    end
    local ok, err = xpcall(hook, debug_traceback, r, answer)
    if not ok and not answered then
        opts.log:error("%s raised: %s", opts.who, tostring(err))
        answer(opts.failed("raised: " .. (tostring(err):match("^(.-)\nstack traceback:") or tostring(err))))
    end
end

--- A copy of the list `list`.
function _M.copy(list)
    local out = {}
    for i = 1, #list do
        out[i] = list[i]
    end
    return out
end

return _M
