-- Builds the same disco.core module as the Makefile (the C sources listed
-- here must equal the Makefile's CORE_SRC + BINDING_SRC; a spec checks it)
-- and installs the Lua runtime and the plugins.
--
--   luarocks --lua-version=5.1 make rockspec/disco-scm-1.rockspec \
--       LUA_INCDIR=/usr/include/luajit-2.1
rockspec_format = "3.0"
package = "disco"
version = "scm-1"
source = {
    url = "git+file:///dev/null",
}
description = {
    summary = "Lua-scriptable Dubbo service discovery on ZooKeeper",
    detailed = [[
disco implements Apache Dubbo's application-level service discovery on
ZooKeeper with a small C core (libuv, libzookeeper_mt) and a LuaJIT runtime
whose policies are hot-reloadable Lua plugins.]],
    license = "Apache-2.0",
}
dependencies = {
    "lua == 5.1",
}
external_dependencies = {
    LIBUV = { header = "uv.h", library = "uv" },
    ZOOKEEPER = { header = "zookeeper/zookeeper.h", library = "zookeeper_mt" },
    OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
build = {
    type = "builtin",
    modules = {
        ["disco.core"] = {
            sources = {
                "core/error.c",
                "core/handle.c",
                "core/log.c",
                "core/loop.c",
                "core/queue.c",
                "core/queue_probe.c",
                "core/signal.c",
                "core/timer.c",
                "core/fs_event.c",
                "core/zk_error.c",
                "core/zk_session.c",
                "core/zk_request.c",
                "core/zk_ephemeral.c",
                "core/zk_cache.c",
                "core/digest.c",
                "core/revcache.c",
                "core/hessian2_reader.c",
                "core/hessian2_writer.c",
                "core/dubbo_frame.c",
                "core/dubbo_body.c",
                "core/dubbo_server.c",
                "core/dubbo_client.c",
                "core/http_server.c",
                "bindings/dl_core.c",
                "bindings/dl_pcall.c",
                "bindings/dl_loop.c",
                "bindings/dl_log.c",
                "bindings/dl_handle.c",
                "bindings/dl_timer.c",
                "bindings/dl_signal.c",
                "bindings/dl_fs_event.c",
                "bindings/dl_queue.c",
                "bindings/dl_zk.c",
                "bindings/dl_zk_ephemeral.c",
                "bindings/dl_zk_cache.c",
                "bindings/dl_revcache.c",
                "bindings/dl_system.c",
                "bindings/dl_hessian2.c",
                "bindings/dl_dubbo.c",
                "bindings/dl_http.c",
            },
            defines = { "_GNU_SOURCE", "THREADED" },
            incdirs = {
                "core", "$(LIBUV_INCDIR)", "$(ZOOKEEPER_INCDIR)", "$(OPENSSL_INCDIR)",
            },
            libdirs = { "$(LIBUV_LIBDIR)", "$(ZOOKEEPER_LIBDIR)", "$(OPENSSL_LIBDIR)" },
            libraries = { "uv", "zookeeper_mt", "crypto", "http_parser", "pthread" },
        },
        ["disco"] = "lua/disco/init.lua",
        ["disco.events"] = "lua/disco/events.lua",
        ["disco.log"] = "lua/disco/log.lua",
        ["disco.plugin"] = "lua/disco/plugin.lua",
        ["disco.plugin_chain"] = "lua/disco/plugin_chain.lua",
        ["disco.plugin_ctx"] = "lua/disco/plugin_ctx.lua",
        ["disco.address_list"] = "lua/disco/address_list.lua",
        ["disco.consumer"] = "lua/disco/consumer.lua",
        ["disco.instance"] = "lua/disco/instance.lua",
        ["disco.java_string"] = "lua/disco/java_string.lua",
        ["disco.mapping"] = "lua/disco/mapping.lua",
        ["disco.validation"] = "lua/disco/validation.lua",
        ["disco.metadata.client_pool"] = "lua/disco/metadata/client_pool.lua",
        ["disco.metadata.hessian"] = "lua/disco/metadata/hessian.lua",
        ["disco.metadata.fetch"] = "lua/disco/metadata/fetch.lua",
        ["disco.metadata.service"] = "lua/disco/metadata/service.lua",
        ["disco.metadata_info"] = "lua/disco/metadata_info.lua",
        ["disco.properties"] = "lua/disco/properties.lua",
        ["disco.provider"] = "lua/disco/provider.lua",
        ["disco.snapshot"] = "lua/disco/snapshot.lua",
        ["disco.service_id"] = "lua/disco/service_id.lua",
        ["disco.subscription"] = "lua/disco/subscription.lua",
        ["disco.url"] = "lua/disco/url.lua",
        ["disco.registry.instance"] = "lua/disco/registry/instance.lua",
        ["disco.registry.memory_store"] = "lua/disco/registry/memory_store.lua",
        ["disco.registry.url"] = "lua/disco/registry/url.lua",
        ["disco.registry.zk_instance"] = "lua/disco/registry/zk_instance.lua",
        ["disco.runtime"] = "lua/disco/runtime.lua",
        ["disco.sandbox"] = "lua/disco/sandbox.lua",
        ["disco.cli"] = "lua/disco/cli/init.lua",
        ["disco.cli.help"] = "lua/disco/cli/help.lua",
        ["disco.cli.ls"] = "lua/disco/cli/ls.lua",
        ["disco.cli.run"] = "lua/disco/cli/run.lua",
        ["disco.cli.options"] = "lua/disco/cli/options.lua",
        ["disco.cli.provide"] = "lua/disco/cli/provide.lua",
        ["disco.cli.resolve"] = "lua/disco/cli/resolve.lua",
        ["disco.cli.revision"] = "lua/disco/cli/revision.lua",
        ["disco.cli.subscriber"] = "lua/disco/cli/subscriber.lua",
        ["disco.cli.watch"] = "lua/disco/cli/watch.lua",
        ["disco.cli.version"] = "lua/disco/cli/version.lua",
        ["disco.testing.files"] = "lua/disco/testing/files.lua",
        ["disco.testing.ports"] = "lua/disco/testing/ports.lua",
        ["disco.testing.process"] = "lua/disco/testing/process.lua",
        ["disco.testing.zookeeper"] = "lua/disco/testing/zookeeper/init.lua",
        ["disco.testing.zookeeper.commands"] = "lua/disco/testing/zookeeper/commands.lua",
        ["disco.testing.zookeeper.ensemble"] = "lua/disco/testing/zookeeper/ensemble.lua",
        ["disco.testing.zookeeper.jvm"] = "lua/disco/testing/zookeeper/jvm.lua",
        ["disco.testing.zookeeper.server"] = "lua/disco/testing/zookeeper/server.lua",
    },
    copy_directories = { "plugins", "docs" },
}
