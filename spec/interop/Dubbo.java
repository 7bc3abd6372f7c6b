import com.caucho.hessian.io.Hessian2Input;
import com.caucho.hessian.io.Hessian2Output;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.math.BigDecimal;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.dubbo.metadata.MetadataInfo;
import org.apache.dubbo.metadata.MetadataInfo.ServiceInfo;

/**
 * The dubbo protocol, written by hand from WIRE.md section 7: a 16-byte
 * header (magic 0xdabb, flags, status, request id, body length) and a
 * Hessian2 body. Enough for MetadataService: a client (call, heartbeat) and
 * a provider (serve).
 */
final class Dubbo {
    private Dubbo() {
    }

    static final int FLAG_REQUEST = 0x80;
    static final int FLAG_TWOWAY = 0x40;
    static final int FLAG_EVENT = 0x20;
    static final int HESSIAN2 = 2;
    static final int OK = 20;
    static final int BAD_REQUEST = 40;
    static final int SERVICE_NOT_FOUND = 60;
    static final int MAX_BODY = 8 << 20;
    static final int TIMEOUT_MS = 10_000;
    static final String SERVICE = "org.apache.dubbo.metadata.MetadataService";
    static final String DESC = "Ljava/lang/String;";

    static final AtomicLong IDS = new AtomicLong(1);

    static final class Frame {
        int flag;
        int status;
        long id;
        byte[] body;
    }

    static void writeFrame(OutputStream out, int flag, int status, long id, byte[] body) throws IOException {
        byte[] h = new byte[16];
        h[0] = (byte) 0xda;
        h[1] = (byte) 0xbb;
        h[2] = (byte) flag;
        h[3] = (byte) status;
        for (int i = 0; i < 8; i++) {
            h[4 + i] = (byte) (id >>> (56 - 8 * i));
        }
        for (int i = 0; i < 4; i++) {
            h[12 + i] = (byte) (body.length >>> (24 - 8 * i));
        }
        synchronized (out) {
            out.write(h);
            out.write(body);
            out.flush();
        }
    }

    /** The next frame, or null at a clean end of stream. */
    static Frame readFrame(InputStream in) throws IOException {
        DataInputStream d = new DataInputStream(in);
        int first = d.read();
        if (first < 0) {
            return null;
        }
        int second = d.readUnsignedByte();
        if (first != 0xda || second != 0xbb) {
            throw new IOException(String.format("bad magic %02x%02x", first, second));
        }
        Frame f = new Frame();
        f.flag = d.readUnsignedByte();
        f.status = d.readUnsignedByte();
        f.id = d.readLong();
        int len = d.readInt();
        if (len < 0 || len > MAX_BODY) {
            throw new IOException("body length " + len + " out of bounds");
        }
        f.body = new byte[len];
        d.readFully(f.body);
        return f;
    }

    static Hessian2Input input(byte[] body) {
        Hessian2Input in = new Hessian2Input(new ByteArrayInputStream(body));
        in.setSerializerFactory(Interop.factory());
        return in;
    }

    static Socket connect(String host, int port) throws IOException {
        Socket s = new Socket();
        s.connect(new InetSocketAddress(host, port), TIMEOUT_MS);
        s.setSoTimeout(TIMEOUT_MS);
        return s;
    }

    /** The response to request `id`, skipping heartbeats the peer sends. */
    static Frame awaitResponse(Socket s, long id) throws IOException {
        while (true) {
            Frame f = readFrame(s.getInputStream());
            if (f == null) {
                throw new IOException("connection closed before the response");
            }
            if ((f.flag & FLAG_REQUEST) != 0) {
                if ((f.flag & FLAG_EVENT) != 0 && (f.flag & FLAG_TWOWAY) != 0) {
                    writeFrame(s.getOutputStream(), FLAG_EVENT | HESSIAN2, OK, f.id, Interop.encode((Object) null));
                }
                continue;
            }
            if (f.id == id) {
                return f;
            }
        }
    }

    // ---- client ----

    /** getMetadataInfo(revision) with group=app; prints the answer. */
    static int call(String host, int port, String app, String revision) throws IOException {
        Map<String, String> attachments = new HashMap<>();
        attachments.put("path", SERVICE);
        attachments.put("interface", SERVICE);
        attachments.put("version", "1.0.0");
        attachments.put("group", app);
        byte[] body = Interop.encode("2.0.2", SERVICE, "1.0.0", "getMetadataInfo", DESC, revision, attachments);
        long id = IDS.getAndIncrement();
        try (Socket s = connect(host, port)) {
            writeFrame(s.getOutputStream(), FLAG_REQUEST | FLAG_TWOWAY | HESSIAN2, 0, id, body);
            Frame f = awaitResponse(s, id);
            Hessian2Input in = input(f.body);
            if (f.status != OK) {
                String message = f.body.length > 0 ? in.readString() : "";
                System.out.println("status " + f.status + ": " + message);
                return f.status == SERVICE_NOT_FOUND ? 2 : 1;
            }
            int kind = in.readInt();
            Object value = null;
            if (kind == 0 || kind == 1 || kind == 3 || kind == 4) {
                value = in.readObject();
            } else if (kind != 2 && kind != 5) {
                System.out.println("unknown response kind " + kind);
                return 1;
            }
            if (kind >= 3) {
                System.err.println("attachments: " + Json.write(Json.render(in.readObject())));
            }
            if (kind == 0 || kind == 3) {
                System.out.println("exception: " + Json.write(Json.render(value)));
                return 1;
            }
            System.out.println(value instanceof MetadataInfo ? Json.write(remoteForm((MetadataInfo) value))
                    : Json.write(Json.render(value)));
            return 0;
        }
    }

    /** An event frame with null data; expects the response event. */
    static int heartbeat(String host, int port) throws IOException {
        long id = IDS.getAndIncrement();
        try (Socket s = connect(host, port)) {
            writeFrame(s.getOutputStream(), FLAG_REQUEST | FLAG_TWOWAY | FLAG_EVENT | HESSIAN2, 0, id,
                    Interop.encode((Object) null));
            Frame f = readFrame(s.getInputStream());
            if (f == null) {
                System.out.println("connection closed before the heartbeat response");
                return 1;
            }
            boolean ok = f.id == id && (f.flag & FLAG_REQUEST) == 0 && (f.flag & FLAG_EVENT) != 0 && f.status == OK;
            System.out.println((ok ? "heartbeat ok" : "bad heartbeat response")
                    + String.format(" (flag 0x%02x, status %d, id %d)", f.flag, f.status, f.id));
            return ok ? 0 : 1;
        }
    }

    /** MetadataInfo as the remote-mode JSON document (WIRE.md section 5). */
    static Map<String, Object> remoteForm(MetadataInfo info) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("app", info.app);
        m.put("revision", info.revision);
        Map<String, Object> services = new TreeMap<>();
        if (info.services != null) {
            for (Map.Entry<String, ServiceInfo> e : info.services.entrySet()) {
                ServiceInfo s = e.getValue();
                Map<String, Object> sm = new LinkedHashMap<>();
                sm.put("name", s.name);
                sm.put("group", s.group);
                sm.put("version", s.version);
                sm.put("protocol", s.protocol);
                sm.put("port", BigDecimal.valueOf(s.port));
                sm.put("path", s.path);
                sm.put("params", s.params == null ? null : new TreeMap<>(s.params));
                services.put(e.getKey(), sm);
            }
        }
        m.put("services", services);
        return m;
    }

    static String str(Object v) {
        return v == null ? null : v.toString();
    }

    static MetadataInfo fromRemoteForm(Object json) {
        Map<?, ?> m = (Map<?, ?>) json;
        Map<String, ServiceInfo> services = new ConcurrentHashMap<>();
        Map<?, ?> sj = (Map<?, ?>) m.get("services");
        if (sj != null) {
            for (Map.Entry<?, ?> e : sj.entrySet()) {
                Map<?, ?> s = (Map<?, ?>) e.getValue();
                Map<String, String> params = new HashMap<>();
                Map<?, ?> pj = (Map<?, ?>) s.get("params");
                if (pj != null) {
                    for (Map.Entry<?, ?> p : pj.entrySet()) {
                        params.put(p.getKey().toString(), str(p.getValue()));
                    }
                }
                Object port = s.get("port");
                services.put(e.getKey().toString(), new ServiceInfo(str(s.get("name")), str(s.get("group")),
                        str(s.get("version")), str(s.get("protocol")),
                        port == null ? 0 : ((BigDecimal) port).intValue(), str(s.get("path")), params));
            }
        }
        return new MetadataInfo(str(m.get("app")), str(m.get("revision")), services);
    }

    // ---- provider ----

    /**
     * Serves getMetadataInfo on 127.0.0.1 (port written to portFile) until
     * stdin closes (when it is not /dev/null), SIGTERM, or 120 s pass.
     */
    static void serve(Path portFile, String app, String revision, Path jsonFile) throws Exception {
        MetadataInfo info = fromRemoteForm(Json.parse(new String(Files.readAllBytes(jsonFile),
                StandardCharsets.UTF_8)));
        ServerSocket server = new ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"));
        Path tmp = Paths.get(portFile + ".tmp");
        Files.write(tmp, (server.getLocalPort() + "\n").getBytes(StandardCharsets.US_ASCII));
        Files.move(tmp, portFile, StandardCopyOption.ATOMIC_MOVE);
        System.err.println("serving " + app + " revision " + revision + " on 127.0.0.1:" + server.getLocalPort());

        daemon(() -> {
            sleep(120_000);
            System.err.println("serve: 120 s passed, exiting");
            System.exit(0);
        });
        boolean devNull = false;
        try {
            devNull = Files.readSymbolicLink(Paths.get("/proc/self/fd/0")).toString().equals("/dev/null");
        } catch (IOException | UnsupportedOperationException e) {
            // Not Linux: watch stdin anyway.
        }
        if (!devNull) {
            daemon(() -> {
                try {
                    while (System.in.read() >= 0) {
                        continue;
                    }
                } catch (IOException e) {
                    // Closed.
                }
                System.exit(0);
            });
        }
        while (true) {
            Socket s = server.accept();
            daemon(() -> connection(s, app, revision, info, server.getLocalPort()));
        }
    }

    static void daemon(Runnable r) {
        Thread t = new Thread(r);
        t.setDaemon(true);
        t.start();
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** How many arguments a JVM method descriptor like "Ljava/lang/String;I" has. */
    static int argCount(String desc) {
        int n = 0;
        for (int i = 0; i < desc.length(); i++) {
            char c = desc.charAt(i);
            if (c == '[') {
                continue;
            }
            n++;
            if (c == 'L') {
                i = desc.indexOf(';', i);
                if (i < 0) {
                    break;
                }
            }
        }
        return n;
    }

    static void connection(Socket s, String app, String revision, MetadataInfo info, int port) {
        try (Socket sock = s) {
            sock.setSoTimeout(130_000);
            OutputStream out = sock.getOutputStream();
            while (true) {
                Frame f = readFrame(sock.getInputStream());
                if (f == null) {
                    return;
                }
                if ((f.flag & FLAG_REQUEST) == 0) {
                    continue; // a response (to nothing we sent): ignore
                }
                boolean twoWay = (f.flag & FLAG_TWOWAY) != 0;
                if ((f.flag & 0x1f) != HESSIAN2) {
                    if (twoWay) {
                        writeFrame(out, HESSIAN2, BAD_REQUEST, f.id,
                                Interop.encode("unsupported serialization id " + (f.flag & 0x1f)));
                    }
                    continue;
                }
                if ((f.flag & FLAG_EVENT) != 0) {
                    if (twoWay) {
                        writeFrame(out, FLAG_EVENT | HESSIAN2, OK, f.id, Interop.encode((Object) null));
                    }
                    continue;
                }
                Hessian2Input in = input(f.body);
                String dubboVersion = in.readString();
                String path = in.readString();
                String version = in.readString();
                String method = in.readString();
                String desc = in.readString();
                List<Object> args = new ArrayList<>();
                for (int i = argCount(desc); i > 0; i--) {
                    args.add(in.readObject());
                }
                Map<?, ?> att = in.isEnd() ? new HashMap<>() : (Map<?, ?>) in.readObject();
                String group = str(att.get("group"));
                String attVersion = att.get("version") != null ? str(att.get("version")) : version;
                System.err.println("request " + f.id + ": " + dubboVersion + " " + group + "/" + path + ":"
                        + attVersion + " " + method + "(" + desc + ") " + args);
                if (!twoWay) {
                    continue;
                }
                if (!SERVICE.equals(path) || !app.equals(group) || !"1.0.0".equals(attVersion)) {
                    String key = (group == null ? "" : group + "/") + path + ":" + attVersion + ":" + port;
                    writeFrame(out, HESSIAN2, SERVICE_NOT_FOUND, f.id, Interop.encode(
                            "Not found exported service: " + key + " in [" + app + "/" + SERVICE + ":1.0.0:"
                            + port + "], may be version or group mismatch"));
                    continue;
                }
                Map<String, String> none = new HashMap<>();
                if ("getMetadataInfo".equals(method) && DESC.equals(desc)) {
                    if (revision.equals(args.get(0))) {
                        writeFrame(out, HESSIAN2, OK, f.id, Interop.encode(4, info, none));
                    } else {
                        writeFrame(out, HESSIAN2, OK, f.id, Interop.encode(5, none));
                    }
                } else {
                    writeFrame(out, HESSIAN2, OK, f.id, Interop.encode(3,
                            new UnsupportedOperationException("no method " + method + "(" + desc + ")"), none));
                }
            }
        } catch (IOException | RuntimeException e) {
            System.err.println("connection: " + e);
        }
    }
}
