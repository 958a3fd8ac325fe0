# Sourced by catalina.sh (CATALINA_BASE/bin/setenv.sh). JVM options of the wiki, like Confluence's setenv.sh.
# The orchestrator edits/templates the heap, the AJP secret and the jvmRoute (must equal the mod_jk worker name).
CATALINA_OPTS="$CATALINA_OPTS -Xms128m -Xmx256m"
CATALINA_OPTS="$CATALINA_OPTS -Dwiki.version=@VERSION@"
CATALINA_OPTS="$CATALINA_OPTS -Dajp.secret=${WIKI_AJP_SECRET:-change-me}"
CATALINA_OPTS="$CATALINA_OPTS -Djvm.route=${WIKI_JVM_ROUTE:-node1}"
CATALINA_OPTS="$CATALINA_OPTS -Djava.awt.headless=true -Dfile.encoding=UTF-8"
# Optional: -Dwiki.safety.interval.seconds=10 -Dwiki.upgrade.step.delay.seconds=3 -Dwiki.home=/var/lib/wiki
export CATALINA_OPTS
