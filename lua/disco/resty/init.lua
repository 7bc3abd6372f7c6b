--- disco inside nginx (Debian's nginx with the Lua module, or OpenResty):
-- one owner process runs the runtime, every worker reads the address lists
-- from a shared dict (docs/openresty.md).
--
--    lua_shared_dict disco 4m;
--    init_by_lua_block {
--        require("disco.resty").init{
--            registry = "zookeeper://127.0.0.1:2181",
--            subscriptions = { "rest:com.acme.Hello" },
--        }
--    }
--    init_worker_by_lua_block { require("disco.resty").init_worker() }
--    -- any request phase:
--    local nodes = require("disco.resty").nodes("rest:com.acme.Hello")
--
-- `init` runs in the master: it checks the configuration and the dict and
-- creates nothing else (no loop, no thread, no socket), since none would
-- survive the fork.
-- @module disco.resty

local options = require "disco.resty.options"
local shared = require "disco.resty.shared"

local ngx = ngx

local _M = {
    VERSION = "0.1.0",
}

local conf        -- the checked configuration
local dict        -- ngx.shared[conf.dict]
local reader      -- this worker's cached reads
local agent_on    -- whether init enabled the privileged agent
local the_owner   -- the owner, in the owning process only
local loaded      -- upstream file path -> its content when this configuration was read

local function on_decode_error(sid, version, err)
    ngx.log(ngx.ERR, "disco: version ", version, " of ", sid, " is unreadable: ", err,
            " (serving the previous list)")
end

local function attach(c)
    local d = ngx.shared[c.dict]
    if not d then
        error("disco.resty: no lua_shared_dict named '" .. c.dict .. "' (add `lua_shared_dict "
              .. c.dict .. " 4m;` to the http block)", 0)
    end
    conf, dict = c, d
    reader = shared.reader(d, on_decode_error)
end

-- Asks for OpenResty's privileged agent (it only exists with OpenResty's
-- nginx patch; Debian's nginx answers an error).
local function try_agent()
    local ok, process = pcall(require, "ngx.process")
    if not ok then
        return false, process
    end
    local called, enabled, err = pcall(process.enable_privileged_agent)
    if not called then
        return false, enabled
    end
    if not enabled then
        return false, err
    end
    return true
end

--- Checks the configuration and the dict; in init_by_lua. Raises (nginx
-- refuses to start) on any bad option or a dict too small for `estimate`.
-- @tparam table c see docs/openresty.md
function _M.init(c)
    local checked = options.check(c)
    attach(checked)
    local need = options.check_capacity(checked, dict:capacity())
    -- The master reads the configuration (and the upstream files it
    -- includes) just before init_by_lua: what the files hold now is what
    -- this generation of nginx balances over (the workers inherit it).
    loaded = {}
    local read = require("disco.file_replace").read
    for _, file in pairs(checked.upstream_files) do
        loaded[file.path] = read(file.path)
    end
    agent_on = false
    if checked.owner ~= "worker0" and ngx.get_phase() == "init" then
        local ok, err = try_agent()
        agent_on = ok
        if checked.owner == "agent" and not ok then
            error("disco.resty: owner = \"agent\" but the privileged agent is not available: "
                  .. tostring(err) .. " (Debian's nginx lacks OpenResty's patch; use \"auto\" "
                  .. "or \"worker0\")", 0)
        end
    elseif checked.owner == "agent" then
        agent_on = true -- enabled by the host (APISIX does)
    end
    ngx.log(ngx.INFO, "disco: ", #checked.subscriptions, " subscriptions, dict '", checked.dict,
            "' ", dict:capacity(), " bytes (", dict:free_space(), " free, ~", need,
            " needed), owner: ", agent_on and "privileged agent" or "worker 0")
    return true
end

--- Whether this process is the owner, for the configured mode.
local function owns()
    if agent_on then
        return require("ngx.process").type() == "privileged agent", "agent"
    end
    return ngx.worker.id() == 0, "worker0"
end

--- Starts the owner in the owning process; in init_worker_by_lua of every
-- process.
function _M.init_worker()
    if not conf then
        error("disco.resty: init_worker() before init{...} (call init in init_by_lua)", 2)
    end
    local mine, mode = owns()
    if mine then
        the_owner = require("disco.resty.owner").start(conf, mode, loaded)
    end
    return true
end

--- The nodes of `sid` (`{host=, port=, weight=, metadata=}`), as the
-- owner last published them; nil when nothing was published yet. The
-- table is shared by every caller of this worker: read only. One
-- shared-dict read while the version is unchanged.
function _M.nodes(sid)
    if not reader then
        error("disco.resty: nodes() before init{...}", 2)
    end
    return reader.nodes(sid)
end

--- The checked configuration (nil before init).
function _M.config()
    return conf
end

--- The shared dict (nil before init).
function _M.dict()
    return dict
end

--- Whether this process runs the owner.
function _M.is_owner()
    return the_owner ~= nil and not the_owner.stopped
end

--- The state of the owner and the lists, as the dict holds them, and this
-- worker's view: `{ owner = { pid, generation, state, mode, since, beat },
-- worker = { pid, id }, services = { [sid] = { version, nodes, cached } },
-- counters = {...} }`, and with `upstream_files`: `upstream_files = {
-- renders, writes, reloads, failures, last_error, files = { [sid] = path } }`.
function _M.status()
    local services = {}
    for _, sub in ipairs(conf.subscriptions) do
        local list = reader.nodes(sub.id)
        services[sub.id] = {
            version = dict:get(shared.version_key(sub.id)),
            nodes = list and #list or 0,
            cached = reader.version(sub.id),
        }
    end
    local counters = {}
    for _, name in ipairs(shared.COUNTERS) do
        counters[name] = shared.counter(dict, name)
    end
    counters.feedback_queued = dict:llen(shared.FEEDBACK) or 0
    return {
        owner = {
            pid = dict:get("owner/pid"), generation = dict:get(shared.OWNER_GEN),
            state = dict:get("owner/state"), mode = dict:get("owner/mode"),
            since = dict:get("owner/since"), beat = dict:get("owner/beat"),
            steps = dict:get("owner/steps"), busy_ms = dict:get("owner/busy_ms"),
        },
        worker = { pid = ngx.worker.pid(), id = ngx.worker.id() },
        services = services,
        counters = counters,
        upstream_files = next(conf.upstream_files)
            and require("disco.resty.upstream_keeper").status(dict, conf) or nil,
        dict = { capacity = dict:capacity(), free_space = dict:free_space() },
    }
end

--- A content handler that answers `status()` as JSON (for a location such
-- as `/disco/status`). `?nodes=SERVICE_ID` answers that list instead.
function _M.status_handler()
    local cjson = require "cjson.safe"
    ngx.header["Content-Type"] = "application/json"
    local sid = ngx.var.arg_nodes
    if sid then
        sid = ngx.unescape_uri(sid)
        ngx.say(cjson.encode({ service = sid, nodes = _M.nodes(sid) or cjson.empty_array,
                               version = dict:get(shared.version_key(sid)) }))
        return
    end
    ngx.say(cjson.encode(_M.status()))
end

return _M
