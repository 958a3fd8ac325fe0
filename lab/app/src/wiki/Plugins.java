package wiki;

import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Plugins, as Confluence's UPM keeps them, reduced to a descriptor: every {@code *.plugin} file in
 * {@code ${wiki.home}/plugins} is a properties file with {@code name}, {@code version} and
 * {@code supports} (the app releases it declares it works with: a comma-separated list of
 * {@code X.Y.Z}, exactly that release, or {@code X.Y.Z+}, that release and every later one).
 * A plugin that does not declare the running release is REFUSED (not enabled, logged), as is a
 * descriptor that cannot be read. The directory is read at start and again on every
 * {@code GET /plugins}, so a plugin installed into a running node is picked up without a restart
 * (Confluence installs into a running node too). No plugins directory: no plugins.
 */
final class Plugins {
    private static final String CAT = "wiki.plugin.PluginManager";

    /** One descriptor file as read, and what the running release made of it. */
    record Plugin(String file, String name, String version, List<String> supports, boolean enabled, String reason) {}

    private final Path dir;
    /** Per file, the last state logged ("name version ENABLED" or "... REFUSED: why"): log changes only. */
    private final Map<String, String> logged = new HashMap<>();

    Plugins(Path home) {
        this.dir = home.resolve("plugins");
    }

    /** Reads the directory now; logs every plugin that is new, changed, refused or gone since the last scan. */
    synchronized List<Plugin> scan() {
        List<Plugin> found = new ArrayList<>();
        if (Files.isDirectory(dir)) {
            try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.plugin")) {
                for (Path f : ds) found.add(read(f));
            } catch (IOException e) {
                WikiLog.error(CAT, "Cannot read " + dir + ": " + e.getMessage());
            }
        }
        found.sort((a, b) -> a.file().compareTo(b.file()));
        Map<String, String> now = new HashMap<>();
        for (Plugin p : found) {
            String state = p.name() + " " + p.version() + (p.enabled() ? " ENABLED" : " REFUSED: " + p.reason());
            now.put(p.file(), state);
            if (state.equals(logged.get(p.file()))) continue;
            if (p.enabled()) WikiLog.info(CAT, "Plugin " + p.name() + " " + p.version() + " enabled (" + p.file() + ")");
            else WikiLog.error(CAT, "Plugin " + p.file() + " refused: " + p.reason());
        }
        for (String gone : logged.keySet())
            if (!now.containsKey(gone)) WikiLog.info(CAT, "Plugin file " + gone + " removed");
        logged.clear();
        logged.putAll(now);
        return found;
    }

    private Plugin read(Path f) {
        String file = f.getFileName().toString();
        Properties p = new Properties();
        try (Reader r = Files.newBufferedReader(f, StandardCharsets.UTF_8)) {
            p.load(r);
        } catch (IOException | IllegalArgumentException e) {
            return new Plugin(file, "", "", List.of(), false, "unreadable descriptor: " + e.getMessage());
        }
        String name = p.getProperty("name", "").trim();
        String version = p.getProperty("version", "").trim();
        List<String> supports = new ArrayList<>();
        for (String s : p.getProperty("supports", "").split(",")) if (!s.isBlank()) supports.add(s.trim());
        if (name.isEmpty() || version.isEmpty() || supports.isEmpty())
            return new Plugin(file, name, version, supports, false, "descriptor lacks name, version or supports");
        for (String s : supports)
            if (!s.matches("\\d+(\\.\\d+)*\\+?"))
                return new Plugin(file, name, version, supports, false, "supports entry '" + s + "' is not X.Y.Z or X.Y.Z+");
        if (!supportsRelease(supports, Release.VERSION))
            return new Plugin(file, name, version, supports, false,
                    "incompatible: declares support for " + String.join(", ", supports) + ", not " + Release.VERSION);
        return new Plugin(file, name, version, supports, true, "");
    }

    /** Does any entry ({@code X.Y.Z} exactly, {@code X.Y.Z+} that or later) take {@code release}? */
    static boolean supportsRelease(List<String> supports, String release) {
        for (String s : supports) {
            if (s.endsWith("+") ? compare(release, s.substring(0, s.length() - 1)) >= 0 : compare(release, s) == 0)
                return true;
        }
        return false;
    }

    /** Numeric, part by part; missing parts count as 0 (2.0 == 2.0.0). */
    static int compare(String a, String b) {
        String[] x = a.split("\\."), y = b.split("\\.");
        for (int i = 0; i < Math.max(x.length, y.length); i++) {
            long p = i < x.length ? Long.parseLong(x[i]) : 0, q = i < y.length ? Long.parseLong(y[i]) : 0;
            if (p != q) return Long.compare(p, q);
        }
        return 0;
    }
}
