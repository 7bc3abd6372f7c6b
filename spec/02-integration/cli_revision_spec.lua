-- `disco revision`: the revision of a MetadataInfo document from a file or
-- standard input, warnings for a stale stated revision, exit statuses.
local helpers = require "spec.helpers"

-- Runs the disco binary with `args`, feeding `stdin_text` (or nothing) on
-- standard input. helpers.run_disco has no stdin, hence this.
local function run(args, stdin_text)
    local dir = helpers.tmpdir()
    local q = helpers.shell_quote
    local input = helpers.write_file(dir .. "/stdin", stdin_text or "")
    local parts = { "timeout", "-s", "KILL", "30", q(helpers.disco_bin) }
    for _, a in ipairs(args) do
        parts[#parts + 1] = q(a)
    end
    local cmd = table.concat(parts, " ") .. " <" .. q(input) .. " >" .. q(dir .. "/out")
        .. " 2>" .. q(dir .. "/err") .. "; echo $?"
    local pipe = assert(io.popen(cmd))
    local status = tonumber(pipe:read("*l"))
    pipe:close()
    return status, helpers.read_file(dir .. "/out"), helpers.read_file(dir .. "/err")
end

-- The python3 hashlib vector of metadata_info_spec: its revision is
-- f461ce982fd485564cf3ec0fef86102b.
local DOC = [[{"app":"demo-provider","revision":"f461ce982fd485564cf3ec0fef86102b","services":{
  "com.acme.DemoService:dubbo":{"name":"com.acme.DemoService","group":null,"version":null,"protocol":"dubbo",
  "port":20880,"path":"com.acme.DemoService",
  "params":{"application":"demo-provider","methods":"sayHello","side":"provider"}}}}]]
local REV = "f461ce982fd485564cf3ec0fef86102b"

describe("disco revision", function()
    it("prints the revision of a file, and of standard input", function()
        local file = helpers.write_file(helpers.tmpdir() .. "/doc.json", DOC)
        local status, out, err = run({ "revision", file })
        assert.equals(0, status)
        assert.equals(REV .. "\n", out)
        assert.equals("", err)
        status, out = run({ "revision", "-" }, DOC)
        assert.equals(0, status)
        assert.equals(REV .. "\n", out)
        status, out = run({ "revision" }, DOC)
        assert.equals(0, status)
        assert.equals(REV .. "\n", out)
        status, out = run({ "revision" }, '{"app":"x","services":{}}')
        assert.equals(0, status)
        assert.equals("0\n", out)
    end)

    it("computes the revision and warns when the document states another", function()
        local status, out, err = run({ "revision" }, (DOC:gsub(REV, "0123")))
        assert.equals(0, status)
        assert.equals(REV .. "\n", out)
        assert.matches("warning: standard input states revision 0123, computed " .. REV, err, 1, true)
    end)

    it("fails with status 1 on invalid documents and unreadable files", function()
        local status, out, err = run({ "revision" }, "{not json")
        assert.equals(1, status)
        assert.equals("", out)
        assert.matches("disco revision: standard input: metadata: invalid JSON", err, 1, true)
        status, out, err = run({ "revision" }, '{"services":{}}')
        assert.equals(1, status)
        assert.matches("missing app", err)
        assert.equals("", out)
        status, out, err = run({ "revision", "/nonexistent/doc.json" })
        assert.equals(1, status)
        assert.matches("cannot read '/nonexistent/doc.json'", err, 1, true)
        assert.equals("", out)
    end)

    it("exits 2 on usage errors, and is listed by help", function()
        local status, _, err = run({ "revision", "a", "b" })
        assert.equals(2, status)
        assert.matches("usage: disco revision %[FILE|%-%]", err)
        status, _, err = run({ "revision", "--json" })
        assert.equals(2, status)
        assert.matches("unknown option '%-%-json'", err)
        local out
        status, out = run({ "help" })
        assert.equals(0, status)
        assert.matches("revision%s+compute the revision of a MetadataInfo JSON document", out)
        status, out = run({ "help", "revision" })
        assert.equals(0, status)
        assert.matches("usage: disco revision %[FILE|%-%]", out)
    end)
end)
