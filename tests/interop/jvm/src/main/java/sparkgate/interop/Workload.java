package sparkgate.interop;

import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.concat;
import static org.apache.spark.sql.functions.count;
import static org.apache.spark.sql.functions.lit;
import static org.apache.spark.sql.functions.sum;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicReference;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.connect.Dataset;
import org.apache.spark.sql.connect.SparkSession;

/**
 * The interoperability workload for the JVM client (org.apache.spark:spark-connect-client-jvm_2.13),
 * run once straight against a Spark Connect server and once through sparkgate by
 * tests/interop/matrix.py. It prints the line protocol of python/workload.py:
 *
 * <pre>
 *   SESSION &lt;check&gt; &lt;session id&gt;
 *   RESULT &lt;check&gt; pass|error|fail|na &lt;detail&gt;
 * </pre>
 *
 * Arguments: --url URL [--tls-url URL --bad-tls-url URL] --workdir DIR.
 */
public final class Workload {
  private final String url;
  private final String tlsUrl;
  private final String badTlsUrl;
  private final Path workdir;
  private final List<SparkSession> sessions = new ArrayList<>();

  private Workload(String url, String tlsUrl, String badTlsUrl, Path workdir) {
    this.url = url;
    this.tlsUrl = tlsUrl;
    this.badTlsUrl = badTlsUrl;
    this.workdir = workdir;
  }

  /** A check's verdict: status is pass, error, fail or na. */
  private record Verdict(String status, String detail) {}

  private interface Check {
    Verdict run() throws Exception;
  }

  private static void emit(String... words) {
    System.out.println(String.join(" ", words).replace('\n', ' ').replace('\r', ' '));
    System.out.flush();
  }

  private static String shortText(String s) {
    s = s == null ? "null" : s.trim().replaceAll("\\s+", " ");
    return s.length() <= 240 ? s : s.substring(0, 240) + "…";
  }

  private static final Pattern GRPC_CODE = Pattern.compile(
      "\\b(CANCELLED|UNKNOWN|INVALID_ARGUMENT|DEADLINE_EXCEEDED|NOT_FOUND|ALREADY_EXISTS|PERMISSION_DENIED|"
          + "RESOURCE_EXHAUSTED|FAILED_PRECONDITION|ABORTED|OUT_OF_RANGE|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|"
          + "DATA_LOSS|UNAUTHENTICATED)\\b");
  private static final Pattern ERROR_CLASS = Pattern.compile("\\[([A-Z][A-Z0-9_]+(?:\\.[A-Z0-9_]+)*)\\]");

  private static String errorClass(Throwable e) {
    if (e instanceof org.apache.spark.SparkThrowable st && st.getCondition() != null) {
      return st.getCondition();
    }
    Matcher m = ERROR_CLASS.matcher(String.valueOf(e.getMessage()));
    return m.find() ? m.group(1) : "-";
  }

  /** The gRPC code of an error, from the status in its cause chain or its message. */
  private static String grpcCode(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof org.sparkproject.io.grpc.StatusRuntimeException sre) {
        return sre.getStatus().getCode().name();
      }
    }
    for (Throwable t = e; t != null; t = t.getCause()) {
      Matcher m = GRPC_CODE.matcher(String.valueOf(t.getMessage()));
      if (m.find()) {
        return m.group(1);
      }
    }
    return "-";
  }

  private static boolean isClean(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof org.sparkproject.io.grpc.StatusRuntimeException || t instanceof org.apache.spark.SparkThrowable) {
        return true;
      }
    }
    return false;
  }

  private static String signature(Throwable e) {
    return grpcCode(e) + " " + errorClass(e) + ": " + e.getClass().getSimpleName() + ": " + shortText(e.getMessage());
  }

  private static Verdict compare(Object got, Object want, String what) {
    if (Objects.equals(got, want)) {
      return new Verdict("pass", what);
    }
    return new Verdict("fail", shortText("got " + got + ", want " + want));
  }

  private SparkSession session(String u) {
    SparkSession s = SparkSession.builder().remote(u).create();
    sessions.add(s);
    return s;
  }

  // -- the checks ------------------------------------------------------------------------

  private Verdict rangeFilterAggJoin(SparkSession spark) {
    Dataset<Row> a = spark.range(0, 1000).withColumn("k", col("id").mod(10));
    Dataset<Row> b = spark.range(0, 10).withColumnRenamed("id", "k")
        .withColumn("name", concat(lit("k"), col("k").cast("string")));
    List<Row> rows = a.filter(col("id").mod(3).equalTo(0)).groupBy(col("k"))
        .agg(count("*").alias("n"), sum("id").alias("s"))
        .join(b, "k").orderBy("k").collectAsList();
    List<List<Object>> got = new ArrayList<>();
    for (Row r : rows) {
      got.add(Arrays.asList(r.getAs("k"), r.getAs("n"), r.getAs("s"), r.getAs("name")));
    }
    List<List<Object>> want = new ArrayList<>();
    for (long k = 0; k < 10; k++) {
      long n = 0;
      long s = 0;
      for (long i = 0; i < 1000; i++) {
        if (i % 3 == 0 && i % 10 == k) {
          n++;
          s += i;
        }
      }
      want.add(Arrays.asList(k, n, s, "k" + k));
    }
    return compare(got, want, "10 groups joined");
  }

  private Verdict sql(SparkSession spark) {
    List<Row> rows = spark.sql("SELECT id, id * id AS sq FROM range(10) WHERE id > 6 ORDER BY id").collectAsList();
    List<List<Long>> got = new ArrayList<>();
    for (Row r : rows) {
      got.add(Arrays.asList(r.getLong(0), r.getLong(1)));
    }
    return compare(got, List.of(List.of(7L, 49L), List.of(8L, 64L), List.of(9L, 81L)), "3 rows");
  }

  private Verdict tempView(SparkSession spark) throws Exception {
    spark.range(0, 25).createOrReplaceTempView("interop_view");
    Row r = spark.sql("SELECT count(*) AS n, sum(id) AS s FROM interop_view").collectAsList().get(0);
    return compare(List.of(r.getLong(0), r.getLong(1)), List.of(25L, 300L), "view used by a later call");
  }

  private Verdict largeResult(SparkSession spark) {
    long n = 600_000;
    List<Row> rows = spark.range(0, n).selectExpr("id", "id * 2 AS x").collectAsList();
    long total = 0;
    for (Row r : rows) {
      total += r.getLong(1);
    }
    return compare(List.of((long) rows.size(), total), List.of(n, n * (n - 1)), n + " rows");
  }

  private Verdict errorClassCheck(SparkSession spark) {
    try {
      spark.sql("SELECT * FROM interop_no_such_table").collectAsList();
    } catch (Exception e) {
      String cls = errorClass(e);
      if (cls.equals("TABLE_OR_VIEW_NOT_FOUND")) {
        return new Verdict("pass", e.getClass().getSimpleName() + " " + cls);
      }
      return new Verdict("fail", "wrong error: " + signature(e));
    }
    return new Verdict("fail", "no error for a missing table");
  }

  private Verdict config(SparkSession spark) {
    spark.conf().set("spark.sql.shuffle.partitions", "7");
    String got = spark.conf().get("spark.sql.shuffle.partitions");
    String dflt = spark.conf().get("spark.interop.unset.key", "fallback");
    return compare(List.of(got, dflt), List.of("7", "fallback"), "set/get/default");
  }

  private Verdict interrupt(SparkSession spark) throws Exception {
    AtomicReference<Throwable> error = new AtomicReference<>();
    Thread t = new Thread(() -> {
      try {
        spark.range(0, 1_000_000_000_000L, 1, 2).selectExpr("sum(id % 7)").collectAsList();
      } catch (Throwable e) {
        error.set(e);
      }
    });
    t.setDaemon(true);
    t.start();
    int interrupted = 0;
    long deadline = System.nanoTime() + 60_000_000_000L;
    while (interrupted == 0 && System.nanoTime() < deadline && t.isAlive()) {
      Thread.sleep(1000);
      interrupted = spark.interruptAll().length();
    }
    t.join(60_000);
    if (t.isAlive()) {
      return new Verdict("fail", "the query still runs 60 s after interruptAll");
    }
    if (interrupted == 0) {
      return new Verdict("fail", "interruptAll found no operation to interrupt (" + error.get() + ")");
    }
    Throwable e = error.get();
    if (e == null) {
      return new Verdict("fail", "the interrupted query finished");
    }
    if (String.valueOf(e.getMessage()).contains("OPERATION_CANCELED") || String.valueOf(e.getMessage()).toLowerCase().contains("cancel")) {
      return new Verdict("pass", interrupted + " operation(s) interrupted; query failed with " + errorClass(e));
    }
    return new Verdict("fail", "the interrupted query failed with " + signature(e));
  }

  private Verdict reattach() {
    // A fresh session, so that the orchestrator can count its ReattachExecute calls in the
    // gateway log; the servers end every reattachable stream after 1 MiB.
    SparkSession spark = session(url);
    emit("SESSION", "reattach", spark.sessionId());
    long n = 1_000_000;
    List<Row> rows = spark.range(0, n).selectExpr("id", "repeat('r', 8) AS s").collectAsList();
    long ids = 0;
    long chars = 0;
    for (Row r : rows) {
      ids += r.getLong(0);
      chars += r.getString(1).length();
    }
    return compare(List.of((long) rows.size(), ids, chars), List.of(n, n * (n - 1) / 2, 8 * n), n + " rows");
  }

  private Verdict artifacts(SparkSession spark) throws Exception {
    // A jar made here (one text entry): AddArtifacts uploads it in chunks with CRCs, which the
    // server checks; the client fails unless every chunk's CRC was confirmed.
    Path jar = workdir.resolve("interop-artifact.jar");
    Files.createDirectories(workdir);
    try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(jar))) {
      out.putNextEntry(new JarEntry("sparkgate/interop/artifact.txt"));
      byte[] body = new byte[300_000];
      for (int i = 0; i < body.length; i++) {
        body[i] = (byte) ('a' + (i * 7919) % 26);
      }
      out.write(body);
      out.closeEntry();
    }
    spark.addArtifact(jar.toString());
    // The jar is now on the session's class path; a query still works afterwards.
    long n = spark.range(0, 5).count();
    return compare(n, 5L, "jar of " + Files.size(jar) + " bytes uploaded (CRC checked), session usable");
  }

  private Verdict cachedLocalRelation(SparkSession spark) {
    // Local data above spark.sql.session.localRelationCacheThreshold goes as an artifact:
    // ArtifactStatus asks whether the server has it, AddArtifacts uploads it (cache/<sha256>).
    spark.conf().set("spark.sql.session.localRelationCacheThreshold", "1024");
    int n = 5000;
    List<Row> rows = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      rows.add(org.apache.spark.sql.RowFactory.create((long) i, "v" + i));
    }
    org.apache.spark.sql.types.StructType schema = new org.apache.spark.sql.types.StructType()
        .add("a", org.apache.spark.sql.types.DataTypes.LongType)
        .add("b", org.apache.spark.sql.types.DataTypes.StringType);
    Row r = spark.createDataFrame(rows, schema).selectExpr("count(*) AS n", "sum(a) AS s").collectAsList().get(0);
    return compare(List.of(r.getLong(0), r.getLong(1)), List.of((long) n, (long) n * (n - 1) / 2),
        n + " local rows sent as a cached artifact");
  }

  private Verdict cloneSession(SparkSession spark) {
    spark.range(0, 4).createOrReplaceTempView("interop_clone_view");
    SparkSession clone = spark.cloneSession();
    sessions.add(clone);
    long n = clone.sql("SELECT count(*) AS n FROM interop_clone_view").collectAsList().get(0).getLong(0);
    return compare(List.of(n, !clone.sessionId().equals(spark.sessionId())), List.of(4L, true),
        "the clone sees the temp view");
  }

  private Verdict releaseSession() {
    SparkSession spark = session(url);
    String sid = spark.sessionId();
    emit("SESSION", "release_session", sid);
    spark.range(0, 3).collectAsList();
    spark.client().releaseSession();
    spark.releaseSessionOnClose_$eq(false);
    spark.close();
    SparkSession again = session(url + ";session_id=" + sid);
    again.releaseSessionOnClose_$eq(false);
    try {
      again.range(0, 3).collectAsList();
    } catch (Exception e) {
      if (String.valueOf(e.getMessage()).contains("SESSION_CLOSED")) {
        return new Verdict("pass", "ReleaseSession; the released id is refused with INVALID_HANDLE.SESSION_CLOSED");
      }
      return new Verdict("fail", "the released session id was refused with " + signature(e));
    }
    return new Verdict("fail", "the released session id still works");
  }

  private Verdict tlsToken() {
    SparkSession spark = session(tlsUrl);
    return compare(spark.range(0, 10).count(), 10L, "TLS with a token (authentication header)");
  }

  private Verdict tlsWrongToken() {
    SparkSession spark = session(badTlsUrl);
    spark.releaseSessionOnClose_$eq(false);
    try {
      spark.range(0, 10).count();
    } catch (Exception e) {
      if (grpcCode(e).equals("UNAUTHENTICATED")) {
        return new Verdict("pass", "refused: UNAUTHENTICATED: " + shortText(e.getMessage()));
      }
      return new Verdict("fail", "refused, but not with UNAUTHENTICATED: " + signature(e));
    }
    return new Verdict("fail", "a wrong token was accepted");
  }

  private void run() {
    SparkSession main = session(url);
    emit("SESSION", "main", main.sessionId());
    List<String> names = new ArrayList<>();
    List<Check> checks = new ArrayList<>();
    names.add("range_filter_agg_join");
    checks.add(() -> rangeFilterAggJoin(main));
    names.add("sql");
    checks.add(() -> sql(main));
    names.add("temp_view");
    checks.add(() -> tempView(main));
    names.add("large_result");
    checks.add(() -> largeResult(main));
    names.add("error_class");
    checks.add(() -> errorClassCheck(main));
    names.add("config");
    checks.add(() -> config(main));
    names.add("interrupt");
    checks.add(() -> interrupt(main));
    names.add("reattach");
    checks.add(this::reattach);
    names.add("artifacts");
    checks.add(() -> artifacts(main));
    names.add("cached_local_relation");
    checks.add(() -> cachedLocalRelation(main));
    names.add("clone_session");
    checks.add(() -> cloneSession(main));
    names.add("release_session");
    checks.add(this::releaseSession);
    names.add("tls_token");
    names.add("tls_wrong_token");
    if (tlsUrl != null) {
      checks.add(this::tlsToken);
      checks.add(this::tlsWrongToken);
    } else {
      Check na = () -> new Verdict("na", "the server has no TLS listener (checked through the gateway)");
      checks.add(na);
      checks.add(na);
    }
    for (int i = 0; i < names.size(); i++) {
      Verdict v;
      try {
        v = checks.get(i).run();
      } catch (Throwable e) {
        v = isClean(e) ? new Verdict("error", signature(e))
                       : new Verdict("fail", e.getClass().getName() + ": " + shortText(e.getMessage()));
      }
      emit("RESULT", names.get(i), v.status(), v.detail());
    }
    for (SparkSession s : sessions) {
      try {
        s.close();
      } catch (Throwable e) {
        // a refused or released session cannot be closed cleanly; nothing to do
      }
    }
  }

  public static void main(String[] args) {
    String url = null;
    String tlsUrl = null;
    String badTlsUrl = null;
    String workdir = ".";
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--url" -> url = args[i + 1];
        case "--tls-url" -> tlsUrl = args[i + 1];
        case "--bad-tls-url" -> badTlsUrl = args[i + 1];
        case "--workdir" -> workdir = args[i + 1];
        default -> throw new IllegalArgumentException("unknown argument " + args[i]);
      }
    }
    emit("CLIENT", "spark-connect-client-jvm_2.13 " + System.getProperty("interop.client.version", "?"));
    new Workload(Objects.requireNonNull(url, "--url"), tlsUrl, badTlsUrl, Path.of(workdir)).run();
    System.exit(0);
  }
}
