package wiki;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpSession;
import java.io.IOException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

/** All endpoints: /status, /session, /plugins, /, /pages, /pages/<name>. Mapped to "/" so it sees every path. */
public final class WikiServlet extends HttpServlet {
    private static final String CAT = "wiki.pages.PageService";

    private WikiApp app() { return (WikiApp) getServletContext().getAttribute(WikiApp.ATTR); }

    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String path = req.getRequestURI().substring(req.getContextPath().length());
        String method = req.getMethod();
        boolean read = method.equals("GET") || method.equals("HEAD");
        try {
            if (path.equals("/status")) {
                if (read) status(resp); else notAllowed(resp, "GET");
            } else if (path.equals("/plugins")) {
                if (read) plugins(resp); else notAllowed(resp, "GET");
            } else if (path.equals("/session")) {
                if (read) session(req, resp); else notAllowed(resp, "GET");
            } else if (path.equals("/") || path.isEmpty()) {
                if (!read) notAllowed(resp, "GET");
                else if (guard(resp)) home(resp);
            } else if (path.equals("/pages") || path.equals("/pages/")) {
                if (!read) notAllowed(resp, "GET");
                else if (guard(resp)) listPages(resp);
            } else if (path.startsWith("/pages/")) {
                String name = URLDecoder.decode(path.substring("/pages/".length()), StandardCharsets.UTF_8);
                if (name.isEmpty() || name.length() > 255 || name.contains("/")) {
                    text(resp, 400, "bad page name\n");
                } else if (read) {
                    if (guard(resp)) getPage(resp, name);
                } else if (method.equals("PUT")) {
                    if (guard(resp)) putPage(req, resp, name);
                } else {
                    notAllowed(resp, "GET, PUT");
                }
            } else {
                text(resp, 404, "not found\n");
            }
        } catch (SQLException e) {
            WikiLog.error(CAT, method + " " + path + " failed: " + e.getMessage());
            text(resp, 500, "database error: " + e.getMessage() + "\n");
        }
    }

    /**
     * Liveness, as Confluence's /status: checks the DB and schema on every call, but deliberately does NOT
     * look at cluster panic -- Confluence says RUNNING during a panic too; only real pages fail.
     */
    private void status(HttpServletResponse resp) throws IOException {
        WikiApp app = app();
        WikiApp.Phase phase = app.phase();
        if (phase == WikiApp.Phase.STARTING) {
            app.noteHealth("STARTING");
            json(resp, 200, "{\"state\":\"STARTING\"}"); // 200, like Confluence/Jira: check the state, not the code
            return;
        }
        String reason = app.reason();
        Integer schema = app.schema();
        if (phase == WikiApp.Phase.RUNNING) {
            try (Connection c = app.db().connect()) {
                schema = Database.schemaVersion(c);
                if (schema == null || schema != Release.SCHEMA) {
                    phase = WikiApp.Phase.ERROR;
                    reason = "Database schema " + schema + " does not match release schema " + Release.SCHEMA;
                }
            } catch (SQLException e) {
                phase = WikiApp.Phase.ERROR;
                reason = "Database unreachable: " + e.getMessage();
            }
        }
        String body = "{\"state\":\"" + phase + "\",\"version\":\"" + Release.VERSION + "\",\"schema\":" + schema
                + ",\"node\":\"" + esc(app.nodeName()) + "\""
                + (phase == WikiApp.Phase.ERROR ? ",\"reason\":\"" + esc(reason) + "\"" : "") + "}";
        app.noteHealth(phase == WikiApp.Phase.RUNNING ? "RUNNING" : "ERROR (" + reason + ")");
        json(resp, phase == WikiApp.Phase.RUNNING ? 200 : 500, body);
    }

    /**
     * The plugins directory as read now (a rescan, so a plugin installed while the node runs shows at once), like
     * UPM's list: each plugin's name, version, the releases it declares, ENABLED or REFUSED with the reason.
     * Answers in every phase (an admin looks here when the node does not start) and needs no database.
     */
    private void plugins(HttpServletResponse resp) throws IOException {
        Plugins pl = app().plugins();
        StringBuilder b = new StringBuilder("{\"release\":\"" + Release.VERSION + "\",\"plugins\":[");
        String sep = "";
        for (Plugins.Plugin p : pl == null ? java.util.List.<Plugins.Plugin>of() : pl.scan()) {
            b.append(sep).append("{\"name\":\"").append(esc(p.name())).append("\",\"version\":\"").append(esc(p.version()))
                    .append("\",\"state\":\"").append(p.enabled() ? "ENABLED" : "REFUSED").append("\",\"supports\":[");
            String s2 = "";
            for (String s : p.supports()) {
                b.append(s2).append('"').append(esc(s)).append('"');
                s2 = ",";
            }
            b.append("],\"file\":\"").append(esc(p.file())).append('"');
            if (!p.enabled()) b.append(",\"reason\":\"").append(esc(p.reason())).append('"');
            b.append('}');
            sep = ",";
        }
        json(resp, 200, b.append("]}").toString());
    }

    /** Session counter; no database. Tomcat appends ".<jvmRoute>" to the id, which mod_jk uses for stickiness. */
    private void session(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        HttpSession s = req.getSession(true);
        int count;
        synchronized (s) {
            Integer old = (Integer) s.getAttribute("count");
            count = old == null ? 1 : old + 1;
            s.setAttribute("count", count);
        }
        json(resp, 200, "{\"node\":\"" + esc(app().nodeName()) + "\",\"sessionId\":\"" + esc(s.getId())
                + "\",\"count\":" + count + "}");
    }

    /** Real pages only work when the node is healthy and not in a cluster panic. */
    private boolean guard(HttpServletResponse resp) throws IOException {
        WikiApp app = app();
        if (app.panicked()) {
            text(resp, 500, ClusterSafety.PANIC_MESSAGE + "\n");
            return false;
        }
        switch (app.phase()) {
            case STARTING:
                text(resp, 503, "wiki is starting (upgrade tasks may be running)\n");
                return false;
            case ERROR:
                text(resp, 500, "wiki is not available: " + app.reason() + "\n");
                return false;
            default:
                return true;
        }
    }

    private void home(HttpServletResponse resp) throws IOException {
        WikiApp app = app();
        resp.setStatus(200);
        resp.setContentType("text/html;charset=UTF-8");
        resp.getWriter().print("<!DOCTYPE html>\n<html><head><title>Wiki " + Release.VERSION + "</title></head><body>\n"
                + "<h1>Wiki " + Release.VERSION + "</h1>\n"
                + "<p>Node: <b>" + html(app.nodeName()) + "</b>, cluster: " + html(app.cfg().clusterName())
                + ", schema: " + app.schema() + "</p>\n<p><a href=\"/pages\">Pages</a></p>\n</body></html>\n");
    }

    private void listPages(HttpServletResponse resp) throws IOException, SQLException {
        StringBuilder out = new StringBuilder();
        try (Connection c = app().db().connect(); Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT NAME FROM PAGES ORDER BY NAME")) {
            while (rs.next()) out.append(rs.getString(1)).append('\n');
        }
        text(resp, 200, out.toString());
    }

    private void getPage(HttpServletResponse resp, String name) throws IOException, SQLException {
        String sql = Release.SCHEMA >= 2 ? "SELECT BODY, UPDATED_BY FROM PAGES WHERE NAME = ?"
                                         : "SELECT BODY FROM PAGES WHERE NAME = ?";
        try (Connection c = app().db().connect(); PreparedStatement ps = c.prepareStatement(sql)) {
            ps.setString(1, name);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    text(resp, 404, "no such page\n");
                    return;
                }
                if (Release.SCHEMA >= 2 && rs.getString(2) != null) resp.setHeader("X-Wiki-Updated-By", rs.getString(2));
                text(resp, 200, rs.getString(1));
            }
        }
    }

    private void putPage(HttpServletRequest req, HttpServletResponse resp, String name) throws IOException, SQLException {
        String body = new String(req.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        String node = app().nodeName();
        boolean created;
        try (Connection c = app().db().connect()) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("SELECT 1 FROM PAGES WHERE NAME = ? FOR UPDATE")) {
                ps.setString(1, name);
                try (ResultSet rs = ps.executeQuery()) {
                    created = !rs.next();
                }
            }
            String sql;
            if (Release.SCHEMA >= 2) {
                sql = created ? "INSERT INTO PAGES (BODY, UPDATED_BY, NAME, CREATED_AT, UPDATED_AT) VALUES (?, ?, ?, NOW(3), NOW(3))"
                              : "UPDATE PAGES SET BODY = ?, UPDATED_BY = ?, UPDATED_AT = NOW(3) WHERE NAME = ?";
            } else {
                sql = created ? "INSERT INTO PAGES (BODY, NAME, CREATED_AT, UPDATED_AT) VALUES (?, ?, NOW(3), NOW(3))"
                              : "UPDATE PAGES SET BODY = ?, UPDATED_AT = NOW(3) WHERE NAME = ?";
            }
            try (PreparedStatement ps = c.prepareStatement(sql)) {
                int i = 1;
                ps.setString(i++, body);
                if (Release.SCHEMA >= 2) ps.setString(i++, node);
                ps.setString(i, name);
                ps.executeUpdate();
            }
            if (Release.SCHEMA >= 2) {
                // 2.0.0+ keeps every revision.
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO PAGE_HISTORY (NAME, REVISION, BODY, UPDATED_BY, UPDATED_AT)"
                        + " SELECT ?, COALESCE(MAX(REVISION), 0) + 1, ?, ?, NOW(3) FROM PAGE_HISTORY WHERE NAME = ?")) {
                    ps.setString(1, name);
                    ps.setString(2, body);
                    ps.setString(3, node);
                    ps.setString(4, name);
                    ps.executeUpdate();
                }
            }
            c.commit();
        }
        resp.setStatus(created ? 201 : 204);
    }

    private static void notAllowed(HttpServletResponse resp, String allow) throws IOException {
        resp.setHeader("Allow", allow);
        text(resp, 405, "method not allowed\n");
    }

    private static void text(HttpServletResponse resp, int code, String body) throws IOException {
        resp.setStatus(code);
        resp.setContentType("text/plain;charset=UTF-8");
        resp.getWriter().print(body);
    }

    private static void json(HttpServletResponse resp, int code, String body) throws IOException {
        resp.setStatus(code);
        resp.setContentType("application/json;charset=UTF-8");
        resp.getWriter().print(body);
    }

    private static String esc(String s) {
        StringBuilder b = new StringBuilder();
        for (char ch : String.valueOf(s).toCharArray()) {
            if (ch == '"' || ch == '\\') b.append('\\').append(ch);
            else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
            else b.append(ch);
        }
        return b.toString();
    }

    private static String html(String s) {
        return String.valueOf(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
