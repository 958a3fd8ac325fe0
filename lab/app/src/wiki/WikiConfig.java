package wiki;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilderFactory;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/** ${wiki.home}/wiki.cfg.xml, shaped like Confluence's confluence.cfg.xml. */
final class WikiConfig {
    static final String FILE = "wiki.cfg.xml";

    final Path home;
    final int buildNumber;
    private final Map<String, String> props;

    private WikiConfig(Path home, int buildNumber, Map<String, String> props) {
        this.home = home;
        this.buildNumber = buildNumber;
        this.props = props;
    }

    /**
     * Local home: -Dwiki.home wins, else wiki-init.properties on the webapp classpath
     * (as confluence.home / confluence-init.properties).
     */
    static Path resolveHome(ClassLoader loader) throws IOException {
        String sys = System.getProperty("wiki.home");
        if (sys != null && !sys.isBlank()) return Paths.get(sys.trim());
        Properties p = new Properties();
        try (InputStream in = loader.getResourceAsStream("wiki-init.properties")) {
            if (in == null) throw new IOException("wiki-init.properties not found on the classpath");
            p.load(in);
        }
        String h = p.getProperty("wiki.home");
        if (h == null || h.isBlank()) throw new IOException("wiki.home is not set in wiki-init.properties");
        return Paths.get(h.trim());
    }

    static WikiConfig load(Path home) throws Exception {
        Path f = home.resolve(FILE);
        if (!Files.isRegularFile(f)) throw new IOException(f + " not found (the orchestrator writes it before the first start)");
        DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();
        // The file is ours, but refuse DTDs/external entities anyway.
        dbf.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        dbf.setAttribute(XMLConstants.ACCESS_EXTERNAL_DTD, "");
        Document doc;
        try (InputStream in = Files.newInputStream(f)) {
            doc = dbf.newDocumentBuilder().parse(in);
        }
        Element root = doc.getDocumentElement();
        if (!"wiki-configuration".equals(root.getTagName()))
            throw new IOException(f + ": root element must be <wiki-configuration>");
        int build = 0;
        NodeList bn = root.getElementsByTagName("buildNumber");
        if (bn.getLength() > 0 && !bn.item(0).getTextContent().isBlank())
            build = Integer.parseInt(bn.item(0).getTextContent().trim());
        Map<String, String> props = new HashMap<>();
        NodeList ps = root.getElementsByTagName("property");
        for (int i = 0; i < ps.getLength(); i++) {
            Element e = (Element) ps.item(i);
            props.put(e.getAttribute("name"), e.getTextContent().trim());
        }
        WikiConfig c = new WikiConfig(home, build, props);
        for (String k : new String[] {"hibernate.connection.url", "hibernate.connection.username", "cluster.name", "cluster.node.name"})
            if (c.get(k).isEmpty()) throw new IOException(f + ": property " + k + " is missing");
        return c;
    }

    String get(String key) { return props.getOrDefault(key, ""); }

    String url() { return get("hibernate.connection.url"); }
    String username() { return get("hibernate.connection.username"); }
    /** Never log this. */
    String password() { return get("hibernate.connection.password"); }
    String clusterName() { return get("cluster.name"); }
    String nodeName() { return get("cluster.node.name"); }
    boolean mailEnabled() { return Boolean.parseBoolean(get("mail.enabled")); }
    String mailHost() { return get("mail.smtp.host"); }

    List<String> peers() {
        List<String> out = new ArrayList<>();
        for (String s : get("cluster.peers").split(",")) if (!s.isBlank()) out.add(s.trim());
        return out;
    }

    /**
     * After an upgrade Confluence rewrites <buildNumber> in its cfg file to the new build; we do the same,
     * touching only that element so the rest of the (orchestrator-templated) file stays byte-identical.
     */
    void writeBuildNumber(int n) throws IOException {
        Path f = home.resolve(FILE);
        String text = new String(Files.readAllBytes(f), StandardCharsets.UTF_8);
        Matcher m = Pattern.compile("<buildNumber>\\s*\\d*\\s*</buildNumber>").matcher(text);
        String updated = m.find()
                ? text.substring(0, m.start()) + "<buildNumber>" + n + "</buildNumber>" + text.substring(m.end())
                : text.replaceFirst("<wiki-configuration>", "<wiki-configuration>\n  <buildNumber>" + n + "</buildNumber>");
        if (!updated.equals(text)) Files.write(f, updated.getBytes(StandardCharsets.UTF_8));
    }
}
