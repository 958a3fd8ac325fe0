package wiki;

import jakarta.servlet.ServletContext;
import jakarta.servlet.ServletContextEvent;
import jakarta.servlet.ServletContextListener;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.Driver;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.Enumeration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Application lifecycle and state. Startup (DB connect + schema upgrade) runs on its own thread so that
 * Tomcat comes up and /status can answer STARTING while upgrade tasks run, as Confluence does.
 */
public final class WikiApp implements ServletContextListener {
    static final String ATTR = "wiki.app";
    private static final String CAT = "wiki.setup.WikiLauncher";

    enum Phase { STARTING, RUNNING, ERROR }

    private volatile Phase phase = Phase.STARTING;
    private volatile String reason = "";
    private volatile Integer schema;
    private volatile boolean panicked;
    private volatile WikiConfig cfg;
    private volatile Database db;
    private volatile Plugins plugins;
    private volatile String lastHealth = "";
    private ScheduledExecutorService scheduler;
    private Thread startup;

    @Override
    public void contextInitialized(ServletContextEvent ev) {
        ServletContext ctx = ev.getServletContext();
        ctx.setAttribute(ATTR, this);
        try {
            Path home = WikiConfig.resolveHome(getClass().getClassLoader());
            WikiLog.init(home);
            WikiLog.info(CAT, "Starting wiki " + Release.VERSION + " (needs schema " + Release.SCHEMA + "), wiki.home=" + home);
            String sysVersion = System.getProperty("wiki.version");
            if (sysVersion != null && !sysVersion.equals(Release.VERSION))
                WikiLog.warn(CAT, "-Dwiki.version=" + sysVersion + " in setenv.sh does not match the installed release "
                        + Release.VERSION + " (stale setenv.sh?)");
            cfg = WikiConfig.load(home);
            // Never log the password.
            WikiLog.info(CAT, "Config: node=" + cfg.nodeName() + " cluster=" + cfg.clusterName() + " peers=" + cfg.peers()
                    + " db=" + cfg.url() + " user=" + cfg.username() + " buildNumber=" + cfg.buildNumber);
            if (cfg.mailEnabled()) WikiLog.info("wiki.mail.MailService", "Mail enabled: would send mail via " + cfg.mailHost());
            else WikiLog.info("wiki.mail.MailService", "Mail disabled (mail.enabled is not true)");
            db = new Database(cfg);
            plugins = new Plugins(home);
            plugins.scan(); // at start: each plugin enabled or refused, in the log
        } catch (Exception e) {
            fail("Cannot start: " + e.getMessage());
            return;
        }
        startup = new Thread(this::startup, "wiki-startup");
        startup.setDaemon(true);
        startup.start();
    }

    private void startup() {
        int stepDelay = Integer.getInteger("wiki.upgrade.step.delay.seconds", 3);
        while (true) {
            try (Connection c = db.connect()) {
                phase = Phase.STARTING;
                int v = db.upgrade(c, stepDelay);
                schema = v;
                if (cfg.buildNumber != v) {
                    cfg.writeBuildNumber(v);
                    WikiLog.info(CAT, "Updated <buildNumber> in " + WikiConfig.FILE + " from " + cfg.buildNumber + " to " + v);
                }
                break;
            } catch (Database.SchemaTooNewException e) {
                fail(e.getMessage());
                return; // permanent, like Confluence refusing a newer database
            } catch (SQLException e) {
                if (!reason.startsWith("Database unreachable"))
                    WikiLog.error(CAT, "Database unreachable, retrying every 10 s: " + e.getMessage());
                phase = Phase.ERROR;
                reason = "Database unreachable: " + e.getMessage();
            } catch (Exception e) {
                fail("Startup failed: " + e);
                return;
            }
            try {
                Thread.sleep(10_000);
            } catch (InterruptedException e) {
                return; // shutting down
            }
        }
        int interval = Integer.getInteger("wiki.safety.interval.seconds", 10);
        scheduler = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "wiki-cluster-safety");
            t.setDaemon(true);
            return t;
        });
        scheduler.scheduleWithFixedDelay(new ClusterSafety(this, db, cfg, interval), 0, interval, TimeUnit.SECONDS);
        if (Release.BROKEN) {
            // The stand-in for "the new version is bad": upgrade done, then a post-upgrade task fails.
            fail("Post-upgrade task RebuildPageIndex failed: java.lang.IllegalStateException: "
                    + "page index format 3 is not supported by this build");
            return;
        }
        phase = Phase.RUNNING;
        reason = "";
        WikiLog.info(CAT, "Wiki " + Release.VERSION + " started: schema " + schema + ", node " + cfg.nodeName()
                + ", cluster " + cfg.clusterName());
    }

    private void fail(String why) {
        phase = Phase.ERROR;
        reason = why;
        WikiLog.error(CAT, why);
    }

    /** Called by the safety job. Permanent until restart, like Confluence. */
    void panic(String detail) {
        if (panicked) return;
        panicked = true;
        WikiLog.error("wiki.cluster.safety.ClusterPanicListener",
                "onClusterPanicEvent Received a panic event, stopping processing on the node: " + detail);
        WikiLog.info("wiki.cluster.safety.ClusterPanicListener", "Shutting down cluster safety scheduler");
        scheduler.shutdown();
    }

    @Override
    public void contextDestroyed(ServletContextEvent ev) {
        WikiLog.info(CAT, "Stopping wiki " + Release.VERSION);
        if (startup != null) startup.interrupt();
        if (scheduler != null) scheduler.shutdownNow();
        // Deregister drivers loaded by this webapp so Tomcat does not warn about a leak.
        ClassLoader mine = getClass().getClassLoader();
        for (Enumeration<Driver> ds = DriverManager.getDrivers(); ds.hasMoreElements();) {
            Driver d = ds.nextElement();
            if (d.getClass().getClassLoader() == mine) {
                try {
                    DriverManager.deregisterDriver(d);
                } catch (SQLException ignored) {
                    // shutting down anyway
                }
            }
        }
    }

    Phase phase() { return phase; }
    String reason() { return reason; }
    Integer schema() { return schema; }
    boolean panicked() { return panicked; }
    Database db() { return db; }
    /** Null when the app could not start far enough to know its home. */
    Plugins plugins() { return plugins; }
    WikiConfig cfg() { return cfg; }
    String nodeName() { return cfg == null ? "unknown" : cfg.nodeName(); }

    /** Log health only when it changes, so the log shows transitions rather than every poll. */
    void noteHealth(String health) {
        if (!health.equals(lastHealth)) {
            lastHealth = health;
            WikiLog.info("wiki.status.HealthCheck", "Health: " + health);
        }
    }
}
