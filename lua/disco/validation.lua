--- The offline validation chain: may the consumer drop this instance?
-- (DESIGN.md §2 "Offline validation", WIRE.md §8 issue 1141.)
--
-- Registries re-use host:port, lose or coalesce events across
-- disconnects, and a deleted registration is not always a dead provider.
-- Every removal the consumer would apply (a registry diff's `removed`, an
-- instance missing after a re-list) goes through an ordered chain of rules
-- first. A rule is a plugin of kind `validation` (hook `validate`) or
-- `health` (hook `validate`, else `check`), called as `hook(req, cb)`:
--
--   req = { instance =, address = "host:port", app =, current =,
--           registry =, now =, reason = "deleted" | "missing",
--           period_ms =, calls = }
--   cb({ verdict = "remove" | "keep" | "defer", reason = "...",
--        until_ms = optional })
--
-- The first rule that answers "keep" or "remove" decides; a rule that
-- raises, answers garbage or does not answer within `timeout_ms` counts as
-- "defer" and is logged with its name. When every rule defers, the
-- instance is removed. Rules are looked up by name on every call, so a hot
-- reload of one is picked up by the next validation.
--
--   local validation = require "disco.validation"
--   local chain = assert(validation.new(rt, { registry = reg }))
--   chain:validate(req, function(decision) end)
--   chain:stats()   -- { removed =, removed_by = { [rule] = n }, kept = { [rule] = n },
--                   --   deferred =, errors = }
-- @module disco.validation

local plugin_chain = require "disco.plugin_chain"

local _M = {}

--- The rules of a chain built without `rules`, in order.
_M.DEFAULT_RULES = { "validation/recent_call", "validation/registration_identity",
                     "health/dubbo_probe" }

--- How long one rule may take to answer before it counts as "defer".
_M.DEFAULT_TIMEOUT_MS = 5000

--- The heartbeat period when neither the chain's options nor the
-- registry's `session_timeout` give one.
_M.DEFAULT_PERIOD_MS = 30000

--- The rule name `stats().removed_by` counts a removal under when every
-- rule deferred.
_M.END_OF_CHAIN = "end_of_chain"

local VERDICTS = { remove = true, keep = true, defer = true }

local chain_mt = {}
chain_mt.__index = chain_mt

--- Creates a chain and loads its rules that are not loaded yet.
-- @tparam disco.runtime rt
-- @tparam table opts `rules` (plugin names in order; default
-- `DEFAULT_RULES`), `conf` (plugin name -> configuration for the rules this
-- call loads), `timeout_ms` (per rule, default 5000), `registry` (the
-- registry plugin's module or its plugin name; handed to the rules as
-- `req.registry`), `period_ms` (the heartbeat period handed to the rules;
-- default: the registry's `session_timeout`, else 30000)
-- @return the chain, or nil and the reason a rule could not be loaded
function _M.new(rt, opts)
    opts = opts or {}
    if type(opts) ~= "table" then
        error("validation options must be a table", 2)
    end
    local rules = opts.rules or _M.DEFAULT_RULES
    if type(rules) ~= "table" then
        error("validation rules must be a list of plugin names", 2)
    end
    for _, name in ipairs(rules) do
        local kind = type(name) == "string" and name:match("^(%w+)/")
        if kind ~= "validation" and kind ~= "health" then
            error("validation rule '" .. tostring(name)
                  .. "' is not a validation or health plugin", 2)
        end
    end
    local registry_name = plugin_chain.registry_name(opts.registry)
    local self = setmetatable({
        rt = rt,
        log = rt:logger("validation"),
        rules = plugin_chain.copy(rules),
        registry_fallback = type(opts.registry) == "table" and opts.registry or nil,
        registry_name = registry_name,
        timeout_ms = opts.timeout_ms or _M.DEFAULT_TIMEOUT_MS,
        period_ms = opts.period_ms,
        counters = { removed = 0, removed_by = {}, kept = {}, deferred = 0, errors = 0,
                     validations = 0 },
    }, chain_mt)
    local confs = opts.conf or {}
    local loaded, err = plugin_chain.load(rt, self.rules, function(name) return confs[name] end)
    if not loaded then
        return nil, err
    end
    return self
end

function chain_mt:_registry()
    return plugin_chain.registry(self.rt, self.registry_name, self.registry_fallback)
end

--- The heartbeat period rules compare against: the chain's `period_ms`,
-- else the registry's `session_timeout`, else 30000.
function chain_mt:period()
    if self.period_ms then
        return self.period_ms
    end
    local rec = self.registry_name and self.rt.plugins.plugins
        and self.rt.plugins.plugins[self.registry_name]
    local timeout = rec and rec.conf and tonumber(rec.conf.session_timeout)
    return timeout or _M.DEFAULT_PERIOD_MS
end

-- A decision as the chain hands it on, or nil and why `d` is not one.
local function checked(d)
    if type(d) ~= "table" then
        return nil, "answered a " .. type(d) .. " instead of a decision"
    end
    if not VERDICTS[d.verdict] then
        return nil, "answered verdict '" .. tostring(d.verdict) .. "'"
    end
    if d.until_ms ~= nil and type(d.until_ms) ~= "number" then
        return nil, "answered a non-numeric until_ms"
    end
    return { verdict = d.verdict, reason = d.reason ~= nil and tostring(d.reason) or nil,
             until_ms = d.until_ms, suspect = d.suspect and true or nil }
end

--- Calls rule `name` with `req`; `cb(decision)` runs exactly once, with
-- the rule's decision, or with "defer" (counted as an error and logged)
-- when the rule is missing, raises, answers garbage or times out.
function chain_mt:_ask(name, req, cb)
    local mod = self.rt.plugins:get(name)
    local hook = mod and (mod.validate or mod.check)
    if type(hook) ~= "function" then
        self.counters.errors = self.counters.errors + 1
        self.log:warn("rule %s is not loaded or has no validate hook; deferred", name)
        return cb({ verdict = "defer", reason = "rule not loaded" })
    end
    plugin_chain.ask(self.rt, {
        timeout_ms = self.timeout_ms,
        label = "validation " .. name,
        log = self.log,
        who = "rule " .. name,
        failed = function(message) return message end,
    }, hook, req, function(d)
        local decision, why = checked(d)
        if not decision then
            self.counters.errors = self.counters.errors + 1
            self.log:warn("rule %s on %s: %s; deferred", name, req.address, why)
            decision = { verdict = "defer", reason = why }
        end
        cb(decision)
    end)
end

--- Runs the chain on one removal. `req` needs `instance` (the cached
-- instance being removed); `address` ("host:port"), `app`, `now`,
-- `reason` ("deleted"), `registry`, `period_ms` are filled in when
-- missing; `current` (the instance now registered at that address, or nil)
-- and `calls` (the consumer's call record of the address) are optional.
-- @tparam function cb `cb(decision)`: `verdict` ("keep" or "remove"),
-- `reason`, `rule` (the deciding rule, nil when every rule deferred),
-- `until_ms` (for "keep": when to ask again), `suspect`
function chain_mt:validate(req, cb)
    if type(req) ~= "table" or type(req.instance) ~= "table" then
        error("validate needs a request with an instance", 2)
    end
    if type(cb) ~= "function" then
        error("validate needs a callback", 2)
    end
    local inst = req.instance
    local r = {}
    for k, v in pairs(req) do
        r[k] = v
    end
    r.address = r.address or inst.id or (tostring(inst.host) .. ":" .. tostring(inst.port))
    r.app = r.app or inst.name
    r.now = r.now or self.rt:now()
    r.reason = r.reason or "deleted"
    r.registry = r.registry or self:_registry()
    r.period_ms = r.period_ms or self:period()
    local counters = self.counters
    counters.validations = counters.validations + 1
    local rules = plugin_chain.copy(self.rules)
    local i = 0
    local step
    step = function()
        i = i + 1
        local name = rules[i]
        if not name then
            counters.removed = counters.removed + 1
            counters.removed_by[_M.END_OF_CHAIN] = (counters.removed_by[_M.END_OF_CHAIN] or 0) + 1
            return cb({ verdict = "remove", reason = "no rule kept it" })
        end
        self:_ask(name, r, function(d)
            if d.verdict == "defer" then
                counters.deferred = counters.deferred + 1
                return step()
            end
            d.rule = name
            if d.verdict == "keep" then
                counters.kept[name] = (counters.kept[name] or 0) + 1
            else
                counters.removed = counters.removed + 1
                counters.removed_by[name] = (counters.removed_by[name] or 0) + 1
            end
            cb(d)
        end)
    end
    step()
end

--- The chain's counters: `removed`, `removed_by` and `kept` (rule name ->
-- count; a removal no rule decided is under `END_OF_CHAIN`), `kept_total`,
-- `deferred` (rule answers), `errors` (rules that raised, answered garbage,
-- timed out or were missing), `validations`.
function chain_mt:stats()
    local c = self.counters
    local kept, total = {}, 0
    for name, n in pairs(c.kept) do
        kept[name] = n
        total = total + n
    end
    local removed_by = {}
    for name, n in pairs(c.removed_by) do
        removed_by[name] = n
    end
    return { removed = c.removed, removed_by = removed_by, kept = kept, kept_total = total,
             deferred = c.deferred, errors = c.errors, validations = c.validations }
end

--- The rule names, in order.
function chain_mt:rule_names()
    return plugin_chain.copy(self.rules)
end

return _M
