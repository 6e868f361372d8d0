package sproc.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.state.Stores;

/** The reference for sproc's joins (tests/integration/test_joins_kstreams.py):
 *  java sproc.bench.Joins BROKERS APP IN OUT WITHIN_MS GRACE_MS STATE_DIR HISTORY_MS
 *  reads IN-{S,T,G,L,R,A,B} and writes OUT-..., each joiner's value being
 *  {"l": left value, "r": right value} (null for a missing side):
 *  st-inner / st-left: stream S joined with table T by key;
 *  sv-inner / sv-left: S joined with table V, versioned (a versioned store
 *  of HISTORY_MS: as-of lookups at the stream record's time);
 *  gt-inner / gt-left: S joined with global table G by S's field g;
 *  ss-inner / ss-left / ss-outer: stream L joined with stream R within
 *  WITHIN_MS (grace GRACE_MS);
 *  tt-inner / tt-left / tt-outer: table A joined with table B.
 *  No caching (every update goes out), the outer joins' emit interval 0,
 *  max.task.idle.ms the default (0). Runs until killed. */
public final class Joins {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static JsonNode parse(String s) {
        try {
            return s == null ? null : JSON.readTree(s);
        } catch (Exception e) {
            return JSON.getNodeFactory().textNode(s);
        }
    }

    private static final ValueJoiner<String, String, String> PAIR = (l, r) -> {
        ObjectNode o = JSON.createObjectNode();
        o.set("l", l == null ? JSON.getNodeFactory().nullNode() : parse(l));
        o.set("r", r == null ? JSON.getNodeFactory().nullNode() : parse(r));
        return o.toString();
    };

    public static void main(String[] args) throws Exception {
        String brokers = args[0], app = args[1], px = args[2], ox = args[3];
        long within = Long.parseLong(args[4]), grace = Long.parseLong(args[5]);
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[6]);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        p.put("__emit.interval.ms.kstreams.outer.join.spurious.results.fix__", 0L);
        Serde<String> s = Serdes.String();
        Consumed<String, String> in = Consumed.with(s, s);
        Produced<String, String> out = Produced.with(s, s);
        StreamsBuilder b = new StreamsBuilder();

        KStream<String, String> stream = b.stream(px + "-S", in);
        KTable<String, String> table = b.table(px + "-T", in);
        stream.join(table, PAIR).to(ox + "-st-inner", out);
        stream.leftJoin(table, PAIR).to(ox + "-st-left", out);

        KTable<String, String> versioned = b.table(px + "-V", in,
            Materialized.<String, String>as(Stores.persistentVersionedKeyValueStore(
                "versioned", Duration.ofMillis(Long.parseLong(args[7])))).withKeySerde(s).withValueSerde(s));
        stream.join(versioned, PAIR).to(ox + "-sv-inner", out);
        stream.leftJoin(versioned, PAIR).to(ox + "-sv-left", out);

        GlobalKTable<String, String> global = b.globalTable(px + "-G", in);
        stream.join(global, (k, v) -> parse(v).path("g").asText(null), PAIR).to(ox + "-gt-inner", out);
        stream.leftJoin(global, (k, v) -> parse(v).path("g").asText(null), PAIR).to(ox + "-gt-left", out);

        KStream<String, String> left = b.stream(px + "-L", in);
        KStream<String, String> right = b.stream(px + "-R", in);
        JoinWindows w = JoinWindows.ofTimeDifferenceAndGrace(Duration.ofMillis(within), Duration.ofMillis(grace));
        left.join(right, PAIR, w, StreamJoined.with(s, s, s)).to(ox + "-ss-inner", out);
        left.leftJoin(right, PAIR, w, StreamJoined.with(s, s, s)).to(ox + "-ss-left", out);
        left.outerJoin(right, PAIR, w, StreamJoined.with(s, s, s)).to(ox + "-ss-outer", out);

        KTable<String, String> a = b.table(px + "-A", in);
        KTable<String, String> bt = b.table(px + "-B", in);
        a.join(bt, PAIR).toStream().to(ox + "-tt-inner", out);
        a.leftJoin(bt, PAIR).toStream().to(ox + "-tt-left", out);
        a.outerJoin(bt, PAIR).toStream().to(ox + "-tt-outer", out);

        KafkaStreams ks = new KafkaStreams(b.build(), p);
        Runtime.getRuntime().addShutdownHook(new Thread(ks::close));
        ks.start();
        Thread.currentThread().join();
    }
}
