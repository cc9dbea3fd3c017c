/*
 * Starts one OpenSearch node from jars on the classpath (no distribution, no
 * Docker) for the aisoar local stack.
 *
 * Usage: java -cp <classes>:<jars>/* [-Daisoar.plugins=<class>,...] AisoarOpenSearchNode <config-dir>
 *
 * <config-dir>/opensearch.yml holds every setting (path.home, ports, ...) and
 * <config-dir>/log4j2.properties the logging; stack/services/opensearch.py writes both. The node runs until SIGTERM, then
 * closes cleanly so its data directory can be reused by the next start.
 *
 * -Daisoar.plugins names more plugin classes on the classpath (e.g. the security
 * plugin, whose jars only the secured node gets): loaded by name so this file
 * compiles against the core jars alone.
 */

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public final class AisoarOpenSearchNode extends Node {

    /** What a packaged node gets from its modules/ directory and our templates use. */
    static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class,          // HTTP + transport: without it there is no REST API
        CommonAnalysisPlugin.class,  // lowercase normalizer, common token filters
        MapperExtrasPlugin.class,    // scaled_float, rank_feature, search_as_you_type
        ReindexPlugin.class          // _reindex, _delete_by_query, _update_by_query
    );

    // Node's constructor that accepts classpath plugins is protected: hence the subclass.
    private AisoarOpenSearchNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        super(environment, plugins, true);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: AisoarOpenSearchNode <config-dir containing opensearch.yml>");
            System.exit(2);
        }
        Path configDir = Paths.get(args[0]).toAbsolutePath();
        Settings fileSettings = Settings.builder().loadFromPath(configDir.resolve("opensearch.yml")).build();

        // A packaged node finds these next to path.home; the plugin service expects them to exist.
        Path home = Paths.get(fileSettings.get("path.home"));
        Files.createDirectories(home.resolve("modules"));
        Files.createDirectories(home.resolve("plugins"));

        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            fileSettings, Collections.emptyMap(), configDir, () -> "aisoar-node");
        // Logging as a packaged node does it, from <config-dir>/log4j2.properties (console appender:
        // the service redirects stdout to its log file).
        LogConfigurator.registerErrorListener();
        LogConfigurator.configure(environment);
        List<Class<? extends Plugin>> plugins = new ArrayList<>(PLUGINS);
        for (String name : System.getProperty("aisoar.plugins", "").split(",")) {
            if (!name.isBlank()) {
                plugins.add(Class.forName(name.strip()).asSubclass(Plugin.class));
            }
        }
        AisoarOpenSearchNode node = new AisoarOpenSearchNode(environment, plugins);

        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }, "aisoar-opensearch-shutdown"));

        node.start();
        System.out.println("AISOAR_OPENSEARCH_STARTED");
        // OpenSearch's pools use daemon threads: keep the JVM alive until shutdown.
        closed.await();
    }
}
