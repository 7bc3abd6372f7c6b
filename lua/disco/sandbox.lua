--- The restricted environment each plugin runs in.
--
-- After Redis's scripting: a plugin sees an allow-list of globals, cannot
-- create or assign globals (a typo such as `cuont = 1` raises instead of
-- leaking state across reloads), and can only `require` disco's public
-- modules and its own submodules. Libraries are copies, so a plugin that
-- replaces `string.format` replaces its own copy only.
-- @module disco.sandbox

local _M = {}

-- Functions a plugin may call as globals. Left out on purpose: load,
-- loadstring, loadfile, dofile (code that would run with the real
-- globals), getfenv/setfenv (reach the real globals), collectgarbage,
-- print (plugins log through ctx.log), module, rawlen is not in 5.1.
local SAFE_FUNCTIONS = {
    "assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal",
    "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring",
    "type", "unpack", "xpcall",
}

-- Libraries copied whole.
local SAFE_LIBRARIES = { "string", "table", "math", "coroutine", "bit" }

-- From `os`, only what reads the clock: no execute, exit, getenv, remove,
-- rename or tmpname.
local SAFE_OS = { "clock", "date", "difftime", "time" }

-- disco modules a plugin must not reach: the C core would let it create
-- handles the host does not own, the others are the host's own machinery.
local DENIED_DISCO_MODULES = {
    ["disco.core"] = true,
    ["disco.plugin"] = true,
    ["disco.plugin_ctx"] = true,
    ["disco.sandbox"] = true,
}
local DENIED_DISCO_PREFIXES = { "disco.cli", "disco.testing" }

local function copy(t)
    local c = {}
    for k, v in pairs(t) do
        c[k] = v
    end
    return c
end

--- Whether a plugin may `require` the disco module `modname`.
function _M.disco_module_allowed(modname)
    if modname ~= "disco" and modname:sub(1, 6) ~= "disco." then
        return false
    end
    if DENIED_DISCO_MODULES[modname] then
        return false
    end
    for _, prefix in ipairs(DENIED_DISCO_PREFIXES) do
        if modname == prefix or modname:sub(1, #prefix + 1) == prefix .. "." then
            return false
        end
    end
    return true
end

--- Creates a fresh environment for one load of one plugin.
-- @tparam table opts `name` (for error messages) and `require` (the
-- plugin's restricted require, called as `require(modname)`)
-- @treturn table the environment, for `setfenv`
function _M.new(opts)
    local name = opts.name
    local env = {}
    for _, fname in ipairs(SAFE_FUNCTIONS) do
        env[fname] = _G[fname]
    end
    for _, lib in ipairs(SAFE_LIBRARIES) do
        if _G[lib] then
            env[lib] = copy(_G[lib])
        end
    end
    env.os = {}
    for _, fname in ipairs(SAFE_OS) do
        env.os[fname] = os[fname]
    end
    -- The string metatable is shared by the whole process: handing it out
    -- would let a plugin change string methods for everyone.
    env.getmetatable = function(value)
        if type(value) == "string" then
            return nil
        end
        return getmetatable(value)
    end
    env.require = opts.require
    env._VERSION = _VERSION
    env._G = env

    return setmetatable(env, {
        __index = function(_, key)
            error(string.format("plugin '%s': unknown global '%s' (not allowed "
                                .. "in plugins, or a typo)", name, tostring(key)), 2)
        end,
        __newindex = function(_, key)
            error(string.format("plugin '%s' may not set the global '%s'; "
                                .. "use a local", name, tostring(key)), 2)
        end,
        __metatable = false,
    })
end

return _M
