--- A subscription's address list as nginx `server` lines, for an
-- `upstream` block that includes the file (the rendered-upstream mode of
-- docs/openresty.md: nginx balances natively, no Lua runs per request).
--
--    upstream hello {
--        include /etc/nginx/disco/hello.servers;
--        keepalive 32;
--    }
--
-- The text is a function of the set of addresses only (sorted, one line
-- per host:port), so that the same list always renders the same bytes: the
-- owner writes and reloads nginx only when they differ. The file is nginx
-- configuration, so nothing but a checked host and port reaches it.
-- Pure Lua (no ngx), so that the unit spec runs it outside nginx.
-- @module disco.resty.upstream_file

local file_replace = require "disco.file_replace"

local str_format = string.format
local table_concat = table.concat
local table_sort = table.sort
local tostring = tostring
local type = type

local _M = {}

--- The line of an empty list: nginx refuses an upstream without a server,
-- and a server marked down makes every request fail at once (502) rather
-- than reach some address nobody listed.
_M.EMPTY_LINE = "server 127.0.0.1:1 down;"

-- A host nginx reads as one word: a name or IPv4 address (letters,
-- digits, dots, dashes, underscores), or an IPv6 address (hex digits,
-- colons, dots for a mapped IPv4 tail). Everything else (`;`, spaces,
-- braces, quotes, newlines, `#`...) could end the `server` directive or
-- start another, so the address is refused.
local function host_word(host)
    if type(host) ~= "string" or host == "" or #host > 253 then
        return nil, "the host is not a non-empty string of at most 253 bytes"
    end
    if host:find(":", 1, true) then
        if host:find("^[%x:%.]+$") then
            return "[" .. host .. "]"
        end
        return nil, "the host is not an IPv6 address (only hex digits, ':' and '.')"
    end
    if host:find("^[%w%.%-_]+$") and host:sub(1, 1) ~= "-" then
        return host
    end
    return nil, "the host has characters other than letters, digits, '.', '-' and '_'"
end
_M.host_word = host_word

local function check_port(port)
    return type(port) == "number" and port % 1 == 0 and port >= 1 and port <= 65535
end

local function check_weight(weight)
    return type(weight) == "number" and weight % 1 == 0 and weight >= 0 and weight <= 1000000
end

-- A header line naming the subscription: control characters (a newline
-- would end the comment) are replaced.
local function comment(text)
    return "# " .. (tostring(text):gsub("%c", "?"))
end

--- Checks the optional server parameters of `render`: `max_fails`
-- (integer >= 0) and `fail_timeout` (integer seconds >= 0).
-- @return true, or nil and the reason
function _M.check_params(opts)
    for _, key in ipairs({ "max_fails", "fail_timeout" }) do
        local v = opts[key]
        if v ~= nil and (type(v) ~= "number" or v % 1 ~= 0 or v < 0 or v > 1000000) then
            return nil, str_format("'%s' must be an integer from 0 to 1000000, got %s", key,
                                   tostring(v))
        end
    end
    return true
end

--- The file's text for the node list `nodes` (`{host=, port=, weight=}`,
-- as the owner publishes them).
--
-- One `server HOST:PORT...;` line per distinct host:port, sorted. Weights
-- are written only when the nodes' weights differ (equal weights balance
-- as nginx's default does); a node of weight 0 among heavier ones becomes
-- `backup` (as the Lua picker, it gets requests only when the others
-- failed). A node whose host or port could not be read safely is left out
-- and named in `skipped`. No address left: `EMPTY_LINE`.
-- @tparam table nodes
-- @tparam[opt] table opts `sid` (named in the header), `max_fails`,
-- `fail_timeout` (seconds), added to every line when set
-- @treturn string the text
-- @treturn table skipped: one reason per node left out
function _M.render(nodes, opts)
    opts = opts or {}
    local by_key, keys, skipped = {}, {}, {}
    local positive = {}
    for i, node in ipairs(nodes) do
        local word, why = host_word(type(node) == "table" and node.host)
        if word and not check_port(node.port) then
            word, why = nil, "the port is not an integer from 1 to 65535"
        end
        local weight = type(node) == "table" and node.weight
        if weight == nil then
            weight = 100
        end
        if word and not check_weight(weight) then
            word, why = nil, "the weight is not an integer from 0 to 1000000"
        end
        if not word then
            skipped[#skipped + 1] = str_format("node %d (%s): %s", i,
                type(node) == "table" and (tostring(node.host) .. ":" .. tostring(node.port))
                    :gsub("%c", "?") or type(node), why)
        else
            local key = word .. ":" .. node.port
            local seen = by_key[key]
            -- A repeated address keeps its largest weight: the order of the
            -- list must not change the text.
            if not seen then
                keys[#keys + 1] = key
                by_key[key] = weight
            elseif weight > seen then
                by_key[key] = weight
            end
        end
    end
    table_sort(keys)
    local differ = false
    for _, key in ipairs(keys) do
        local w = by_key[key]
        if w > 0 then
            if positive[1] and positive[1] ~= w then
                differ = true
            end
            positive[1] = positive[1] or w
        end
    end
    local tail = ""
    if opts.max_fails then
        tail = tail .. " max_fails=" .. opts.max_fails
    end
    if opts.fail_timeout then
        tail = tail .. " fail_timeout=" .. opts.fail_timeout .. "s"
    end
    local lines = {
        comment("Written by disco (disco.resty): the providers of " .. tostring(opts.sid or "?")
                .. "."),
        "# Rewritten whenever the list changes (then nginx is reloaded): do not edit.",
    }
    for _, key in ipairs(keys) do
        local w = by_key[key]
        local params = ""
        if w == 0 and positive[1] then
            params = " backup"
        elseif differ then
            params = " weight=" .. w
        end
        lines[#lines + 1] = "server " .. key .. params .. tail .. ";"
    end
    if #keys == 0 then
        lines[#lines + 1] = "# No provider is listed: every request fails (502) until one is."
        lines[#lines + 1] = _M.EMPTY_LINE
    end
    lines[#lines + 1] = ""
    return table_concat(lines, "\n"), skipped
end

-- What to check when the file cannot be written, added to the error.
local HINTS = {
    ENOENT = "the directory of %s does not exist",
    EACCES = "the nginx worker's user must be able to write the directory of %s",
}

--- Writes `text` to `path` unless the file holds it already, replacing
-- it whole (disco.file_replace): a reader (nginx at a reload) sees the old
-- file or the new one, never a part.
-- @tparam string path
-- @tparam string text
-- @treturn[1] boolean whether the file was written
-- @treturn[2] nil
-- @treturn[2] string "ENAME: message"
-- @treturn[2] string "ENAME"
function _M.write_if_changed(path, text)
    if type(path) ~= "string" or path == "" then
        return nil, "EINVAL: the path must be a non-empty string", "EINVAL"
    end
    if type(text) ~= "string" then
        return nil, "EINVAL: the text must be a string", "EINVAL"
    end
    if file_replace.read(path) == text then
        return false
    end
    local ok, err, code = file_replace.write(path, text)
    if not ok then
        local hint = HINTS[code]
        return nil, hint and (err .. " (" .. str_format(hint, path) .. ")") or err, code
    end
    return true
end

return _M
