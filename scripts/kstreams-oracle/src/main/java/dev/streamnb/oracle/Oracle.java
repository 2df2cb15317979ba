package dev.streamnb.oracle;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyConfig;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.state.BuiltInDslStoreSuppliers;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Kafka Streams oracle: runs windowed SUM aggregations through {@link TopologyTestDriver}.
 *
 * <p>Reads one JSON case per line on stdin and writes one JSON result per line on stdout,
 * in the same order (the format is documented in tests/oracle/kstreams.py). A case that
 * cannot run yields {@code {"id":..,"error":".."}} and the next case still runs.
 *
 * <p>Topology per case: input topic (String key, Long value, explicit timestamps, one
 * partition) -> groupByKey -> windowedBy(kind) -> aggregate(sum) -> (a) toStream -> "updates",
 * (b) suppress(untilWindowCloses(unbounded())) -> toStream -> "finals". Record caches are
 * off so every window update is forwarded; the end of the input closes nothing.
 *
 * <p>{@code --metrics} prints, on stderr, every metric whose name mentions "drop", "lateness"
 * or "expired" after each case (to check which one counts late records).
 */
public final class Oracle {
    private static final String INPUT = "input";
    private static final String UPDATES = "updates";
    private static final String FINALS = "finals";
    private static final String DROPPED_METRIC = "dropped-records-total";

    private static final ObjectMapper JSON = new ObjectMapper();

    private Oracle() {}

    public static void main(final String[] args) throws IOException {
        boolean dumpMetrics = false;
        for (final String arg : args) {
            if (arg.equals("--metrics")) {
                dumpMetrics = true;
            } else {
                System.err.println("usage: java -cp ... dev.streamnb.oracle.Oracle [--metrics] < cases.jsonl > results.jsonl");
                System.exit(2);
            }
        }
        final Path stateDir = createStateRoot();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
             BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8))) {
            String line;
            int number = 0;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                number++;
                ObjectNode result;
                JsonNode id = null;
                try {
                    final JsonNode spec = JSON.readTree(line);
                    id = spec.get("id");
                    final Path caseDir = stateDir.resolve("case-" + number);
                    try {
                        result = runCase(spec, caseDir, dumpMetrics);
                    } finally {
                        deleteTree(caseDir);
                    }
                } catch (final Exception e) {
                    result = JSON.createObjectNode();
                    result.set("id", id);
                    result.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
                }
                out.write(JSON.writeValueAsString(result));
                out.write('\n');
                out.flush();
            }
        } finally {
            deleteTree(stateDir);
        }
    }

    // --- one case -------------------------------------------------------------------

    private static ObjectNode runCase(final JsonNode spec, final Path stateDir, final boolean dumpMetrics) {
        final String kind = text(spec, "kind");

        final Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "kstreams-oracle");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "127.0.0.1:1");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        // No record cache: every update of a window is forwarded, in processing order.
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // Window/session stores: RocksDB (Kafka's default) or in-memory; both apply the same retention.
        final JsonNode store = spec.get("store");
        final String storeName = store == null || store.isNull() ? "rocksdb" : store.asText();
        switch (storeName) {
            case "rocksdb":
                props.put(StreamsConfig.DSL_STORE_SUPPLIERS_CLASS_CONFIG, BuiltInDslStoreSuppliers.RocksDBDslStoreSuppliers.class);
                break;
            case "in_memory":
                props.put(StreamsConfig.DSL_STORE_SUPPLIERS_CLASS_CONFIG, BuiltInDslStoreSuppliers.InMemoryDslStoreSuppliers.class);
                break;
            default:
                throw new IllegalArgumentException("\"store\" must be \"rocksdb\" or \"in_memory\", got " + store);
        }
        // Record every metric (the late-record ones are INFO; TRACE lets --metrics show the rest).
        props.put(StreamsConfig.METRICS_RECORDING_LEVEL_CONFIG, "TRACE");

        if (JoinOracle.handles(kind)) {
            return JoinOracle.runCase(spec, props);
        }
        final Topology topology = buildTopology(kind, spec, props);

        final ObjectNode result = JSON.createObjectNode();
        result.set("id", spec.get("id"));
        final ArrayNode finals = result.putArray("finals");
        final ArrayNode updates = result.putArray("updates");
        final ArrayNode lateEvents = result.putArray("late_events");
        long streamTime = -1;

        try (TopologyTestDriver driver = new TopologyTestDriver(topology, props)) {
            final TestInputTopic<String, Long> input = driver.createInputTopic(
                INPUT, Serdes.String().serializer(), Serdes.Long().serializer());
            final TestOutputTopic<String, String> updatesTopic = driver.createOutputTopic(
                UPDATES, Serdes.String().deserializer(), Serdes.String().deserializer());
            final TestOutputTopic<String, String> finalsTopic = driver.createOutputTopic(
                FINALS, Serdes.String().deserializer(), Serdes.String().deserializer());

            final JsonNode events = spec.get("events");
            if (events == null || !events.isArray()) {
                throw new IllegalArgumentException("\"events\" must be a list of [key, ts_ms, value]");
            }
            double dropped = droppedRecords(driver);
            int index = 0;
            for (final JsonNode event : events) {
                if (!event.isArray() || event.size() != 3 || !event.get(0).isTextual()
                        || !event.get(1).canConvertToExactIntegral() || !event.get(2).canConvertToExactIntegral()) {
                    throw new IllegalArgumentException("event " + index + " is not [key:str, ts_ms:int, value:int]: " + event);
                }
                final long ts = event.get(1).asLong();
                if (ts < 0) {
                    throw new IllegalArgumentException("event " + index + " has a negative timestamp " + ts);
                }
                input.pipeInput(event.get(0).asText(), event.get(2).asLong(), ts);
                streamTime = Math.max(streamTime, ts);
                drain(updatesTopic, updates, index);
                drain(finalsTopic, finals, index);
                final double now = droppedRecords(driver);
                if (now != dropped) {
                    lateEvents.add(JSON.createArrayNode().add(index).add((long) (now - dropped)));
                    dropped = now;
                }
                index++;
            }
            result.put("late", (long) droppedRecords(driver));
            result.put("stream_time", streamTime);
            if (dumpMetrics) {
                printMetrics(spec.get("id"), driver);
            }
        }
        return result;
    }

    private static Topology buildTopology(final String kind, final JsonNode spec, final Properties props) {
        // The DSL picks its store suppliers from the builder's config, not the driver's.
        final StreamsBuilder builder = new StreamsBuilder(new TopologyConfig(new StreamsConfig(props)));
        final KGroupedStream<String, Long> grouped = builder
            .stream(INPUT, Consumed.with(Serdes.String(), Serdes.Long()))
            .groupByKey(Grouped.with(Serdes.String(), Serdes.Long()));

        final KTable<Windowed<String>, Long> table;
        switch (kind) {
            case "tumbling": {
                allowOnly(spec, kind, Set.of("size_ms", "grace_ms"));
                table = grouped
                    .windowedBy(TimeWindows.ofSizeAndGrace(millis(spec, "size_ms"), millis(spec, "grace_ms")))
                    .aggregate(() -> 0L, (k, v, agg) -> agg + v, Materialized.<String, Long, WindowStore<Bytes, byte[]>>with(Serdes.String(), Serdes.Long()));
                break;
            }
            case "hopping": {
                allowOnly(spec, kind, Set.of("size_ms", "advance_ms", "grace_ms"));
                table = grouped
                    .windowedBy(TimeWindows.ofSizeAndGrace(millis(spec, "size_ms"), millis(spec, "grace_ms"))
                        .advanceBy(millis(spec, "advance_ms")))
                    .aggregate(() -> 0L, (k, v, agg) -> agg + v, Materialized.<String, Long, WindowStore<Bytes, byte[]>>with(Serdes.String(), Serdes.Long()));
                break;
            }
            case "sliding": {
                allowOnly(spec, kind, Set.of("size_ms", "grace_ms"));
                table = grouped
                    .windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(millis(spec, "size_ms"), millis(spec, "grace_ms")))
                    .aggregate(() -> 0L, (k, v, agg) -> agg + v, Materialized.<String, Long, WindowStore<Bytes, byte[]>>with(Serdes.String(), Serdes.Long()));
                break;
            }
            case "session": {
                allowOnly(spec, kind, Set.of("gap_ms", "grace_ms"));
                table = grouped
                    .windowedBy(SessionWindows.ofInactivityGapAndGrace(millis(spec, "gap_ms"), millis(spec, "grace_ms")))
                    .aggregate(() -> 0L, (k, v, agg) -> agg + v, (k, left, right) -> left + right,
                        Materialized.<String, Long, SessionStore<Bytes, byte[]>>with(Serdes.String(), Serdes.Long()));
                break;
            }
            default:
                throw new IllegalArgumentException(
                    "unknown kind " + JSON.valueToTree(kind) + ": use tumbling, hopping, sliding or session");
        }

        table.toStream()
            .map(Oracle::flatten)
            .to(UPDATES, Produced.with(Serdes.String(), Serdes.String()));
        table.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
            .toStream()
            .map(Oracle::flatten)
            .to(FINALS, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    /** Windowed key + value as "start end value" (value "null" for a tombstone). */
    private static KeyValue<String, String> flatten(final Windowed<String> key, final Long value) {
        return KeyValue.pair(key.key(), key.window().start() + " " + key.window().end() + " " + value);
    }

    private static void drain(final TestOutputTopic<String, String> topic, final ArrayNode into, final int index) {
        while (!topic.isEmpty()) {
            final TestRecord<String, String> record = topic.readRecord();
            final String[] parts = record.value().split(" ");
            final ArrayNode row = JSON.createArrayNode()
                .add(record.key())
                .add(Long.parseLong(parts[0]))
                .add(Long.parseLong(parts[1]));
            if (parts[2].equals("null")) {
                row.addNull();
            } else {
                row.add(Long.parseLong(parts[2]));
            }
            row.add(index);
            row.add(record.timestamp());
            into.add(row);
        }
    }

    // --- metrics --------------------------------------------------------------------

    /** The task-level dropped-records-total (summed over tasks; there is one). */
    private static double droppedRecords(final TopologyTestDriver driver) {
        double total = 0;
        for (final Map.Entry<MetricName, ? extends Metric> entry : driver.metrics().entrySet()) {
            final MetricName name = entry.getKey();
            if (name.name().equals(DROPPED_METRIC) && name.group().equals("stream-task-metrics")) {
                total += ((Number) entry.getValue().metricValue()).doubleValue();
            }
        }
        return total;
    }

    private static void printMetrics(final JsonNode id, final TopologyTestDriver driver) {
        final List<Map.Entry<MetricName, ? extends Metric>> entries = new ArrayList<>(driver.metrics().entrySet());
        entries.sort(Comparator.comparing(e -> e.getKey().group() + "/" + e.getKey().name() + e.getKey().tags()));
        for (final Map.Entry<MetricName, ? extends Metric> entry : entries) {
            final MetricName name = entry.getKey();
            final String lower = name.name().toLowerCase();
            if (lower.contains("drop") || lower.contains("lateness") || lower.contains("expired") || lower.equals("put-rate")) {
                System.err.println("metric case=" + id + " " + name.group() + " " + name.name() + " "
                    + name.tags() + " = " + entry.getValue().metricValue());
            }
        }
    }

    // --- input checks ---------------------------------------------------------------

    private static final Set<String> PARAMETERS = Set.of("size_ms", "advance_ms", "grace_ms", "gap_ms");

    private static void allowOnly(final JsonNode spec, final String kind, final Set<String> allowed) {
        for (final Iterator<String> it = spec.fieldNames(); it.hasNext(); ) {
            final String field = it.next();
            if (PARAMETERS.contains(field) && !allowed.contains(field) && !spec.get(field).isNull()) {
                throw new IllegalArgumentException(
                    "\"" + field + "\" does not apply to " + kind + " windows (they take " + new TreeSet<>(allowed) + ")");
            }
        }
    }

    private static Duration millis(final JsonNode spec, final String field) {
        final JsonNode node = spec.get(field);
        if (node == null || node.isNull() || !node.canConvertToExactIntegral()) {
            throw new IllegalArgumentException("\"" + field + "\" must be an integer number of milliseconds");
        }
        return Duration.ofMillis(node.asLong());
    }

    private static String text(final JsonNode spec, final String field) {
        final JsonNode node = spec.get(field);
        if (node == null || !node.isTextual()) {
            throw new IllegalArgumentException("\"" + field + "\" must be a string");
        }
        return node.asText();
    }

    /**
     * The state stores' folder: on a RAM file system when there is one (/dev/shm), since
     * RocksDB and the driver's checkpoints fsync after every record, which dominates on a disk.
     * ORACLE_STATE_DIR overrides the parent folder.
     */
    private static Path createStateRoot() throws IOException {
        final String override = System.getenv("ORACLE_STATE_DIR");
        if (override != null && !override.isEmpty()) {
            return Files.createTempDirectory(Files.createDirectories(Path.of(override)), "kstreams-oracle-");
        }
        final Path shm = Path.of("/dev/shm");
        if (Files.isDirectory(shm) && Files.isWritable(shm)) {
            return Files.createTempDirectory(shm, "kstreams-oracle-");
        }
        return Files.createTempDirectory("kstreams-oracle-");
    }

    private static void deleteTree(final Path root) throws IOException {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }
}
