# Managed by cutover (templates/wiki/setenv.sh). Sourced by catalina.sh.
# The AJP secret and the jvmRoute are written into conf/server.xml (mode 0640) rather than
# passed as -D options, so they never show on the JVM's command line (ps).
CATALINA_OPTS="$CATALINA_OPTS -Xms128m -Xmx256m"
CATALINA_OPTS="$CATALINA_OPTS -Dwiki.version={{ app_release }}"
CATALINA_OPTS="$CATALINA_OPTS -Dwiki.home={{ app_home }}"
CATALINA_OPTS="$CATALINA_OPTS -Djava.awt.headless=true -Dfile.encoding=UTF-8"
export CATALINA_OPTS
