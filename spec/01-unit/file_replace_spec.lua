-- disco.file_replace: whole-file reads and atomic replacement, with errors
-- that name the errno and the file once.
local helpers = require "spec.helpers"
local file_replace = require "disco.file_replace"

describe("disco.file_replace", function()
    local dir

    before_each(function()
        dir = helpers.tmpdir()
    end)

    it("reads back exactly what it wrote, binary included", function()
        local text = "a\0b\r\n" .. string.rep("\255", 70000)
        assert.is_true(file_replace.write(dir .. "/f", text))
        assert.equal(text, file_replace.read(dir .. "/f"))
        assert.equal("", (file_replace.read(helpers.write_file(dir .. "/empty", ""))))
    end)

    it("replaces the content whole and leaves no temporary file", function()
        assert.is_true(file_replace.write(dir .. "/f", string.rep("old ", 1000)))
        assert.is_true(file_replace.write(dir .. "/f", "new"))
        assert.equal("new", file_replace.read(dir .. "/f"))
        local p = io.popen("ls -A " .. dir)
        local names = p:read("*a")
        p:close()
        assert.equal("f\n", names)
    end)

    it("names the errno and the path once when it cannot read", function()
        local text, err, ename = file_replace.read(dir .. "/missing")
        assert.is_nil(text)
        assert.equal("ENOENT", ename)
        assert.equal("ENOENT: cannot read " .. dir .. "/missing: No such file or directory", err)
        text, err, ename = file_replace.read(dir)
        assert.is_nil(text)
        assert.equal("EISDIR", ename)
        assert.matches("^EISDIR: cannot read " .. dir:gsub("%p", "%%%0") .. ": ", err)
    end)

    it("refuses a file larger than max_bytes and reads one of exactly that size", function()
        helpers.write_file(dir .. "/f", "12345")
        assert.equal("12345", file_replace.read(dir .. "/f", 5))
        local text, err, ename = file_replace.read(dir .. "/f", 4)
        assert.is_nil(text)
        assert.equal("EFBIG", ename)
        assert.equal("EFBIG: cannot read " .. dir .. "/f: larger than 4 bytes", err)
    end)

    it("names the errno and the path once when it cannot write", function()
        local ok, err, ename = file_replace.write(dir .. "/no/such/dir/f", "x")
        assert.is_nil(ok)
        assert.equal("ENOENT", ename)
        local where = dir:gsub("%p", "%%%0") .. "/no/such/dir/f%.tmp%.[%d_]+"
        assert.matches("^ENOENT: cannot create " .. where .. ": No such file", err)
    end)
end)
