--- Replacing a file's whole content: the text goes to a temporary file
-- next to it, which is then renamed over it, so that a reader (a consumer
-- reading its snapshot at start, nginx including an upstream file at a
-- reload) sees the old content or the new one, never a part. Plain `io`
-- and `os.rename`: no fsync, so this guards against a writer that dies,
-- not against a machine that does.
-- @module disco.file_replace

local io_open = io.open
local os_remove = os.remove
local os_rename = os.rename
local string_format = string.format
local tostring = tostring

local _M = {}

-- errno numbers (Linux) of the failures worth naming; io.open and
-- os.rename give them as their third result. Anything else is EIO.
local ERRNO_NAMES = {
    [1] = "EPERM", [2] = "ENOENT", [13] = "EACCES", [17] = "EEXIST", [20] = "ENOTDIR",
    [21] = "EISDIR", [28] = "ENOSPC", [30] = "EROFS", [36] = "ENAMETOOLONG",
}

-- Temporary names differ per process and per write.
local seq = 0

local function failure(what, path, msg, errno)
    local name = ERRNO_NAMES[errno] or "EIO"
    return nil, string_format("%s: cannot %s %s: %s", name, what, path, tostring(msg)), name
end

--- Writes `text` as the content of `path`, atomically.
-- @tparam string path
-- @tparam string text
-- @treturn[1] boolean true
-- @treturn[2] nil
-- @treturn[2] string "ENAME: message"
-- @treturn[2] string "ENAME"
function _M.write(path, text)
    seq = seq + 1
    -- disco.core on first use only: nginx's master loads this module (to
    -- check options) and must not load the core before the fork.
    local tmp = path .. ".tmp." .. require("disco.core").getpid() .. "_" .. seq
    local f, err, errno = io_open(tmp, "wb")
    if not f then
        return failure("create", tmp, err, errno)
    end
    local ok, werr = f:write(text)
    local cok, cerr = f:close()
    if not ok or not cok then
        os_remove(tmp)
        return failure("write", tmp, werr or cerr)
    end
    local rok, rerr, rerrno = os_rename(tmp, path)
    if not rok then
        os_remove(tmp)
        return failure("rename " .. tmp .. " to", path, rerr, rerrno)
    end
    return true
end

return _M
