-- A checker of the Prometheus text exposition format (version 0.0.4), as
-- strict as the specs need: every line is `# HELP name text`,
-- `# TYPE name counter|gauge|...`, or a sample `name{l="v",...} value`;
-- metric and label names are valid; label values use only the escapes
-- \\ \" \n; a family's TYPE comes before its samples, its samples form one
-- group, and no series (name and label set) appears twice.
--
--   local page, err = prom.parse(text)   -- nil, "line 3: ..." when invalid
--   prom.value(page, "disco_app_instances", { app = "shop" })  -- 2
local _M = {}

local TYPES = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }

local function metric_name(s)
    return s:match("^[%a_:][%w_:]*$") ~= nil
end

local function label_name(s)
    return s:match("^[%a_][%w_]*$") ~= nil and s:sub(1, 2) ~= "__"
end

-- The family a sample belongs to: itself, or for histograms and summaries
-- the name without its suffix.
local function family_of(families, name)
    if families[name] then
        return name
    end
    for _, suffix in ipairs({ "_bucket", "_sum", "_count" }) do
        local base = name:sub(1, -#suffix - 1)
        if name:sub(-#suffix) == suffix and families[base]
            and (families[base].type == "histogram" or families[base].type == "summary") then
            return base
        end
    end
    return name
end

-- Parses `{a="x",b="y"}` starting at `i` (the brace); returns the labels,
-- their canonical text and the index after the closing brace, or nil, err.
local function parse_labels(line, i)
    local labels, keys = {}, {}
    i = i + 1
    if line:sub(i, i) == "}" then
        return labels, "", i + 1
    end
    while true do
        local name, after = line:match("^([%a_][%w_]*)()", i)
        if not name then
            return nil, "malformed label name at column " .. i
        end
        if not label_name(name) then
            return nil, "reserved label name " .. name
        end
        if labels[name] then
            return nil, "label " .. name .. " given twice"
        end
        i = after
        if line:sub(i, i + 1) ~= '="' then
            return nil, "expected =\" after label " .. name
        end
        i = i + 2
        local value = {}
        while true do
            local c = line:sub(i, i)
            if c == "" then
                return nil, "unterminated value of label " .. name
            elseif c == '"' then
                i = i + 1
                break
            elseif c == "\\" then
                local e = line:sub(i + 1, i + 1)
                if e == "\\" or e == '"' then
                    value[#value + 1] = e
                elseif e == "n" then
                    value[#value + 1] = "\n"
                else
                    return nil, "invalid escape \\" .. e .. " in label " .. name
                end
                i = i + 2
            else
                value[#value + 1] = c
                i = i + 1
            end
        end
        labels[name] = table.concat(value)
        keys[#keys + 1] = name
        local c = line:sub(i, i)
        if c == "}" then
            i = i + 1
            break
        elseif c == "," then
            i = i + 1
            if line:sub(i, i) == "}" then -- a trailing comma is allowed
                i = i + 1
                break
            end
        else
            return nil, "expected , or } after the value of label " .. name
        end
    end
    table.sort(keys)
    local canon = {}
    for k, name in ipairs(keys) do
        canon[k] = name .. "=" .. string.format("%q", labels[name])
    end
    return labels, table.concat(canon, ","), i
end

local function parse_value(s)
    if s == "NaN" then
        return 0 / 0
    elseif s == "+Inf" or s == "Inf" then
        return math.huge
    elseif s == "-Inf" then
        return -math.huge
    end
    if not s:match("^[-+]?[%d.]+[eE]?[-+]?%d*$") then
        return nil
    end
    return tonumber(s)
end

--- Parses and checks `text`; returns `{ families = { name = { type =,
-- help =, samples = { { labels =, value = } } } }, order = { names } }`,
-- or nil and "line N: what is wrong".
function _M.parse(text)
    if type(text) ~= "string" then
        return nil, "not a string"
    end
    if text ~= "" and text:sub(-1) ~= "\n" then
        return nil, "the text does not end with a newline"
    end
    local families, order, series = {}, {}, {}
    local current, closed = nil, {}
    local n = 0
    local function family(name)
        local f = families[name]
        if not f then
            f = { samples = {} }
            families[name] = f
            order[#order + 1] = name
        end
        return f
    end
    for line in text:gmatch("([^\n]*)\n") do
        n = n + 1
        local function bad(msg)
            return nil, "line " .. n .. ": " .. msg .. ": " .. line
        end
        if line:sub(1, 1) == "#" then
            local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
            if kind ~= "HELP" and kind ~= "TYPE" then
                return bad("a comment that is neither # HELP nor # TYPE")
            end
            if not metric_name(name) then
                return bad("invalid metric name")
            end
            if closed[name] then
                return bad(kind .. " after the samples of " .. name .. " ended")
            end
            local f = family(name)
            if kind == "HELP" then
                if f.help then
                    return bad("second HELP for " .. name)
                end
                -- Only \\ and \n: remove the valid pairs, then no \ may be left.
                if rest:gsub("\\[\\n]", ""):find("\\") then
                    return bad("invalid escape in HELP")
                end
                f.help = rest
            else
                if f.type then
                    return bad("second TYPE for " .. name)
                end
                if #f.samples > 0 then
                    return bad("TYPE after samples of " .. name)
                end
                if not TYPES[rest] then
                    return bad("unknown type " .. rest)
                end
                f.type = rest
            end
            if current and current ~= name then
                closed[current] = true
            end
            current = name
        elseif line == "" then
            return bad("empty line")
        else
            local name, i = line:match("^([%a_:][%w_:]*)()")
            if not name then
                return bad("invalid metric name")
            end
            local labels, canon = {}, ""
            if line:sub(i, i) == "{" then
                labels, canon, i = parse_labels(line, i)
                if not labels then
                    return bad(canon) -- parse_labels gave nil, err
                end
            end
            local value_text, ts = line:sub(i):match("^ (%S+) ?(%S*)$")
            if not value_text then
                return bad("expected one space and a value")
            end
            if ts ~= "" and not ts:match("^-?%d+$") then
                return bad("invalid timestamp")
            end
            local value = parse_value(value_text)
            if value == nil then
                return bad("invalid value " .. value_text)
            end
            local fname = family_of(families, name)
            if closed[fname] then
                return bad("samples of " .. fname .. " are not in one group")
            end
            local f = family(fname)
            if not f.type then
                return bad("sample of " .. fname .. " before its TYPE")
            end
            if current and current ~= fname then
                closed[current] = true
            end
            current = fname
            local key = name .. "{" .. canon .. "}"
            if series[key] then
                return bad("duplicate series " .. key)
            end
            series[key] = true
            f.samples[#f.samples + 1] = { name = name, labels = labels, value = value }
        end
    end
    return { families = families, order = order }
end

local function same_labels(a, b)
    for k, v in pairs(a) do
        if b[k] ~= v then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

--- The value of the sample of family `name` with exactly `labels` (default
-- none), or nil.
function _M.value(page, name, labels)
    local f = page.families[name]
    if not f then
        return nil
    end
    for _, s in ipairs(f.samples) do
        if s.name == name and same_labels(s.labels, labels or {}) then
            return s.value
        end
    end
    return nil
end

--- The type of family `name`, or nil.
function _M.type_of(page, name)
    local f = page.families[name]
    return f and f.type
end

return _M
