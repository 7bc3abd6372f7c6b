--- How the ZooKeeper fixture runs Debian's zookeeper package: the jars,
-- the JVM options of a server and the main classes.
--
-- @module disco.testing.zookeeper.jvm

local _M = {}

_M.MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
_M.CLI_CLASS = "org.apache.zookeeper.ZooKeeperMain"

--- Default classpath. zookeeper.jar's manifest pulls in its other jars;
-- slf4j-log4j12 and log4j 1.2 are needed or the server logs nothing, and the
-- readiness check reads the log.
_M.DEFAULT_CLASSPATH = {
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
}

--- Default JVM options: a small heap, one GC thread, the C1 compiler only
-- (faster start, plenty for a test server), and no hsperfdata files in /tmp.
_M.DEFAULT_JAVA_OPTS = {
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-Xss512k",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.net.preferIPv4Stack=true",
}

return _M
