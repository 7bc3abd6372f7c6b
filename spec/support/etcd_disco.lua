-- `disco ARGS...` under luajit with spec.support.etcd_http_shim, for the
-- etcd specs' child processes while the core has no HTTP client of its
-- own: `luajit spec/support/etcd_disco.lua provide --registry etcd://...`.
-- LUA_PATH and LUA_CPATH come from the spec run.
require("spec.support.etcd_http_shim").install()
os.exit(require("disco.cli").main(arg))
