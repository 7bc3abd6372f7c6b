--- Small file helpers for the test fixtures.
--
-- Reading, writing and measuring files, the last lines of a text, and the
-- fixtures' temporary directories (`disco-zk-*`). Nothing here deletes a
-- directory it did not create.
--
-- @module disco.testing.files

local process = require("disco.testing.process")

local _M = {}

local quote = process.quote
local shell = process.shell
local table_concat = table.concat
local tostring = tostring

--- The contents of a file, or nil when it cannot be opened.
-- @tparam string path
-- @tparam[opt] number offset bytes to skip first
-- @treturn string|nil
function _M.read_file(path, offset)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    if offset and offset > 0 then
        f:seek("set", offset)
    end
    local data = f:read("*a")
    f:close()
    return data
end

--- The size of a file in bytes; 0 when it cannot be opened.
-- @tparam string path
-- @treturn number
function _M.file_size(path)
    local f = io.open(path, "rb")
    if not f then
        return 0
    end
    local size = f:seek("end")
    f:close()
    return size or 0
end

--- Replace a file's contents.
-- @tparam string path
-- @tparam string data
-- @raise when the file cannot be opened, blaming the caller's caller
function _M.write_file(path, data)
    local f, err = io.open(path, "wb")
    if not f then
        error("disco.testing: cannot write " .. path .. ": " .. tostring(err), 3)
    end
    f:write(data)
    f:close()
end

--- The last `n` non-empty lines of a text, or "(empty)".
-- @tparam string|nil text
-- @tparam number n
-- @treturn string
function _M.tail(text, n)
    if not text or text == "" then
        return "(empty)"
    end
    local lines = {}
    for line in text:gmatch("[^\n]+") do
        lines[#lines + 1] = line
    end
    local first = math.max(1, #lines - n + 1)
    return table_concat(lines, "\n", first)
end

--- Create a fresh `disco-zk-XXXXXXXX` directory under `root`.
-- @tparam string root an absolute path, or one relative to `$PWD`
-- @treturn string the directory's absolute path
-- @raise when it cannot be created, blaming the caller's caller
function _M.make_temp_dir(root)
    if root:sub(1, 1) ~= "/" then
        root = (os.getenv("PWD") or ".") .. "/" .. root
    end
    -- Java properties files treat a backslash as an escape.
    if root:find("[\\\n]") then
        error("disco.testing: unusable temp root " .. root, 3)
    end
    local ok, out = shell("mktemp -d " .. quote(root .. "/disco-zk-XXXXXXXX"))
    local dir = ok and out:match("^(/[^\n]*/disco%-zk%-[%w]+)\n?$")
    if not dir then
        error("disco.testing: mktemp failed under " .. root .. ": " .. out, 3)
    end
    return dir
end

--- Remove a directory made by @{make_temp_dir} with everything in it.
-- Any other path is left alone.
-- @tparam string|nil dir
function _M.remove_temp_dir(dir)
    -- Only ever delete what make_temp_dir created.
    if dir and dir:match("^/.*/disco%-zk%-[%w]+$") then
        shell("rm -rf -- " .. quote(dir))
    end
end

return _M
