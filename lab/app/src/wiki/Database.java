package wiki;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

/**
 * JDBC access and the schema upgrade tasks. A fresh connection per use: nothing to go stale when the
 * database restarts or fails over, and short timeouts so /status answers ERROR instead of hanging.
 */
final class Database {
    private static final String CAT = "wiki.upgrade.UpgradeManager";

    /** Thrown when the database was upgraded by a newer release: like Confluence, refuse to run on it. */
    static final class SchemaTooNewException extends Exception {
        SchemaTooNewException(String msg) { super(msg); }
    }

    private final WikiConfig cfg;

    Database(WikiConfig cfg) throws ClassNotFoundException {
        this.cfg = cfg;
        // The driver lives in WEB-INF/lib; register it explicitly with DriverManager.
        Class.forName("org.mariadb.jdbc.Driver");
    }

    Connection connect() throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", cfg.username());
        p.setProperty("password", cfg.password());
        p.setProperty("connectTimeout", "5000"); // ms
        p.setProperty("socketTimeout", "15000"); // ms; longer than any query we run
        return DriverManager.getConnection(cfg.url(), p);
    }

    /** Schema version from SCHEMAINFO, or null when the table does not exist (empty database). */
    static Integer schemaVersion(Connection c) throws SQLException {
        try (ResultSet rs = c.getMetaData().getTables(c.getCatalog(), null, "SCHEMAINFO", new String[] {"TABLE"})) {
            if (!rs.next()) return null;
        }
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT VERSION FROM SCHEMAINFO")) {
            if (!rs.next()) throw new SQLException("SCHEMAINFO exists but has no row");
            return rs.getInt(1);
        }
    }

    /**
     * Bring the schema up to Release.SCHEMA, one recorded step at a time. MariaDB DDL is not transactional,
     * so each step is idempotent (IF NOT EXISTS) and the version is stored after each step: an upgrade
     * killed half-way resumes on the next start. A named lock stops two nodes upgrading at once.
     */
    int upgrade(Connection c, int stepDelaySeconds) throws SQLException, SchemaTooNewException {
        try (Statement st = c.createStatement()) {
            try (ResultSet rs = st.executeQuery("SELECT GET_LOCK('wiki.upgrade', 600)")) {
                if (!rs.next() || rs.getInt(1) != 1) throw new SQLException("could not take the upgrade lock");
            }
            try {
                Integer v = schemaVersion(c);
                if (v == null) {
                    WikiLog.info(CAT, "Empty database: creating schema 1");
                    createSchema1(st);
                    v = 1;
                }
                if (v > Release.SCHEMA)
                    throw new SchemaTooNewException("Database schema " + v + " is too new for wiki " + Release.VERSION
                            + " (supports schema " + Release.SCHEMA + "); it was upgraded by a newer release. Refusing to start.");
                if (v < Release.SCHEMA)
                    WikiLog.info(CAT, "Database schema " + v + " is older than " + Release.SCHEMA + ": running upgrade tasks");
                while (v < Release.SCHEMA) {
                    int to = v + 1;
                    WikiLog.info(CAT, "Upgrade task " + v + " -> " + to + ": starting");
                    sleep(stepDelaySeconds); // real upgrade tasks take a while; makes STARTING observable
                    if (to == 2) upgradeTo2(st);
                    else if (to == 3) upgradeTo3(st);
                    st.executeUpdate("UPDATE SCHEMAINFO SET VERSION = " + to);
                    WikiLog.info(CAT, "Upgrade task " + v + " -> " + to + ": done");
                    v = to;
                }
                return v;
            } finally {
                st.executeQuery("SELECT RELEASE_LOCK('wiki.upgrade')").close();
            }
        }
    }

    private static void createSchema1(Statement st) throws SQLException {
        st.executeUpdate("CREATE TABLE IF NOT EXISTS PAGES ("
                + " NAME VARCHAR(255) NOT NULL PRIMARY KEY,"
                + " BODY MEDIUMTEXT NOT NULL,"
                + " CREATED_AT DATETIME(3) NOT NULL,"
                + " UPDATED_AT DATETIME(3) NOT NULL"
                + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
        st.executeUpdate("CREATE TABLE IF NOT EXISTS CLUSTERSAFETY ("
                + " SAFETY_NUMBER BIGINT NOT NULL,"
                + " CLUSTER_NAME VARCHAR(255) NOT NULL,"
                + " NODE VARCHAR(255) NOT NULL,"
                + " UPDATED_AT DATETIME(3) NOT NULL"
                + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
        // SCHEMAINFO last: its existence marks the schema as created.
        st.executeUpdate("CREATE TABLE IF NOT EXISTS SCHEMAINFO (VERSION INT NOT NULL) ENGINE=InnoDB");
        st.executeUpdate("INSERT INTO SCHEMAINFO (VERSION) SELECT 1 FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM SCHEMAINFO)");
    }

    /** 2.0.0: who last edited a page, plus a revision history seeded with the current pages. */
    private static void upgradeTo2(Statement st) throws SQLException {
        st.executeUpdate("ALTER TABLE PAGES ADD COLUMN IF NOT EXISTS UPDATED_BY VARCHAR(255) NULL");
        st.executeUpdate("UPDATE PAGES SET UPDATED_BY = 'upgrade-task-2' WHERE UPDATED_BY IS NULL");
        st.executeUpdate("CREATE TABLE IF NOT EXISTS PAGE_HISTORY ("
                + " ID BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
                + " NAME VARCHAR(255) NOT NULL,"
                + " REVISION INT NOT NULL,"
                + " BODY MEDIUMTEXT NOT NULL,"
                + " UPDATED_BY VARCHAR(255) NULL,"
                + " UPDATED_AT DATETIME(3) NOT NULL,"
                + " UNIQUE KEY PAGE_HISTORY_NAME_REV (NAME, REVISION)"
                + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
        st.executeUpdate("INSERT IGNORE INTO PAGE_HISTORY (NAME, REVISION, BODY, UPDATED_BY, UPDATED_AT)"
                + " SELECT NAME, 1, BODY, UPDATED_BY, UPDATED_AT FROM PAGES");
    }

    /** 3.0.0: page body format and labels. */
    private static void upgradeTo3(Statement st) throws SQLException {
        st.executeUpdate("ALTER TABLE PAGES ADD COLUMN IF NOT EXISTS BODY_FORMAT VARCHAR(32) NOT NULL DEFAULT 'plain'");
        st.executeUpdate("ALTER TABLE PAGE_HISTORY ADD COLUMN IF NOT EXISTS BODY_FORMAT VARCHAR(32) NOT NULL DEFAULT 'plain'");
        st.executeUpdate("CREATE TABLE IF NOT EXISTS PAGE_LABELS ("
                + " NAME VARCHAR(255) NOT NULL,"
                + " LABEL VARCHAR(255) NOT NULL,"
                + " PRIMARY KEY (NAME, LABEL)"
                + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
    }

    private static void sleep(int seconds) {
        try {
            Thread.sleep(seconds * 1000L);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
