-- bench/results.lua: how benchmarks publish their tables. Each table is
-- printed and appended, as Markdown, to bench/results/latest.md (or
-- $BENCH_RESULTS); the first one written to an empty or missing file puts
-- the machine header on top (date, nproc cores, CPU, ZooKeeper version,
-- disco commit). `make bench` deletes the file first, so one `make bench`
-- gives one file.
--
--   local results = require "results"     -- package.path has bench/?.lua
--   results.table("Cold discovery (ms, median (min-max))",
--                 { "N", "floor", "disco" },
--                 { { 1000, "12.0 (11.1-13.0)", "14.2 (13.9-15.0)" } },
--                 { "floor: the raw C client, no parsing" })   -- notes, optional
--   results.spread(list)   -- "median (min-max)" of numbers, 1 decimal
--   results.ratio(a, b)    -- "a/b" as "1.23", or "-" when either is missing
local _M = {}

local function sh(cmd)
    local p = io.popen(cmd .. " 2>/dev/null")
    local s = p and p:read("*a") or ""
    if p then
        p:close()
    end
    return (s:gsub("%s+$", ""))
end

--- Where the tables go.
function _M.path()
    return os.getenv("BENCH_RESULTS") or "bench/results/latest.md"
end

local function header()
    local cpu = sh("sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1")
    local zk = sh("dpkg-query -W -f='${Version}' zookeeper")
    local commit = sh("git rev-parse --short HEAD")
    if sh("git status --porcelain --untracked-files=no") ~= "" then
        commit = commit .. " (with local changes)"
    end
    return table.concat({
        "# disco benchmark results",
        "",
        string.format("- date: %s", sh("date -u '+%Y-%m-%d %H:%M UTC'")),
        string.format("- machine: %s cores (nproc)%s, %s", sh("nproc"),
                      cpu ~= "" and (", " .. cpu) or "", sh("uname -sr")),
        string.format("- ZooKeeper: %s (Debian package, local standalone server, on the JVM's defaults "
                          .. "as Debian's service runs it: bench/common.lua)", zk ~= "" and zk or "unknown"),
        string.format("- disco commit: %s", commit ~= "" and commit or "unknown"),
        "",
        "Produced by `make bench`; see bench/README.md for what each table measures.",
        "",
    }, "\n") .. "\n"
end

local function cell(v)
    return (tostring(v == nil and "-" or v):gsub("|", "\\|"))
end

--- Appends one table (and prints it). `header_row` and each row are lists
-- of cells (strings or numbers); `notes` an optional list of lines.
function _M.table(title, header_row, rows, notes)
    local lines = { "## " .. title, "" }
    local function row(list)
        local cells = {}
        for i = 1, #header_row do
            cells[i] = cell(list[i])
        end
        return "| " .. table.concat(cells, " | ") .. " |"
    end
    lines[#lines + 1] = row(header_row)
    local rule = {}
    for i = 1, #header_row do
        rule[i] = "---"
    end
    lines[#lines + 1] = "|" .. table.concat(rule, "|") .. "|"
    for _, r in ipairs(rows) do
        lines[#lines + 1] = row(r)
    end
    if notes and #notes > 0 then
        lines[#lines + 1] = ""
        for _, n in ipairs(notes) do
            lines[#lines + 1] = "- " .. n
        end
    end
    local text = table.concat(lines, "\n") .. "\n\n"
    io.stdout:write(text)
    io.stdout:flush()

    local path = _M.path()
    os.execute("mkdir -p \"$(dirname '" .. path:gsub("'", "'\\''") .. "')\"")
    local existing = io.open(path, "rb")
    local empty = true
    if existing then
        empty = existing:seek("end") == 0
        existing:close()
    end
    local f = assert(io.open(path, "ab"))
    if empty then
        f:write(header())
    end
    f:write(text)
    f:close()
end

local function median(list)
    local s = {}
    for i, v in ipairs(list) do
        s[i] = v
    end
    table.sort(s)
    local n = #s
    if n % 2 == 1 then
        return s[(n + 1) / 2]
    end
    return (s[n / 2] + s[n / 2 + 1]) / 2
end
_M.median = median

--- "median (min-max)" of a list of numbers, or "-" when it is empty.
function _M.spread(list, fmt)
    if not list or #list == 0 then
        return "-"
    end
    fmt = fmt or "%.1f"
    return string.format(fmt .. " (" .. fmt .. "-" .. fmt .. ")", median(list), math.min(unpack(list)),
                         math.max(unpack(list)))
end

--- a / b with two decimals, "-" when either is missing or b is 0.
function _M.ratio(a, b)
    if not a or not b or b == 0 then
        return "-"
    end
    return string.format("%.2f", a / b)
end

return _M
