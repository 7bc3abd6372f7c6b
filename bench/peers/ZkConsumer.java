import com.caucho.hessian.io.Hessian2Input;
import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.type.CollectionType;
import java.io.IOException;
import java.net.Socket;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.dubbo.metadata.MetadataInfo;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooKeeper;

/**
 * The Java comparator of the benchmarks (bench/peers/README contract in
 * bench/README.md): a Dubbo-style consumer written plainly on the official
 * ZooKeeper Java client and jackson-databind, as a user would write one —
 * getChildren, every getData pipelined with callbacks and a CountDownLatch,
 * each instance parsed into objects, one MetadataInfo fetch per revision
 * (remote: the metadata report in ZooKeeper; local: the instance's
 * MetadataService over dubbo/Hessian2, through spec/interop/Dubbo.java),
 * and one URL per instance of the service.
 *
 *   cold  --zk HOST:PORT --app APP --service IFACE --mode remote|local
 *   watch --zk HOST:PORT --app APP --service IFACE
 *   hold  --zk HOST:PORT [--apps N]
 *
 * Only the result lines go to stdout.
 */
public final class ZkConsumer {
    private ZkConsumer() {
    }

    static final long WAIT_S = 300;
    static final ObjectMapper JSON = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);
    static final Random RANDOM = new Random();

    /** The payload of a Curator ServiceInstance as Dubbo writes it. */
    @JsonIgnoreProperties(ignoreUnknown = true)
    public static final class Payload {
        public String id;
        public String name;
        public Map<String, String> metadata;
    }

    /** An instance node under /services/APP. */
    @JsonIgnoreProperties(ignoreUnknown = true)
    public static final class Instance {
        public String name;
        public String id;
        public String address;
        public int port;
        public Payload payload;
        public long registrationTimeUTC;

        String meta(String key) {
            return payload == null || payload.metadata == null ? null : payload.metadata.get(key);
        }
    }

    @JsonIgnoreProperties(ignoreUnknown = true)
    public static final class Endpoint {
        public int port;
        public String protocol;
    }

    @JsonIgnoreProperties(ignoreUnknown = true)
    public static final class Service {
        public String name;
        public String group;
        public String version;
        public String protocol;
        public int port;
        public String path;
        public Map<String, String> params;
    }

    @JsonIgnoreProperties(ignoreUnknown = true)
    public static final class Metadata {
        public String app;
        public String revision;
        public Map<String, Service> services;
    }

    static final CollectionType ENDPOINTS = JSON.getTypeFactory().constructCollectionType(List.class,
            Endpoint.class);

    // ---- arguments ----

    static Map<String, String> options(String[] args) {
        Map<String, String> o = new HashMap<>();
        for (int i = 1; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("--")) {
                throw new IllegalArgumentException("expected an --option, got " + args[i]);
            }
            o.put(args[i].substring(2), args[i + 1]);
        }
        return o;
    }

    static String need(Map<String, String> o, String key) {
        String v = o.get(key);
        if (v == null) {
            throw new IllegalArgumentException("missing --" + key);
        }
        return v;
    }

    // ---- ZooKeeper ----

    static ZooKeeper connect(String hosts, Watcher children) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(hosts, 30000, event -> {
            if (event.getState() == Watcher.Event.KeeperState.SyncConnected && event.getPath() == null) {
                connected.countDown();
            } else if (event.getType() == Watcher.Event.EventType.NodeChildrenChanged && children != null) {
                children.process(event);
            }
        });
        if (!connected.await(30, TimeUnit.SECONDS)) {
            throw new IOException("could not connect to " + hosts);
        }
        return zk;
    }

    static Instance parse(byte[] data) {
        try {
            return JSON.readValue(data, Instance.class);
        } catch (IOException e) {
            System.err.println("skipping an instance: " + e.getMessage());
            return null;
        }
    }

    /**
     * Reads the named children of `path` with pipelined getData calls, each
     * parsed in its callback, into `into` (child name -> instance).
     */
    static void readInstances(ZooKeeper zk, String path, Collection<String> names, Map<String, Instance> into)
            throws Exception {
        CountDownLatch done = new CountDownLatch(names.size());
        for (String name : names) {
            zk.getData(path + "/" + name, false, (rc, p, ctx, data, stat) -> {
                if (rc == 0) {
                    Instance inst = parse(data);
                    if (inst != null) {
                        into.put(name, inst);
                    }
                }
                done.countDown();
            }, null);
        }
        if (!done.await(WAIT_S, TimeUnit.SECONDS)) {
            throw new IOException("getData of " + path + " timed out");
        }
    }

    // ---- metadata ----

    /** MetadataInfo of every revision in `instances` missing from `metas`, one fetch per revision. */
    static void fetchRevisions(ZooKeeper zk, String app, Collection<Instance> instances, Map<String, Metadata> metas)
            throws Exception {
        Map<String, List<Instance>> byRevision = new HashMap<>();
        for (Instance inst : instances) {
            String rev = inst.meta("dubbo.metadata.revision");
            if (rev != null && !rev.equals("0") && !metas.containsKey(rev)) {
                byRevision.computeIfAbsent(rev, k -> new ArrayList<>()).add(inst);
            }
        }
        List<Map.Entry<String, List<Instance>>> remote = new ArrayList<>();
        for (Map.Entry<String, List<Instance>> e : byRevision.entrySet()) {
            List<Instance> list = e.getValue();
            Instance chosen = list.get(RANDOM.nextInt(list.size()));
            if ("remote".equals(chosen.meta("dubbo.metadata.storage-type"))) {
                remote.add(e);
            } else {
                metas.put(e.getKey(), callMetadataService(chosen, app, e.getKey()));
            }
        }
        CountDownLatch done = new CountDownLatch(remote.size());
        for (Map.Entry<String, List<Instance>> e : remote) {
            zk.getData("/dubbo/metadata/" + app + "/" + e.getKey(), false, (rc, p, ctx, data, stat) -> {
                try {
                    if (rc == 0) {
                        metas.put(e.getKey(), JSON.readValue(data, Metadata.class));
                    }
                } catch (IOException ex) {
                    System.err.println("bad metadata at " + p + ": " + ex.getMessage());
                }
                done.countDown();
            }, null);
        }
        if (!done.await(WAIT_S, TimeUnit.SECONDS)) {
            throw new IOException("metadata report reads timed out");
        }
    }

    /** getMetadataInfo(revision) on the instance's MetadataService (its url-params port). */
    static Metadata callMetadataService(Instance inst, String app, String revision) throws Exception {
        int port = inst.port;
        String params = inst.meta("dubbo.metadata-service.url-params");
        if (params != null) {
            Map<?, ?> p = JSON.readValue(params, Map.class);
            if (p.get("port") != null) {
                port = Integer.parseInt(p.get("port").toString());
            }
        }
        Map<String, String> attachments = new HashMap<>();
        attachments.put("path", Dubbo.SERVICE);
        attachments.put("interface", Dubbo.SERVICE);
        attachments.put("version", "1.0.0");
        attachments.put("group", app);
        byte[] body = Interop.encode("2.0.2", Dubbo.SERVICE, "1.0.0", "getMetadataInfo", Dubbo.DESC, revision,
                attachments);
        long id = Dubbo.IDS.getAndIncrement();
        try (Socket s = Dubbo.connect(inst.address, port)) {
            Dubbo.writeFrame(s.getOutputStream(), Dubbo.FLAG_REQUEST | Dubbo.FLAG_TWOWAY | Dubbo.HESSIAN2, 0, id,
                    body);
            Dubbo.Frame f = Dubbo.awaitResponse(s, id);
            Hessian2Input in = Dubbo.input(f.body);
            int kind = f.status == Dubbo.OK ? in.readInt() : -1;
            Object value = kind == 1 || kind == 4 ? in.readObject() : null;
            if (!(value instanceof MetadataInfo)) {
                throw new IOException("getMetadataInfo(" + revision + ") answered status " + f.status + " kind "
                        + kind);
            }
            MetadataInfo info = (MetadataInfo) value;
            Metadata m = new Metadata();
            m.app = info.app;
            m.revision = info.revision;
            m.services = new HashMap<>();
            for (Map.Entry<String, MetadataInfo.ServiceInfo> e : info.services.entrySet()) {
                MetadataInfo.ServiceInfo si = e.getValue();
                Service sv = new Service();
                sv.name = si.name;
                sv.group = si.group;
                sv.version = si.version;
                sv.protocol = si.protocol;
                sv.port = si.port;
                sv.path = si.path;
                sv.params = si.params;
                m.services.put(e.getKey(), sv);
            }
            return m;
        }
    }

    // ---- addresses ----

    static final Map<String, List<Endpoint>> ENDPOINT_CACHE = new ConcurrentHashMap<>();

    static int endpointPort(Instance inst, String protocol) throws IOException {
        String value = inst.meta("dubbo.endpoints");
        if (value != null) {
            List<Endpoint> list = ENDPOINT_CACHE.get(value);
            if (list == null) {
                list = JSON.readValue(value, ENDPOINTS);
                ENDPOINT_CACHE.put(value, list);
            }
            for (Endpoint e : list) {
                if (e.protocol != null && e.protocol.equals(protocol)) {
                    return e.port;
                }
            }
        }
        return inst.port;
    }

    /** One URL per instance per ServiceInfo of `iface`: the service's params, then the instance's own. */
    static List<String> addresses(Collection<Instance> instances, Map<String, Metadata> metas, String iface)
            throws IOException {
        List<String> urls = new ArrayList<>();
        for (Instance inst : instances) {
            Metadata m = metas.get(inst.meta("dubbo.metadata.revision"));
            if (m == null || m.services == null) {
                continue;
            }
            for (Service s : m.services.values()) {
                if (!iface.equals(s.name)) {
                    continue;
                }
                String protocol = s.protocol == null ? "dubbo" : s.protocol;
                int port = s.port > 0 ? s.port : endpointPort(inst, protocol);
                Map<String, String> q = new TreeMap<>();
                if (inst.payload != null && inst.payload.metadata != null) {
                    for (Map.Entry<String, String> e : inst.payload.metadata.entrySet()) {
                        if (!e.getKey().startsWith("dubbo.")) {
                            q.put(e.getKey(), e.getValue());
                        }
                    }
                }
                if (s.params != null) {
                    q.putAll(s.params);
                }
                StringBuilder b = new StringBuilder(protocol).append("://").append(inst.address).append(':')
                        .append(port).append('/').append(s.path == null ? s.name : s.path);
                char sep = '?';
                for (Map.Entry<String, String> e : q.entrySet()) {
                    b.append(sep).append(e.getKey()).append('=').append(e.getValue());
                    sep = '&';
                }
                urls.add(b.toString());
            }
        }
        return urls;
    }

    // ---- modes ----

    static int cold(Map<String, String> o) throws Exception {
        String app = need(o, "app");
        String iface = need(o, "service");
        String mode = o.getOrDefault("mode", "remote");
        if (!mode.equals("remote") && !mode.equals("local")) {
            throw new IllegalArgumentException("--mode must be remote or local");
        }
        long start = System.nanoTime();
        ZooKeeper zk = connect(need(o, "zk"), null);
        String path = "/services/" + app;
        Map<String, Instance> instances = new ConcurrentHashMap<>();
        readInstances(zk, path, zk.getChildren(path, false), instances);
        Map<String, Metadata> metas = new HashMap<>();
        fetchRevisions(zk, app, instances.values(), metas);
        List<String> urls = addresses(instances.values(), metas, iface);
        double ms = (System.nanoTime() - start) / 1e6;
        System.out.println("result instances=" + instances.size() + " addresses=" + urls.size() + " ms="
                + String.format("%.3f", ms));
        System.out.flush();
        zk.close();
        return 0;
    }

    /** The watch mode's state, updated on one worker thread. */
    static final class Watch {
        final String app;
        final String path;
        final String iface;
        final Map<String, Instance> instances = new ConcurrentHashMap<>();
        final Map<String, Metadata> metas = new HashMap<>();
        final ExecutorService worker = Executors.newSingleThreadExecutor();
        ZooKeeper zk;
        List<String> urls = new ArrayList<>();

        Watch(String app, String iface) {
            this.app = app;
            this.path = "/services/" + app;
            this.iface = iface;
        }

        /** Re-lists (re-arming the child watch), reads new children, drops gone ones. */
        boolean refresh() throws Exception {
            List<String> names = zk.getChildren(path, true);
            Set<String> now = new HashSet<>(names);
            instances.keySet().retainAll(now);
            List<String> added = new ArrayList<>();
            for (String n : names) {
                if (!instances.containsKey(n)) {
                    added.add(n);
                }
            }
            readInstances(zk, path, added, instances);
            fetchRevisions(zk, app, instances.values(), metas);
            List<String> next = addresses(instances.values(), metas, iface);
            boolean changed = !new HashSet<>(next).equals(new HashSet<>(urls));
            urls = next;
            return changed;
        }
    }

    static int watch(Map<String, String> o) throws Exception {
        Watch w = new Watch(need(o, "app"), need(o, "service"));
        w.zk = connect(need(o, "zk"), event -> w.worker.submit(() -> {
            try {
                if (w.refresh()) {
                    long now = System.nanoTime();
                    System.out.println("change " + now + " " + w.urls.size());
                    System.out.flush();
                }
            } catch (Exception e) {
                System.err.println("refresh failed: " + e);
            }
        }));
        w.worker.submit(() -> {
            w.refresh();
            System.out.println("ready " + w.urls.size());
            System.out.flush();
            return null;
        }).get(WAIT_S, TimeUnit.SECONDS);
        untilStdinEnds();
        w.worker.shutdownNow();
        w.zk.close();
        return 0;
    }

    /** Every instance of every application, parsed and kept (as a user's cache would). */
    static final Map<String, Map<String, Instance>> HELD = new ConcurrentHashMap<>();

    static int hold(Map<String, String> o) throws Exception {
        ZooKeeper zk = connect(need(o, "zk"), null);
        int limit = Integer.parseInt(o.getOrDefault("apps", "-1"));
        List<String> apps = zk.exists("/services", false) == null ? new ArrayList<>()
                : zk.getChildren("/services", false);
        if (limit >= 0 && apps.size() > limit) {
            apps = apps.subList(0, limit);
        }
        AtomicInteger total = new AtomicInteger();
        for (String app : apps) {
            Map<String, Instance> m = new ConcurrentHashMap<>();
            readInstances(zk, "/services/" + app, zk.getChildren("/services/" + app, false), m);
            HELD.put(app, m);
            total.addAndGet(m.size());
        }
        System.gc();
        System.out.println("ready " + total.get());
        System.out.flush();
        untilStdinEnds();
        zk.close();
        return 0;
    }

    static void untilStdinEnds() throws IOException {
        byte[] buf = new byte[256];
        while (System.in.read(buf) >= 0) {
            continue;
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            System.err.println("usage: ZkConsumer cold|watch|hold --zk HOST:PORT ...");
            System.exit(2);
        }
        Map<String, String> o = options(args);
        int status;
        switch (args[0]) {
            case "cold":
                status = cold(o);
                break;
            case "watch":
                status = watch(o);
                break;
            case "hold":
                status = hold(o);
                break;
            default:
                System.err.println("unknown mode " + args[0]);
                status = 2;
        }
        System.exit(status);
    }
}
