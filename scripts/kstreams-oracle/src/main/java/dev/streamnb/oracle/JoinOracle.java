package dev.streamnb.oracle;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.Joined;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Joins through {@link TopologyTestDriver}: stream–stream (inner/left/outer within a window
 * with grace), stream–table (builder.table) and stream–global-table, inner/left.
 *
 * <p>Case: {"id", "kind": "stream-stream"|"stream-table"|"stream-globaltable", "how",
 * "before_ms", "after_ms", "grace_ms" (stream-stream only; for "stream-versioned-table": the join's
 * grace period, none when negative), "retention_ms" (stream-versioned-table: the versioned store's
 * history retention),
 * "records": [[side, key, ts_ms, value|null], ...]} where side is "L"/"R" (stream-stream)
 * or "S"/"T" (stream, table); records are piped in the given order. Values are longs.
 * Result: {"id", "results": [[key, ts, left|null, right|null, at], ...], "late": n,
 * "late_events": [[index, n], ...]} where ``at`` is the index of the record whose
 * processing emitted the result.
 */
final class JoinOracle {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String LEFT = "left";
    private static final String RIGHT = "right";
    private static final String OUT = "joined";

    private JoinOracle() {}

    static boolean handles(final String kind) {
        return kind.equals("stream-stream") || kind.equals("stream-table") || kind.equals("stream-globaltable")
            || kind.equals("table-table") || kind.equals("stream-versioned-table");
    }

    private static final ValueJoiner<Long, Long, String> JOINER = (l, r) -> l + " " + r;

    static ObjectNode runCase(final JsonNode spec, final Properties props) {
        final String kind = spec.get("kind").asText();
        final String how = spec.get("how").asText();
        final StreamsBuilder builder = new StreamsBuilder();
        final KStream<String, String> joined;
        if (kind.equals("table-table")) {
            final KTable<String, Long> leftTable = builder.table(LEFT, Consumed.with(Serdes.String(), Serdes.Long()));
            final KTable<String, Long> rightTable = builder.table(RIGHT, Consumed.with(Serdes.String(), Serdes.Long()));
            switch (how) {
                case "inner": joined = leftTable.join(rightTable, JOINER).toStream(); break;
                case "left": joined = leftTable.leftJoin(rightTable, JOINER).toStream(); break;
                case "outer": joined = leftTable.outerJoin(rightTable, JOINER).toStream(); break;
                default: throw new IllegalArgumentException("how must be inner, left or outer, got " + how);
            }
            return drive(spec, builder, joined, props);
        }
        final KStream<String, Long> left = builder.stream(LEFT, Consumed.with(Serdes.String(), Serdes.Long()));
        if (kind.equals("stream-stream")) {
            final KStream<String, Long> right = builder.stream(RIGHT, Consumed.with(Serdes.String(), Serdes.Long()));
            final JoinWindows windows = JoinWindows
                .ofTimeDifferenceAndGrace(Duration.ofMillis(spec.get("after_ms").asLong()),
                    Duration.ofMillis(spec.get("grace_ms").asLong()))
                .before(Duration.ofMillis(spec.get("before_ms").asLong()));
            final StreamJoined<String, Long, Long> serdes = StreamJoined.with(Serdes.String(), Serdes.Long(), Serdes.Long());
            switch (how) {
                case "inner": joined = left.join(right, JOINER, windows, serdes); break;
                case "left": joined = left.leftJoin(right, JOINER, windows, serdes); break;
                case "outer": joined = left.outerJoin(right, JOINER, windows, serdes); break;
                default: throw new IllegalArgumentException("how must be inner, left or outer, got " + how);
            }
        } else if (kind.equals("stream-versioned-table")) {
            final Materialized<String, Long, KeyValueStore<Bytes, byte[]>> versioned = Materialized
                .<String, Long>as(Stores.persistentVersionedKeyValueStore(
                    "versioned", Duration.ofMillis(spec.get("retention_ms").asLong())))
                .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long());
            final KTable<String, Long> table = builder.table(RIGHT, Consumed.with(Serdes.String(), Serdes.Long()), versioned);
            Joined<String, Long, Long> joinedWith = Joined.with(Serdes.String(), Serdes.Long(), Serdes.Long());
            final long grace = spec.get("grace_ms").asLong();
            if (grace >= 0) {
                joinedWith = joinedWith.withGracePeriod(Duration.ofMillis(grace));
            }
            switch (how) {
                case "inner": joined = left.join(table, JOINER, joinedWith); break;
                case "left": joined = left.leftJoin(table, JOINER, joinedWith); break;
                default: throw new IllegalArgumentException("how must be inner or left, got " + how);
            }
        } else if (kind.equals("stream-table")) {
            final KTable<String, Long> table = builder.table(RIGHT, Consumed.with(Serdes.String(), Serdes.Long()));
            switch (how) {
                case "inner": joined = left.join(table, JOINER); break;
                case "left": joined = left.leftJoin(table, JOINER); break;
                default: throw new IllegalArgumentException("how must be inner or left, got " + how);
            }
        } else {
            final GlobalKTable<String, Long> table = builder.globalTable(RIGHT, Consumed.with(Serdes.String(), Serdes.Long()));
            switch (how) {
                case "inner": joined = left.join(table, (k, v) -> k, JOINER); break;
                case "left": joined = left.leftJoin(table, (k, v) -> k, JOINER); break;
                default: throw new IllegalArgumentException("how must be inner or left, got " + how);
            }
        }
        return drive(spec, builder, joined, props);
    }

    private static ObjectNode drive(final JsonNode spec, final StreamsBuilder builder,
                                    final KStream<String, String> joined, final Properties props) {
        joined.to(OUT, Produced.with(Serdes.String(), Serdes.String()));
        final Topology topology = builder.build();

        final ObjectNode result = JSON.createObjectNode();
        result.set("id", spec.get("id"));
        final ArrayNode results = result.putArray("results");
        final ArrayNode lateEvents = result.putArray("late_events");
        try (TopologyTestDriver driver = new TopologyTestDriver(topology, props)) {
            final TestInputTopic<String, Long> leftIn = driver.createInputTopic(
                LEFT, Serdes.String().serializer(), Serdes.Long().serializer());
            final TestInputTopic<String, Long> rightIn = driver.createInputTopic(
                RIGHT, Serdes.String().serializer(), Serdes.Long().serializer());
            final TestOutputTopic<String, String> out = driver.createOutputTopic(
                OUT, Serdes.String().deserializer(), Serdes.String().deserializer());
            double dropped = dropped(driver);
            int index = 0;
            for (final JsonNode r : spec.get("records")) {
                final String side = r.get(0).asText();
                final String key = r.get(1).asText();
                final long ts = r.get(2).asLong();
                final Long value = r.get(3).isNull() ? null : r.get(3).asLong();
                if (side.equals("L") || side.equals("S")) {
                    leftIn.pipeInput(key, value, ts);
                } else {
                    rightIn.pipeInput(key, value, ts);
                }
                while (!out.isEmpty()) {
                    final TestRecord<String, String> rec = out.readRecord();
                    final ArrayNode row = JSON.createArrayNode().add(rec.key()).add(rec.timestamp());
                    final String[] parts = rec.value() == null ? new String[] {"null", "null"} : rec.value().split(" ");
                    for (final String part : parts) {
                        if (part.equals("null")) {
                            row.addNull();
                        } else {
                            row.add(Long.parseLong(part));
                        }
                    }
                    row.add(index);
                    results.add(row);
                }
                final double now = dropped(driver);
                if (now != dropped) {
                    lateEvents.add(JSON.createArrayNode().add(index).add((long) (now - dropped)));
                    dropped = now;
                }
                index++;
            }
            result.put("late", (long) dropped(driver));
        }
        return result;
    }

    private static double dropped(final TopologyTestDriver driver) {
        double total = 0;
        for (final Map.Entry<MetricName, ? extends Metric> entry : driver.metrics().entrySet()) {
            final MetricName name = entry.getKey();
            if (name.name().equals("dropped-records-total") && name.group().equals("stream-task-metrics")) {
                total += ((Number) entry.getValue().metricValue()).doubleValue();
            }
        }
        return total;
    }
}
