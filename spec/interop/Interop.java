import com.caucho.hessian.io.Hessian2Input;
import com.caucho.hessian.io.Hessian2Output;
import com.caucho.hessian.io.SerializerFactory;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.dubbo.metadata.MetadataInfo;
import org.apache.dubbo.metadata.MetadataInfo.ServiceInfo;
import org.apache.dubbo.metadata.MetadataInfoV9;

/**
 * disco's independent Java peer for the interop specs (spec/03-interop),
 * built on Caucho Hessian (Debian libhessian-java), which Dubbo's
 * hessian-lite is wire-compatible with.
 *
 *   vectors DIR                      write Hessian2 vectors DIR/NAME.hessian,
 *                                    their canonical JSON DIR/NAME.json and
 *                                    the list of names DIR/index.txt
 *   check FILE EXPECTED_JSON         read FILE (Hessian2, any number of
 *                                    values) and compare with the JSON;
 *                                    exit 0 equal, 1 different
 *   print FILE                       print FILE's canonical JSON
 *   call HOST PORT APP REVISION      MetadataService.getMetadataInfo over
 *                                    the dubbo protocol (see Dubbo.java)
 *   heartbeat HOST PORT              a dubbo heartbeat round trip
 *   serve PORT_FILE APP REVISION JSON_FILE
 *                                    a MetadataService provider
 */
public final class Interop {
    private Interop() {
    }

    static SerializerFactory factory() {
        SerializerFactory f = new SerializerFactory();
        f.setAllowNonSerializable(true);
        return f;
    }

    /** Every value of `values` written, in order, by one Hessian2Output. */
    static byte[] encode(Object... values) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        Hessian2Output out = new Hessian2Output(bytes);
        out.setSerializerFactory(factory());
        for (Object v : values) {
            out.writeObject(v);
        }
        out.flush();
        return bytes.toByteArray();
    }

    /** Every value of a Hessian2 stream, rendered as canonical JSON values. */
    static List<Object> decodeRendered(byte[] data) throws IOException {
        Hessian2Input in = new Hessian2Input(new ByteArrayInputStream(data));
        in.setSerializerFactory(factory());
        List<Object> values = new ArrayList<>();
        while (!in.isEnd()) {
            values.add(Json.render(in.readObject()));
        }
        return values;
    }

    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "";
        switch (mode) {
            case "vectors":
                need(args, 2);
                vectors(Paths.get(args[1]));
                return;
            case "check":
                need(args, 3);
                System.exit(check(Paths.get(args[1]), Paths.get(args[2])));
                return;
            case "print":
                need(args, 2);
                System.out.println(Json.write(decodeRendered(Files.readAllBytes(Paths.get(args[1])))));
                return;
            case "call":
                need(args, 5);
                System.exit(Dubbo.call(args[1], Integer.parseInt(args[2]), args[3], args[4]));
                return;
            case "heartbeat":
                need(args, 3);
                System.exit(Dubbo.heartbeat(args[1], Integer.parseInt(args[2])));
                return;
            case "serve":
                need(args, 5);
                Dubbo.serve(Paths.get(args[1]), args[2], args[3], Paths.get(args[4]));
                return;
            default:
                System.err.println("usage: Interop vectors DIR | check FILE EXPECTED_JSON | print FILE"
                        + " | call HOST PORT APP REVISION | heartbeat HOST PORT"
                        + " | serve PORT_FILE APP REVISION JSON_FILE");
                System.exit(64);
        }
    }

    private static void need(String[] args, int n) {
        if (args.length != n) {
            System.err.println("Interop " + args[0] + ": expected " + (n - 1) + " arguments, got "
                    + (args.length - 1));
            System.exit(64);
        }
    }

    static int check(Path file, Path expectedFile) throws IOException {
        List<Object> actual;
        try {
            actual = decodeRendered(Files.readAllBytes(file));
        } catch (IOException | RuntimeException e) {
            System.out.println("Hessian2Input cannot read " + file + ": " + e);
            return 1;
        }
        Object expected = Json.parse(new String(Files.readAllBytes(expectedFile), StandardCharsets.UTF_8));
        String d = Json.diff(expected, actual, "$");
        if (d != null) {
            System.out.println(file + " differs from " + expectedFile + " at " + d);
            System.out.println("read: " + Json.write(actual));
            return 1;
        }
        return 0;
    }

    // ---- the vectors ----

    static final String REV = "a662fd2213a8a49dc6ff43a4c2ae7b9e";
    static final String EMOJI = "\ud83d\ude00"; // U+1F600, two UTF-16 units

    static Map<String, String> params(Map<String, String> m, String... kv) {
        for (int i = 0; i < kv.length; i += 2) {
            m.put(kv[i], kv[i + 1]);
        }
        return m;
    }

    static ServiceInfo cart(Map<String, String> params) {
        return new ServiceInfo("com.acme.Cart", null, "1.0.0", "dubbo", 20880, "com.acme.Cart", params);
    }

    static String repeat(String s, int n) {
        StringBuilder sb = new StringBuilder(s.length() * n);
        for (int i = 0; i < n; i++) {
            sb.append(s);
        }
        return sb.toString();
    }

    static Map<String, Object[]> vectorSet() {
        Map<String, Object[]> v = new LinkedHashMap<>();

        // One service; services an untyped map (H), params a typed TreeMap.
        Map<String, ServiceInfo> basic = new HashMap<>();
        basic.put("com.acme.Cart:1.0.0:dubbo", cart(params(new TreeMap<>(), "application", "shop",
                "methods", "add,remove", "side", "provider", "version", "1.0.0")));
        v.put("basic", new Object[] {new MetadataInfo("shop", REV, basic)});

        // services a typed ConcurrentHashMap (M), as Dubbo sends it; params HashMap.
        Map<String, ServiceInfo> chm = new ConcurrentHashMap<>();
        chm.put("com.acme.Cart:1.0.0:dubbo", cart(params(new HashMap<>(), "application", "shop",
                "methods", "add,remove")));
        chm.put("g1/com.acme.Cart:2.0.0:tri", new ServiceInfo("com.acme.Cart", "g1", "2.0.0", "tri", 50051,
                "com.acme.Cart", params(new HashMap<>(), "application", "shop", "serialization", "hessian2")));
        chm.put("com.acme.Order:dubbo", new ServiceInfo("com.acme.Order", null, null, "dubbo", 20880,
                "custom/order", params(new TreeMap<>(), "application", "shop")));
        v.put("concurrent_map", new Object[] {new MetadataInfo("shop", REV, chm)});

        // The same ServiceInfo under two keys and one params map shared by
        // two services: back-references (Q) to an object and to a map.
        Map<String, String> sharedParams = params(new TreeMap<>(), "application", "shop", "side", "provider");
        ServiceInfo shared = cart(sharedParams);
        Map<String, ServiceInfo> refs = new TreeMap<>();
        refs.put("a:dubbo", shared);
        refs.put("b:dubbo", shared);
        refs.put("c:dubbo", new ServiceInfo("c", null, null, "dubbo", 1, "c", sharedParams));
        v.put("back_references", new Object[] {new MetadataInfo("shop", REV, refs)});

        // Strings around every length boundary of the string encodings, and
        // chunked strings (> 32768 UTF-16 units), one with a surrogate pair
        // across the first chunk boundary.
        Map<String, String> lengths = new TreeMap<>();
        for (int n : new int[] {0, 1, 31, 32, 1023, 1024, 32767, 32768, 32769, 65536, 70001}) {
            lengths.put("len" + n, repeat("x", n));
        }
        lengths.put("emoji_at_chunk_edge", repeat("a", 32767) + EMOJI + repeat("b", 100));
        lengths.put("emoji_after_chunk_edge", repeat("a", 32768) + EMOJI + "c");
        lengths.put(repeat("k", 33000), "a key longer than one chunk");
        lengths.put("wide", repeat("\u4e2d", 40000));
        Map<String, ServiceInfo> longs = new HashMap<>();
        longs.put("com.acme.Long:dubbo", new ServiceInfo("com.acme.Long", null, null, "dubbo", 20880,
                repeat("p", 40000), lengths));
        v.put("long_strings", new Object[] {new MetadataInfo("shop", REV, longs)});

        // Non-ASCII everywhere: emoji (non-BMP) in keys and values, CJK,
        // accents, a NUL and control characters, U+FFFF.
        Map<String, ServiceInfo> uni = new TreeMap<>();
        uni.put("com.x." + EMOJI + ":dubbo", new ServiceInfo("com.x." + EMOJI, "\u00e9", "\u4e2d", "dubbo", 1,
                "com.x." + EMOJI, params(new TreeMap<>(), EMOJI, "smile " + EMOJI + EMOJI, "\u4e2d\u6587", "\u00e9t\u00e9",
                        "nul", "a\u0000b", "ctl", "tab\tnl\nquote\"bs\\", "max", "\uffff", "ff21", "\uff21")));
        v.put("unicode", new Object[] {new MetadataInfo("\u4e2d" + EMOJI + "app", REV, uni)});

        // Null fields everywhere, and a null params map.
        Map<String, ServiceInfo> nulls = new HashMap<>();
        nulls.put("com.acme.N", new ServiceInfo("com.acme.N", null, null, null, 0, null, null));
        v.put("null_fields", new Object[] {new MetadataInfo("shop", null, nulls)});

        // No services: an empty typed map, and a service with empty params.
        v.put("empty_services", new Object[] {new MetadataInfo("empty", "0", new ConcurrentHashMap<>())});
        Map<String, ServiceInfo> emptyParams = new HashMap<>();
        emptyParams.put("com.acme.E:dubbo", new ServiceInfo("com.acme.E", "", "", "dubbo", 20880, "com.acme.E",
                new HashMap<>()));
        v.put("empty_params", new Object[] {new MetadataInfo("shop", REV, emptyParams)});

        // Ports on every boundary of the int encodings, negative included.
        Map<String, ServiceInfo> ports = new TreeMap<>();
        for (int p : new int[] {Integer.MIN_VALUE, -262145, -262144, -2049, -2048, -17, -16, -1, 0, 47, 48,
                2047, 2048, 262143, 262144, 65535, Integer.MAX_VALUE}) {
            ports.put("port" + p, new ServiceInfo("com.acme.P", null, null, "dubbo", p, "com.acme.P", null));
        }
        v.put("int_ports", new Object[] {new MetadataInfo("shop", REV, ports)});

        // A newer provider: a different class with unknown extra fields.
        MetadataInfoV9 nine = new MetadataInfoV9();
        nine.app = "shop";
        nine.revision = REV;
        nine.services = new ConcurrentHashMap<>();
        nine.services.put("com.acme.Cart:1.0.0:dubbo", cart(params(new HashMap<>(), "application", "shop")));
        nine.timestamp = 1700000000123L;
        nine.longMax = Long.MAX_VALUE;
        nine.longMin = Long.MIN_VALUE;
        nine.safeMax = (1L << 53) - 1;
        nine.beyondSafe = (1L << 53) + 1;
        nine.smallLong = -8;
        nine.intMin = Integer.MIN_VALUE;
        nine.intMax = Integer.MAX_VALUE;
        nine.tiny = 4.9e-324;
        nine.huge = Double.MAX_VALUE;
        nine.negative = -0.1;
        nine.whole = 12.0;
        nine.mills = 12.5;
        nine.enabled = true;
        nine.disabled = Boolean.FALSE;
        nine.nothing = null;
        nine.created = new Date(1700000000123L);
        nine.minute = new Date(1700000040000L);
        nine.blob = new byte[] {0, 1, (byte) 0x7f, (byte) 0x80, (byte) 0xff, 'Z'};
        nine.tags = new ArrayList<>(Arrays.asList("a", EMOJI, ""));
        v.put("newer_fields", new Object[] {nine});

        // What getMetadataInfos() answers: a typed list of MetadataInfo.
        List<MetadataInfo> infos = new LinkedList<>();
        infos.add(new MetadataInfo("shop", REV, basic));
        infos.add(new MetadataInfo("shop", "0", new HashMap<>()));
        v.put("info_list", new Object[] {infos});

        // Many objects of one class: refs and class-definition reuse at scale.
        Map<String, ServiceInfo> many = new TreeMap<>();
        for (int i = 0; i < 40; i++) {
            many.put("com.acme.S" + i + ":dubbo", new ServiceInfo("com.acme.S" + i, i % 3 == 0 ? "g" : null,
                    "1." + i, "dubbo", 20000 + i, "com.acme.S" + i, params(new TreeMap<>(), "i", "" + i)));
        }
        v.put("many_services", new Object[] {new MetadataInfo("shop", REV, many)});

        // Dubbo message bodies: several values in one stream.
        Map<String, String> attachments = new HashMap<>();
        attachments.put("path", "org.apache.dubbo.metadata.MetadataService");
        attachments.put("interface", "org.apache.dubbo.metadata.MetadataService");
        attachments.put("version", "1.0.0");
        attachments.put("group", "shop");
        v.put("request_body", new Object[] {"2.0.2", "org.apache.dubbo.metadata.MetadataService", "1.0.0",
            "getMetadataInfo", "Ljava/lang/String;", REV, attachments});
        v.put("response_value", new Object[] {4, new MetadataInfo("shop", REV, basic),
            params(new HashMap<>(), "dubbo", "2.0.2")});
        v.put("response_null", new Object[] {5, null, new HashMap<>()});
        return v;
    }

    static void vectors(Path dir) throws IOException {
        Files.createDirectories(dir);
        StringBuilder index = new StringBuilder();
        for (Map.Entry<String, Object[]> e : vectorSet().entrySet()) {
            String name = e.getKey();
            byte[] data = encode(e.getValue());
            List<Object> expected = new ArrayList<>();
            for (Object value : e.getValue()) {
                expected.add(Json.render(value));
            }
            // The peer checks itself: Caucho must read its own vector back
            // to the same graph, or the vector is not worth comparing with.
            String d = Json.diff(expected, decodeRendered(data), "$");
            if (d != null) {
                throw new IllegalStateException("vector " + name + " does not read back: " + d);
            }
            Files.write(dir.resolve(name + ".hessian"), data);
            Files.write(dir.resolve(name + ".json"), Json.write(expected).getBytes(StandardCharsets.UTF_8));
            index.append(name).append('\n');
        }
        Files.write(dir.resolve("index.txt"), index.toString().getBytes(StandardCharsets.UTF_8));
    }
}
