package wiki;

import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

/**
 * Like Confluence's ClusterSafetyJob: the single CLUSTERSAFETY row says which cluster last wrote to this
 * database. A recent write by a node of a DIFFERENT cluster means two clusters share one database
 * (e.g. a staging copy still pointing at production) -> cluster panic. Nodes of the same cluster take turns
 * rewriting the row and never panic. Freshness uses the database clock, so node clock skew does not matter.
 */
final class ClusterSafety implements Runnable {
    private static final String CAT = "wiki.cluster.safety.ClusterSafetyJob";
    static final String PANIC_MESSAGE = "Fatal error in wiki cluster: Database is being updated by an instance "
            + "which is not part of the current cluster. You should check that no other wiki cluster uses this database.";

    private final WikiApp app;
    private final Database db;
    private final WikiConfig cfg;
    private final int intervalSeconds;
    private final SecureRandom random = new SecureRandom();
    private boolean dbDownLogged;

    ClusterSafety(WikiApp app, Database db, WikiConfig cfg, int intervalSeconds) {
        this.app = app;
        this.db = db;
        this.cfg = cfg;
        this.intervalSeconds = intervalSeconds;
    }

    @Override
    public void run() {
        if (app.panicked()) return;
        try (Connection c = db.connect()) {
            c.setAutoCommit(false);
            String otherCluster = null, otherNode = null;
            int rows = 0;
            try (PreparedStatement ps = c.prepareStatement("SELECT CLUSTER_NAME, NODE,"
                    + " UPDATED_AT > NOW(3) - INTERVAL ? SECOND FROM CLUSTERSAFETY FOR UPDATE")) {
                ps.setInt(1, 3 * intervalSeconds);
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        rows++;
                        boolean fresh = rs.getBoolean(3);
                        if (fresh && !cfg.clusterName().equals(rs.getString(1))) {
                            otherCluster = rs.getString(1);
                            otherNode = rs.getString(2);
                        }
                    }
                }
            }
            // Write our number in both cases. On a panic this is what Confluence does too: the new value makes
            // every other node using this database panic as well, so both sides stop writing.
            writeRow(c, rows);
            c.commit();
            if (otherCluster != null)
                app.panic(PANIC_MESSAGE + " (CLUSTERSAFETY was written by node '" + otherNode + "' of cluster '"
                        + otherCluster + "' within the last " + 3 * intervalSeconds + " s; this node is '"
                        + cfg.nodeName() + "' of cluster '" + cfg.clusterName() + "')");
            if (dbDownLogged) WikiLog.info(CAT, "Cluster safety check: database reachable again");
            dbDownLogged = false;
        } catch (SQLException e) {
            // A database outage is not a panic; log once per outage and retry next interval.
            if (!dbDownLogged) WikiLog.warn(CAT, "Cluster safety check skipped, database unreachable: " + e.getMessage());
            dbDownLogged = true;
        } catch (RuntimeException e) {
            WikiLog.error(CAT, "Cluster safety check failed: " + e);
        }
    }

    private void writeRow(Connection c, int existingRows) throws SQLException {
        if (existingRows != 1) {
            // The table must hold exactly one row; repair anything else.
            try (Statement st = c.createStatement()) {
                st.executeUpdate("DELETE FROM CLUSTERSAFETY");
            }
        }
        String sql = existingRows == 1
                ? "UPDATE CLUSTERSAFETY SET SAFETY_NUMBER = ?, CLUSTER_NAME = ?, NODE = ?, UPDATED_AT = NOW(3)"
                : "INSERT INTO CLUSTERSAFETY (SAFETY_NUMBER, CLUSTER_NAME, NODE, UPDATED_AT) VALUES (?, ?, ?, NOW(3))";
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            ps.setLong(1, random.nextLong() & Long.MAX_VALUE);
            ps.setString(2, cfg.clusterName());
            ps.setString(3, cfg.nodeName());
            ps.executeUpdate();
        }
    }
}
