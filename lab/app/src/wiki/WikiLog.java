package wiki;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;

/**
 * Appends to ${wiki.home}/logs/wiki.log in the shape of atlassian-confluence.log
 * ("date level [thread] [category] message"), so an orchestrator can tail and grep it.
 * Every line is echoed to stdout too (catalina.out / the journal).
 */
final class WikiLog {
    private static final DateTimeFormatter TS = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss,SSS");
    private static volatile Path file;

    private WikiLog() {}

    static void init(Path home) {
        Path f = home.resolve("logs").resolve("wiki.log");
        try {
            Files.createDirectories(f.getParent());
        } catch (IOException e) {
            System.out.println("wiki: cannot create log directory " + f.getParent() + ": " + e);
        }
        file = f;
    }

    static void info(String category, String msg) { write("INFO", category, msg); }
    static void warn(String category, String msg) { write("WARN", category, msg); }
    static void error(String category, String msg) { write("ERROR", category, msg); }

    private static synchronized void write(String level, String category, String msg) {
        String line = String.format("%s %-5s [%s] [%s] %s%n", LocalDateTime.now().format(TS), level,
                Thread.currentThread().getName(), category, msg);
        System.out.print(line);
        Path f = file;
        if (f == null) return;
        try {
            Files.write(f, line.getBytes(StandardCharsets.UTF_8), StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            System.out.println("wiki: cannot write " + f + ": " + e);
        }
    }
}
