--- Whole files: reading one, and replacing one's content. A replacement
-- goes to a temporary file next to it, which is then renamed over it, so
-- that a reader (a consumer reading its snapshot at start, nginx including
-- an upstream file at a reload) sees the old content or the new one, never
-- a part. Plain `io` and `os.rename`: no fsync, so this guards against a
-- writer that dies, not against a machine that does. Errors name the errno
-- and the file the same way for reads and writes.
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
    msg = tostring(msg)
    -- io.open's message starts with the path, which ours names already.
    if msg:sub(1, #path + 2) == path .. ": " then
        msg = msg:sub(#path + 3)
    end
    return nil, string_format("%s: cannot %s %s: %s", name, what, path, msg), name
end

--- The whole content of `path`.
-- @tparam string path
-- @tparam[opt] number max_bytes refuse a larger file, with EFBIG (a bound
--   for files that come from elsewhere)
-- @treturn[1] string
-- @treturn[2] nil
-- @treturn[2] string "ENAME: cannot read PATH: reason"
-- @treturn[2] string "ENAME"
function _M.read(path, max_bytes)
    local f, err, errno = io_open(path, "rb")
    if not f then
        return failure("read", path, err, errno)
    end
    if max_bytes then
        local size = f:seek("end")
        if size and size > max_bytes then
            f:close()
            return nil, string_format("EFBIG: cannot read %s: larger than %d bytes", path, max_bytes),
                "EFBIG"
        end
        f:seek("set")
    end
    local text, rerr, rerrno = f:read("*a")
    f:close()
    if not text then
        -- A directory opens, then fails here.
        return failure("read", path, rerr, rerrno)
    end
    return text
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
