package org.apache.dubbo.metadata;

import java.io.Serializable;
import java.util.Map;

/**
 * A stand-in for Dubbo's MetadataInfo with exactly its serialized fields
 * (WIRE.md section 5), so that Hessian writes and reads Dubbo's class names:
 * org.apache.dubbo.metadata.MetadataInfo and its nested ServiceInfo.
 */
public class MetadataInfo implements Serializable {
    private static final long serialVersionUID = 1L;

    public String app;
    public String revision;
    public Map<String, ServiceInfo> services;

    public MetadataInfo() {
    }

    public MetadataInfo(String app, String revision, Map<String, ServiceInfo> services) {
        this.app = app;
        this.revision = revision;
        this.services = services;
    }

    /** One exported service, keyed in MetadataInfo.services by its match key. */
    public static class ServiceInfo implements Serializable {
        private static final long serialVersionUID = 1L;

        public String name;
        public String group;
        public String version;
        public String protocol;
        public int port;
        public String path;
        public Map<String, String> params;

        public ServiceInfo() {
        }

        public ServiceInfo(String name, String group, String version, String protocol,
                int port, String path, Map<String, String> params) {
            this.name = name;
            this.group = group;
            this.version = version;
            this.protocol = protocol;
            this.port = port;
            this.path = path;
            this.params = params;
        }
    }
}
