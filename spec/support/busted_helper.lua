-- Loaded once by busted before any spec file (see .busted). Requiring the
-- helpers here keeps one instance of them, and so one shared ZooKeeper, for
-- the whole run despite per-file insulation; the subscription below stops
-- that server and removes temporary directories when the run ends, whether
-- specs passed or not.
local busted = require "busted"
local helpers = require "spec.helpers"

busted.subscribe({ "suite", "end" }, function()
    helpers.teardown()
    return nil, true
end)
