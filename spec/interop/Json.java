import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Date;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The canonical JSON of a Hessian object graph, in disco's Lua conventions,
 * and a small JSON reader and writer (no JSON library on the classpath).
 *
 * A JSON value here is null, String, Boolean, BigDecimal, List or a
 * LinkedHashMap (members in order). The graph rendering is:
 *   object  {"@class": name, "@fields": [names in wire order], name: value...}
 *   map     {"@map": type or "", key: value...}   (keys sorted)
 *   list    {"@list": type or "", "@items": [...]}
 *   long    a number up to 2^53 in magnitude, else {"@long": "decimal"}
 *   date    {"@date": ms}       binary {"@binary": "hex"}
 * A stream of several top-level values renders as a JSON array of them.
 */
final class Json {
    private Json() {
    }

    private static final long SAFE = 1L << 53;

    // ---- rendering Java values (what Hessian2Input produced) ----

    static Object render(Object o) {
        if (o == null || o instanceof String || o instanceof Boolean) {
            return o;
        }
        if (o instanceof Character) {
            return o.toString();
        }
        if (o instanceof Integer || o instanceof Short || o instanceof Byte) {
            return BigDecimal.valueOf(((Number) o).longValue());
        }
        if (o instanceof Long) {
            long v = (Long) o;
            if (v >= -SAFE && v <= SAFE) {
                return BigDecimal.valueOf(v);
            }
            return obj("@long", Long.toString(v));
        }
        if (o instanceof Double || o instanceof Float) {
            return new BigDecimal(Double.toString(((Number) o).doubleValue()));
        }
        if (o instanceof Date) {
            return obj("@date", BigDecimal.valueOf(((Date) o).getTime()));
        }
        if (o instanceof byte[]) {
            StringBuilder sb = new StringBuilder();
            for (byte b : (byte[]) o) {
                sb.append(String.format("%02x", b & 0xff));
            }
            return obj("@binary", sb.toString());
        }
        if (o instanceof Map) {
            Map<String, Object> m = obj("@map", o.getClass() == HashMap.class ? "" : o.getClass().getName());
            TreeMap<String, Object> sorted = new TreeMap<>();
            for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
                sorted.put(String.valueOf(e.getKey()), render(e.getValue()));
            }
            m.putAll(sorted);
            return m;
        }
        if (o instanceof Collection) {
            Map<String, Object> m = obj("@list", o.getClass() == ArrayList.class ? "" : o.getClass().getName());
            List<Object> items = new ArrayList<>();
            for (Object item : (Collection<?>) o) {
                items.add(render(item));
            }
            m.put("@items", items);
            return m;
        }
        Map<String, Object> m = obj("@class", o.getClass().getName());
        List<Object> names = new ArrayList<>();
        m.put("@fields", names);
        for (Field f : wireFields(o.getClass())) {
            names.add(f.getName());
            try {
                m.put(f.getName(), render(f.get(o)));
            } catch (IllegalAccessException e) {
                throw new IllegalStateException(e);
            }
        }
        return m;
    }

    /**
     * The fields Caucho's serializer writes, in its order: the class's own
     * fields then its superclasses', "primitive" ones (primitives and
     * java.lang types) before the others, transient and static skipped.
     */
    static List<Field> wireFields(Class<?> cl) {
        List<Field> primitive = new ArrayList<>();
        List<Field> compound = new ArrayList<>();
        for (; cl != null; cl = cl.getSuperclass()) {
            for (Field f : cl.getDeclaredFields()) {
                int mod = f.getModifiers();
                if (Modifier.isTransient(mod) || Modifier.isStatic(mod)) {
                    continue;
                }
                f.setAccessible(true);
                Class<?> t = f.getType();
                if (t.isPrimitive() || (t.getName().startsWith("java.lang.") && !t.equals(Object.class))) {
                    primitive.add(f);
                } else {
                    compound.add(f);
                }
            }
        }
        primitive.addAll(compound);
        return primitive;
    }

    static Map<String, Object> obj(String key, Object value) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put(key, value);
        return m;
    }

    // ---- comparing two JSON values; returns null or where they differ ----

    static String diff(Object expected, Object actual, String path) {
        if (expected == null || actual == null) {
            return expected == actual ? null : path + ": expected " + brief(expected) + ", got " + brief(actual);
        }
        if (expected instanceof BigDecimal && actual instanceof BigDecimal) {
            return ((BigDecimal) expected).compareTo((BigDecimal) actual) == 0 ? null
                    : path + ": expected " + expected + ", got " + actual;
        }
        if (expected instanceof Map && actual instanceof Map) {
            Map<?, ?> e = (Map<?, ?>) expected;
            Map<?, ?> a = (Map<?, ?>) actual;
            for (Object k : e.keySet()) {
                if (!a.containsKey(k)) {
                    return path + ": missing member " + k;
                }
                String d = diff(e.get(k), a.get(k), path + "." + k);
                if (d != null) {
                    return d;
                }
            }
            for (Object k : a.keySet()) {
                if (!e.containsKey(k)) {
                    return path + ": unexpected member " + k;
                }
            }
            return null;
        }
        if (expected instanceof List && actual instanceof List) {
            List<?> e = (List<?>) expected;
            List<?> a = (List<?>) actual;
            if (e.size() != a.size()) {
                return path + ": expected " + e.size() + " items, got " + a.size();
            }
            for (int i = 0; i < e.size(); i++) {
                String d = diff(e.get(i), a.get(i), path + "[" + i + "]");
                if (d != null) {
                    return d;
                }
            }
            return null;
        }
        return expected.equals(actual) ? null : path + ": expected " + brief(expected) + ", got " + brief(actual);
    }

    private static String brief(Object v) {
        String s = write(v);
        return s.length() > 200 ? s.substring(0, 200) + "... (" + s.length() + " chars)" : s;
    }

    // ---- writing ----

    static String write(Object v) {
        StringBuilder sb = new StringBuilder();
        write(sb, v);
        return sb.toString();
    }

    private static void write(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String) {
            quote(sb, (String) v);
        } else if (v instanceof Boolean || v instanceof BigDecimal) {
            sb.append(v);
        } else if (v instanceof Number) {
            sb.append(new BigDecimal(v.toString()));
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                quote(sb, String.valueOf(e.getKey()));
                sb.append(':');
                write(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object item : (List<?>) v) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                write(sb, item);
            }
            sb.append(']');
        } else {
            throw new IllegalArgumentException("not a JSON value: " + v.getClass());
        }
    }

    private static void quote(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c); // UTF-8 when the text is written out
            }
        }
        sb.append('"');
    }

    // ---- parsing ----

    static Object parse(String text) {
        Parser p = new Parser(text);
        Object v = p.value();
        p.skipSpace();
        if (p.pos != text.length()) {
            throw p.error("trailing characters");
        }
        return v;
    }

    private static final class Parser {
        final String s;
        int pos;

        Parser(String s) {
            this.s = s;
        }

        IllegalArgumentException error(String what) {
            return new IllegalArgumentException("JSON: " + what + " at offset " + pos);
        }

        void skipSpace() {
            while (pos < s.length() && " \t\r\n".indexOf(s.charAt(pos)) >= 0) {
                pos++;
            }
        }

        void expect(char c) {
            skipSpace();
            if (pos >= s.length() || s.charAt(pos) != c) {
                throw error("expected '" + c + "'");
            }
            pos++;
        }

        boolean peek(char c) {
            skipSpace();
            return pos < s.length() && s.charAt(pos) == c;
        }

        Object value() {
            skipSpace();
            if (pos >= s.length()) {
                throw error("unexpected end");
            }
            char c = s.charAt(pos);
            if (c == '{') {
                pos++;
                Map<String, Object> m = new LinkedHashMap<>();
                if (peek('}')) {
                    pos++;
                    return m;
                }
                do {
                    skipSpace();
                    String k = string();
                    expect(':');
                    m.put(k, value());
                    skipSpace();
                } while (pos < s.length() && s.charAt(pos) == ',' && pos++ >= 0);
                expect('}');
                return m;
            }
            if (c == '[') {
                pos++;
                List<Object> l = new ArrayList<>();
                if (peek(']')) {
                    pos++;
                    return l;
                }
                do {
                    l.add(value());
                    skipSpace();
                } while (pos < s.length() && s.charAt(pos) == ',' && pos++ >= 0);
                expect(']');
                return l;
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"null", "true", "false"}) {
                if (s.startsWith(word, pos)) {
                    pos += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = pos;
            while (pos < s.length() && "+-0123456789.eE".indexOf(s.charAt(pos)) >= 0) {
                pos++;
            }
            try {
                return new BigDecimal(s.substring(start, pos));
            } catch (NumberFormatException e) {
                pos = start;
                throw error("bad value");
            }
        }

        String string() {
            if (pos >= s.length() || s.charAt(pos) != '"') {
                throw error("expected a string");
            }
            pos++;
            StringBuilder sb = new StringBuilder();
            while (true) {
                if (pos >= s.length()) {
                    throw error("unterminated string");
                }
                char c = s.charAt(pos++);
                if (c == '"') {
                    return sb.toString();
                }
                if (c != '\\') {
                    sb.append(c);
                    continue;
                }
                char e = s.charAt(pos++);
                switch (e) {
                    case 'b': sb.append('\b'); break;
                    case 'f': sb.append('\f'); break;
                    case 'n': sb.append('\n'); break;
                    case 'r': sb.append('\r'); break;
                    case 't': sb.append('\t'); break;
                    case 'u':
                        sb.append((char) Integer.parseInt(s.substring(pos, pos + 4), 16));
                        pos += 4;
                        break;
                    default: sb.append(e);
                }
            }
        }
    }
}
