package sproc.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;

/** The benchmark's scenarios in Kafka Streams, as sproc runs them:
 *  java sproc.bench.Bench BROKERS APP SCENARIO IN OUT [SIDE]
 *  s0: pass-through; s1: parse, keep ok, project id and amount, serialize;
 *  s2: 10-second tumbling count per key (the user), emitted once per
 *  window when it closes (grace 0);
 *  s3: 1-hour/5-minute hopping sum of amount per country (re-keyed through
 *  a repartition topic, grace 3 h), emitted once per window when it closes;
 *  s4: trips (IN, keyed by vendor) left-joined with the vendors table read
 *  from the compacted topic SIDE: the trip's id and amount, and the
 *  vendor's name and tier when there is one;
 *  s5: trips (IN, keyed by trip id) joined with payments (SIDE, the same
 *  key) within 5 minutes, grace 1 minute: trip, vendor, amount, paid, method.
 *  Runs until killed; the harness watches the output topic. */
public final class Bench {
    public static void main(String[] args) throws Exception {
        String brokers = args[0], app = args[1], scenario = args[2], in = args[3], out = args[4];
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 10 * 1024 * 1024);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        p.put(StreamsConfig.producerPrefix("linger.ms"), 5);
        // s4: the table's topic is its changelog, as in sproc (by default
        // Kafka Streams would copy every row into a changelog of its own)
        p.put(StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG, StreamsConfig.REUSE_KTABLE_SOURCE_TOPICS);
        ObjectMapper json = new ObjectMapper();
        StreamsBuilder b = new StreamsBuilder();
        var src = b.stream(in, Consumed.with(Serdes.String(), Serdes.String()));
        switch (scenario) {
            case "s0" -> src.to(out, Produced.with(Serdes.String(), Serdes.String()));
            case "s1" -> src.flatMapValues(v -> {
                    try {
                        JsonNode n = json.readTree(v);
                        if (!n.path("ok").asBoolean(false)) return java.util.List.<String>of();
                        ObjectNode o = json.createObjectNode();
                        o.set("id", n.get("id"));
                        o.set("amount", n.get("amount"));
                        return java.util.List.of(json.writeValueAsString(o));
                    } catch (Exception e) {
                        return java.util.List.<String>of();
                    }
                }).to(out, Produced.with(Serdes.String(), Serdes.String()));
            case "s2" -> src.groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
                .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofSeconds(10)))
                .count()
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((w, c) -> new org.apache.kafka.streams.KeyValue<>(w.key(),
                    "{\"window_start\":" + w.window().start() + ",\"window_end\":" + w.window().end()
                    + ",\"n\":" + c + "}"))
                .to(out, Produced.with(Serdes.String(), Serdes.String()));
            case "s3" -> src.map((k, v) -> {
                    try {
                        JsonNode n = json.readTree(v);
                        return new org.apache.kafka.streams.KeyValue<>(n.get("country").asText(),
                                                                       n.get("amount").asDouble());
                    } catch (Exception e) {
                        return new org.apache.kafka.streams.KeyValue<>("?", 0.0);
                    }
                })
                .groupByKey(Grouped.with(Serdes.String(), Serdes.Double()))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofHours(1), Duration.ofHours(3))
                                       .advanceBy(Duration.ofMinutes(5)))
                .aggregate(() -> 0.0, (k, v, sum) -> sum + v,
                           Materialized.with(Serdes.String(), Serdes.Double()))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((w, sum) -> new org.apache.kafka.streams.KeyValue<>(w.key(),
                    "{\"window_start\":" + w.window().start() + ",\"window_end\":" + w.window().end()
                    + ",\"total\":" + sum + "}"))
                .to(out, Produced.with(Serdes.String(), Serdes.String()));
            case "s4" -> src.leftJoin(b.table(args[5], Consumed.with(Serdes.String(), Serdes.String())),
                                      (trip, vendor) -> enriched(json, trip, vendor))
                .to(out, Produced.with(Serdes.String(), Serdes.String()));
            case "s5" -> {
                KStream<String, String> payments = b.stream(args[5], Consumed.with(Serdes.String(), Serdes.String()));
                src.join(payments, (trip, pay) -> paid(json, trip, pay),
                         JoinWindows.ofTimeDifferenceAndGrace(Duration.ofMinutes(5), Duration.ofMinutes(1)),
                         StreamJoined.with(Serdes.String(), Serdes.String(), Serdes.String()))
                    .to(out, Produced.with(Serdes.String(), Serdes.String()));
            }
            default -> throw new IllegalArgumentException("scenario " + scenario);
        }
        // with the properties, so that the s4 optimization applies
        KafkaStreams ks = new KafkaStreams(b.build(p), p);
        // logging is off (slf4j-nop): say why a stream thread stops
        ks.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                .StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        ks.setStateListener((now, before) -> System.err.println("kafka streams: " + before + " -> " + now));
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> { ks.close(); done.countDown(); }));
        ks.start();
        done.await();
    }

    /** s4's joined value: the trip's id and amount, the vendor's name and
     *  tier when the table has the vendor (left join: null otherwise). */
    private static String enriched(ObjectMapper json, String trip, String vendor) {
        try {
            JsonNode t = json.readTree(trip);
            ObjectNode o = json.createObjectNode();
            o.set("id", t.get("id"));
            o.set("amount", t.get("amount"));
            if (vendor != null) {
                JsonNode v = json.readTree(vendor);
                o.set("name", v.get("name"));
                o.set("tier", v.get("tier"));
            }
            return json.writeValueAsString(o);
        } catch (Exception e) {
            return null;
        }
    }

    /** s5's joined value: the trip's id, vendor and amount, the payment's
     *  amount and method. */
    private static String paid(ObjectMapper json, String trip, String payment) {
        try {
            JsonNode t = json.readTree(trip), p = json.readTree(payment);
            ObjectNode o = json.createObjectNode();
            o.set("id", t.get("id"));
            o.set("vendor", t.get("vendor"));
            o.set("amount", t.get("amount"));
            o.set("paid", p.get("paid"));
            o.set("method", p.get("method"));
            return json.writeValueAsString(o);
        } catch (Exception e) {
            return null;
        }
    }
}
