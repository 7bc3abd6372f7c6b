--- The owner's half of the rendered-upstream mode (`upstream_files`):
-- each list the owner publishes for a configured subscription is rendered
-- (disco.resty.upstream_file) and written when its text changed, and the
-- nginx master is sent one HUP per `reload_interval` at most, after the
-- last change of a burst (trailing edge), so that a native `upstream`
-- block that includes the file follows the registry.
--
-- Whether a reload is needed is judged against what this nginx generation
-- loaded (the files' content as `init` read them in the master, when the
-- configuration was read), not against the previous write: after a reload
-- the new generation renders the same text, finds it loaded and sends
-- nothing (no reload loop), and a write that came after a reload someone
-- else started is still followed by one.
--
-- The counters live in the dict (they survive reloads): c/upstream_renders,
-- c/upstream_writes, c/upstream_reloads, c/upstream_failures, and
-- "upstream/last_error".
-- @module disco.resty.upstream_keeper

local shared = require "disco.resty.shared"
local upstream_file = require "disco.resty.upstream_file"

local ngx = ngx
local pcall = pcall
local tostring = tostring

local _M = {}
local keeper = {}
keeper.__index = keeper

_M.COUNTERS = { "upstream_renders", "upstream_writes", "upstream_reloads", "upstream_failures" }
_M.LAST_ERROR = "upstream/last_error"

local SIGHUP = 1

local ffi_C
local function libc()
    if ffi_C == nil then
        local ffi = require "ffi"
        -- Each declaration alone: another module may have declared one.
        pcall(ffi.cdef, "int getppid(void);")
        pcall(ffi.cdef, "int kill(int pid, int sig);")
        ffi_C = ffi.C
    end
    return ffi_C
end

--- The pid to send the reload to, or nil and why not. Only the master of
-- this nginx: the parent of this process (a worker, or the privileged
-- agent), which nginx also names as its master, and the same parent as
-- when the keeper started (a reparented orphan's parent is not nginx).
function _M.master_pid(expected_parent)
    local ok, process = pcall(require, "ngx.process")
    if not ok then
        return nil, "ngx.process is not available"
    end
    local kind = process.type()
    if kind ~= "worker" and kind ~= "privileged agent" then
        return nil, "this process is a " .. tostring(kind) .. " (nginx runs without a master)"
    end
    local ppid = libc().getppid()
    local master = process.get_master_pid and process.get_master_pid()
    if not ppid or ppid <= 1 then
        return nil, "the parent pid is " .. tostring(ppid)
    end
    if master ~= ppid then
        return nil, "the parent pid " .. ppid .. " is not nginx's master pid " .. tostring(master)
    end
    if expected_parent and ppid ~= expected_parent then
        return nil, "the parent changed from " .. expected_parent .. " to " .. ppid
    end
    return ppid
end

--- A keeper for `conf.upstream_files` (checked, keyed by service ID).
-- @tparam table conf the checked configuration
-- @tparam table dict the shared dict
-- @tparam table loaded path -> the content nginx loaded (nil: none)
-- @tparam function current() whether the owner still holds the dict's
-- current generation (only the current owner writes)
function _M.new(conf, dict, loaded, current)
    for _, name in ipairs(_M.COUNTERS) do
        shared.ensure(dict, "c/" .. name, 0)
    end
    local parent = _M.master_pid()
    return setmetatable({
        -- How the reload is sent (the unit spec replaces both).
        find_master = _M.master_pid,
        hup = function(pid)
            if libc().kill(pid, SIGHUP) ~= 0 then
                return nil, "errno " .. require("ffi").errno()
            end
            return true
        end,
        files = conf.upstream_files,
        interval_ms = conf.reload_interval * 1000,
        dict = dict,
        loaded = loaded or {},
        current = current,
        parent = parent,      -- the master at start (nil: no reload possible)
        texts = {},           -- sid -> the text this keeper rendered last
        failed = {},          -- sid -> nodes whose write failed, retried by step
        reload_at = nil,      -- ms (hrtime) when the next reload is due
    }, keeper)
end

local function record_error(self, message)
    shared.bump(self.dict, "upstream_failures")
    self.dict:safe_set(_M.LAST_ERROR, message)
    ngx.log(ngx.ERR, "disco: ", message)
end

-- Whether some file's text differs from what this generation loaded.
local function differs_from_loaded(self)
    for sid, text in pairs(self.texts) do
        if text ~= self.loaded[self.files[sid].path] then
            return true
        end
    end
    return false
end

--- The owner published `nodes` for `sid`: renders them, writes the file
-- when its text changed, and schedules a reload when nginx runs another
-- text. `now` is the loop's clock in ms.
function keeper:list(sid, nodes, now)
    local file = self.files[sid]
    if not file or not self.current() then
        return
    end
    local text, skipped = upstream_file.render(nodes, {
        sid = sid, max_fails = file.max_fails, fail_timeout = file.fail_timeout,
    })
    shared.bump(self.dict, "upstream_renders")
    for _, why in ipairs(skipped) do
        ngx.log(ngx.WARN, "disco: ", sid, ": an address left out of ", file.path, ": ", why)
    end
    local changed, err = upstream_file.write_if_changed(file.path, text)
    if changed == nil then
        self.failed[sid] = nodes
        return record_error(self, "cannot write the upstream file of " .. sid .. ": " .. err)
    end
    self.failed[sid] = nil
    self.texts[sid] = text
    if changed then
        shared.bump(self.dict, "upstream_writes")
        ngx.log(ngx.NOTICE, "disco: wrote ", file.path, " for ", sid)
    end
    if not self.reload_at and differs_from_loaded(self) then
        self.reload_at = now + self.interval_ms
    end
end

--- Retries failed writes (every `retry_ms`) and sends the reload when due.
function keeper:step(now, retry_ms)
    if next(self.failed) and now - (self.last_retry or 0) >= retry_ms then
        self.last_retry = now
        for sid, nodes in pairs(self.failed) do
            self:list(sid, nodes, now)
        end
    end
    if not self.reload_at or now < self.reload_at then
        return
    end
    self.reload_at = nil
    if not self.current() or not differs_from_loaded(self) then
        return
    end
    local pid, why = self.find_master(self.parent)
    if not pid then
        -- Not retried: the parent will not become nginx's master again.
        return record_error(self, "no reload for the upstream files: " .. why)
    end
    local sent, serr = self.hup(pid)
    if not sent then
        self.reload_at = now + self.interval_ms
        return record_error(self, "cannot send HUP to the nginx master " .. pid .. ": "
                            .. tostring(serr))
    end
    -- What the next generation loads: further changes by this owner (until
    -- it is superseded) reload only when they differ from it.
    for sid, text in pairs(self.texts) do
        self.loaded[self.files[sid].path] = text
    end
    shared.bump(self.dict, "upstream_reloads")
    ngx.log(ngx.NOTICE, "disco: an upstream file changed: reloading nginx (HUP to master ", pid,
            ")")
end

--- The counters and the last error, for status().
function _M.status(dict, conf)
    local out = { files = {} }
    for _, name in ipairs(_M.COUNTERS) do
        out[name:sub(#"upstream_" + 1)] = shared.counter(dict, name)
    end
    out.last_error = dict:get(_M.LAST_ERROR)
    for sid, file in pairs(conf.upstream_files) do
        out.files[sid] = file.path
    end
    return out
end

return _M
