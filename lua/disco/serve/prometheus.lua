--- The Prometheus text exposition format, version 0.0.4: what
-- `GET /metrics` of `disco serve` answers.
--
--    local page = prometheus.new()
--    page:counter("disco_events_total", "Events dispatched, by type.",
--                 { { labels = { type = "PluginLoaded" }, value = 3 } })
--    page:gauge("disco_registry_session_up", "1 while the session is connected.", 1)
--    local text = page:render()
--
-- Each family is written as `# HELP`, `# TYPE`, then its samples, one line
-- each: `name{label="value",...} value`. Label values are escaped (`\\`,
-- `\"`, `\n`), labels written in name order, and a family is refused
-- (raises: a programming error) when a name is not a valid metric or label
-- name or when two samples have the same labels.
-- @module disco.serve.prometheus

local _M = {}

--- The Content-Type of the format.
_M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

local page_mt = {}
page_mt.__index = page_mt

--- An empty page.
function _M.new()
    return setmetatable({ families = {}, names = {} }, page_mt)
end

function _M.valid_metric_name(name)
    return type(name) == "string" and name:match("^[%a_:][%w_:]*$") ~= nil
end

function _M.valid_label_name(name)
    return type(name) == "string" and name:match("^[%a_][%w_]*$") ~= nil
        and name:sub(1, 2) ~= "__"
end

--- A label value as it goes between the quotes.
function _M.escape_label_value(v)
    return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function escape_help(s)
    return (s:gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }))
end

--- A sample value: integers without an exponent, NaN and infinities as
-- Prometheus spells them.
function _M.format_value(v)
    if type(v) == "boolean" then
        return v and "1" or "0"
    end
    if type(v) ~= "number" then
        error("a sample value must be a number, got " .. type(v), 2)
    end
    if v ~= v then
        return "NaN"
    elseif v == math.huge then
        return "+Inf"
    elseif v == -math.huge then
        return "-Inf"
    elseif v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then
        return string.format("%d", v)
    end
    -- The shortest form that reads back as the same number.
    for digits = 15, 16 do
        local s = string.format("%." .. digits .. "g", v)
        if tonumber(s) == v then
            return s
        end
    end
    return string.format("%.17g", v)
end

local function label_text(name, labels)
    local keys = {}
    for k in pairs(labels or {}) do
        if not _M.valid_label_name(k) then
            error("metric " .. name .. ": invalid label name '" .. tostring(k) .. "'", 4)
        end
        keys[#keys + 1] = k
    end
    if #keys == 0 then
        return ""
    end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do
        parts[i] = k .. '="' .. _M.escape_label_value(labels[k]) .. '"'
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

function page_mt:_add(kind, name, help, samples)
    if not _M.valid_metric_name(name) then
        error("invalid metric name '" .. tostring(name) .. "'", 3)
    end
    if self.names[name] then
        error("metric " .. name .. " is on the page already", 3)
    end
    if type(samples) == "number" or type(samples) == "boolean" then
        samples = { { value = samples } }
    end
    local lines, seen = {}, {}
    for _, s in ipairs(samples) do
        local labels = label_text(name, s.labels)
        if seen[labels] then
            error("metric " .. name .. ": two samples with the labels " .. labels, 3)
        end
        seen[labels] = true
        lines[#lines + 1] = name .. labels .. " " .. _M.format_value(s.value)
    end
    self.names[name] = true
    self.families[#self.families + 1] = {
        "# HELP " .. name .. " " .. escape_help(help),
        "# TYPE " .. name .. " " .. kind,
        lines = lines,
    }
end

--- Adds a counter family: `samples` is a number or a list of
-- `{ labels = { name = value }, value = n }`.
function page_mt:counter(name, help, samples)
    self:_add("counter", name, help, samples)
end

--- Adds a gauge family (as `counter`).
function page_mt:gauge(name, help, samples)
    self:_add("gauge", name, help, samples)
end

--- The page's text: every family in the order added, ending with a newline.
function page_mt:render()
    local out = {}
    for _, f in ipairs(self.families) do
        out[#out + 1] = f[1]
        out[#out + 1] = f[2]
        for _, line in ipairs(f.lines) do
            out[#out + 1] = line
        end
    end
    out[#out + 1] = ""
    return table.concat(out, "\n")
end

return _M
