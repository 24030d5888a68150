// The interoperability workload for the Go client (github.com/apache/spark-connect-go),
// run once straight against a Spark Connect server and once through sparkgate by
// tests/interop/matrix.py. It prints the same line protocol as python/workload.py:
//
//	SESSION <check> <session id>
//	RESULT <check> pass|error|fail|na <detail>
//
// The client exposes no session id, interrupt, ReleaseSession, CloneSession or artifact
// API; those checks report "na" with the reason.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/apache/spark-connect-go/spark"
	"github.com/apache/spark-connect-go/spark/client/options"
	"github.com/apache/spark-connect-go/spark/sparkerrors"
	"github.com/apache/spark-connect-go/spark/sql"
	"github.com/apache/spark-connect-go/spark/sql/functions"
	"github.com/apache/spark-connect-go/spark/sql/utils"
)

func emit(words ...string) {
	line := strings.Join(words, " ")
	fmt.Println(strings.ReplaceAll(line, "\n", " "))
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 240 {
		return s[:240] + "…"
	}
	return s
}

// outcome classifies an error: a gRPC status (a SparkError carries one) is "error" with a
// signature "<grpc code> <error class>: message"; anything else is "fail".
func outcome(err error) (string, string) {
	var se *sparkerrors.SparkError
	if errors.As(err, &se) && se != nil {
		cls := se.ErrorClass
		if cls == "" {
			cls = "-"
		}
		return "error", fmt.Sprintf("%s %s: %s", strings.ToUpper(codeName(se.Code.String())), cls, short(err.Error()))
	}
	return "fail", short(err.Error())
}

func codeName(c string) string {
	// grpc-go prints codes in CamelCase (Unauthenticated); the other clients print
	// UNAUTHENTICATED. Normalise to the latter.
	var b strings.Builder
	for i, r := range c {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func compare(got, want any, what string) (string, string) {
	if reflect.DeepEqual(got, want) {
		return "pass", what
	}
	return "fail", short(fmt.Sprintf("got %v, want %v", got, want))
}

// clientVersion is the module version pinned in go.mod (reported in the matrix).
const clientVersion = "v0.1.1-0.20250826122459-0e3d565b63e6"

type workload struct {
	ctx context.Context
}

func (w *workload) session(url string) (sql.SparkSession, error) {
	return sql.NewSessionBuilder().Remote(url).Build(w.ctx)
}

func toInt64(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	}
	panic(fmt.Sprintf("not an integer: %T %v", v, v))
}

func (w *workload) rangeFilterAggJoin(spark sql.SparkSession) (string, string, error) {
	a, err := spark.Sql(w.ctx, "SELECT id, id % 10 AS k FROM range(0, 1000)")
	if err != nil {
		return "", "", err
	}
	b, err := spark.Sql(w.ctx, "SELECT id AS bk, concat('k', cast(id AS string)) AS name FROM range(0, 10)")
	if err != nil {
		return "", "", err
	}
	f, err := a.Filter(w.ctx, functions.Expr("id % 3 = 0"))
	if err != nil {
		return "", "", err
	}
	g, err := f.GroupBy(functions.Col("k")).Agg(w.ctx, functions.Count(functions.Col("id")).Alias("n"),
		functions.Sum(functions.Col("id")).Alias("s"))
	if err != nil {
		return "", "", err
	}
	j, err := g.Join(w.ctx, b, functions.Col("k").Eq(functions.Col("bk")), utils.JoinTypeInner)
	if err != nil {
		return "", "", err
	}
	o, err := j.OrderBy(w.ctx, functions.Col("k").Asc())
	if err != nil {
		return "", "", err
	}
	rows, err := o.Collect(w.ctx)
	if err != nil {
		return "", "", err
	}
	var got, want [][4]any
	for _, r := range rows {
		got = append(got, [4]any{toInt64(r.Value("k")), toInt64(r.Value("n")), toInt64(r.Value("s")), r.Value("name")})
	}
	for k := int64(0); k < 10; k++ {
		var n, s int64
		for i := int64(0); i < 1000; i++ {
			if i%3 == 0 && i%10 == k {
				n++
				s += i
			}
		}
		want = append(want, [4]any{k, n, s, fmt.Sprintf("k%d", k)})
	}
	st, d := compare(got, want, "10 groups joined")
	return st, d, nil
}

func (w *workload) sqlCheck(spark sql.SparkSession) (string, string, error) {
	df, err := spark.Sql(w.ctx, "SELECT id, id * id AS sq FROM range(10) WHERE id > 6 ORDER BY id")
	if err != nil {
		return "", "", err
	}
	rows, err := df.Collect(w.ctx)
	if err != nil {
		return "", "", err
	}
	var got [][2]int64
	for _, r := range rows {
		got = append(got, [2]int64{toInt64(r.At(0)), toInt64(r.At(1))})
	}
	st, d := compare(got, [][2]int64{{7, 49}, {8, 64}, {9, 81}}, "3 rows")
	return st, d, nil
}

func (w *workload) tempView(spark sql.SparkSession) (string, string, error) {
	df, err := spark.Sql(w.ctx, "SELECT * FROM range(0, 25)")
	if err != nil {
		return "", "", err
	}
	if err := df.CreateTempView(w.ctx, "interop_view", true, false); err != nil {
		return "", "", err
	}
	q, err := spark.Sql(w.ctx, "SELECT count(*) AS n, sum(id) AS s FROM interop_view")
	if err != nil {
		return "", "", err
	}
	rows, err := q.Collect(w.ctx)
	if err != nil {
		return "", "", err
	}
	st, d := compare([2]int64{toInt64(rows[0].At(0)), toInt64(rows[0].At(1))}, [2]int64{25, 300}, "view used by a later call")
	return st, d, nil
}

func (w *workload) largeResult(spark sql.SparkSession, n int64) (string, string, error) {
	df, err := spark.Sql(w.ctx, fmt.Sprintf("SELECT id, id * 2 AS x FROM range(0, %d)", n))
	if err != nil {
		return "", "", err
	}
	rows, err := df.Collect(w.ctx)
	if err != nil {
		return "", "", err
	}
	var sum int64
	for _, r := range rows {
		sum += toInt64(r.At(1))
	}
	st, d := compare([2]int64{int64(len(rows)), sum}, [2]int64{n, n * (n - 1)}, fmt.Sprintf("%d rows", n))
	return st, d, nil
}

func (w *workload) errorClass(spark sql.SparkSession) (string, string, error) {
	df, err := spark.Sql(w.ctx, "SELECT * FROM interop_no_such_table")
	if err == nil {
		_, err = df.Collect(w.ctx)
	}
	if err == nil {
		return "fail", "no error for a missing table", nil
	}
	var se *sparkerrors.SparkError
	if errors.As(err, &se) && se != nil && se.ErrorClass == "TABLE_OR_VIEW_NOT_FOUND" {
		return "pass", "SparkError " + se.ErrorClass + " SQLSTATE " + se.SqlState, nil
	}
	st, d := outcome(err)
	return "fail", "wrong error: " + st + " " + d, nil
}

func (w *workload) config(spark sql.SparkSession) (string, string, error) {
	conf := spark.Config()
	if err := conf.Set(w.ctx, "spark.sql.shuffle.partitions", "7"); err != nil {
		return "", "", err
	}
	got, err := conf.Get(w.ctx, "spark.sql.shuffle.partitions")
	if err != nil {
		return "", "", err
	}
	dflt, err := conf.GetWithDefault(w.ctx, "spark.interop.unset.key", "fallback")
	if err != nil {
		return "", "", err
	}
	st, d := compare([2]string{got, dflt}, [2]string{"7", "fallback"}, "set/get/default")
	return st, d, nil
}

func (w *workload) reattach(url string) (string, string, error) {
	// The client's public API builds sessions with options.DefaultSparkClientOptions; its
	// reattachable execution is off by default.
	options.DefaultSparkClientOptions.ReattachExecution = true
	defer func() { options.DefaultSparkClientOptions.ReattachExecution = false }()
	spark, err := w.session(url)
	if err != nil {
		return "", "", err
	}
	n := int64(1000000)
	df, err := spark.Sql(w.ctx, fmt.Sprintf("SELECT id, repeat('r', 8) AS s FROM range(0, %d)", n))
	if err != nil {
		return "", "", err
	}
	rows, err := df.Collect(w.ctx)
	if err != nil {
		return "", "", err
	}
	var sum, chars int64
	for _, r := range rows {
		sum += toInt64(r.At(0))
		chars += int64(len(r.At(1).(string)))
	}
	st, d := compare([3]int64{int64(len(rows)), sum, chars}, [3]int64{n, n * (n - 1) / 2, 8 * n}, fmt.Sprintf("%d rows", n))
	return st, d, nil
}

func (w *workload) tlsToken(url string) (string, string, error) {
	spark, err := w.session(url)
	if err != nil {
		return "", "", err
	}
	df, err := spark.Sql(w.ctx, "SELECT * FROM range(0, 10)")
	if err != nil {
		return "", "", err
	}
	n, err := df.Count(w.ctx)
	if err != nil {
		return "", "", err
	}
	st, d := compare(n, int64(10), "TLS with a bearer token")
	return st, d, nil
}

func (w *workload) tlsWrongToken(url string) (string, string, error) {
	spark, err := w.session(url)
	if err != nil {
		return "", "", err
	}
	df, err := spark.Sql(w.ctx, "SELECT * FROM range(0, 10)")
	if err == nil {
		_, err = df.Count(w.ctx)
	}
	if err == nil {
		return "fail", "a wrong token was accepted", nil
	}
	st, d := outcome(err)
	if st == "error" && strings.HasPrefix(d, "UNAUTHENTICATED") {
		return "pass", "refused: " + d, nil
	}
	return "fail", "refused, but not with UNAUTHENTICATED: " + d, nil
}

func main() {
	url := flag.String("url", "", "sc:// URL")
	tlsURL := flag.String("tls-url", "", "sc:// URL of the gateway's TLS listener with a good token")
	badTLSURL := flag.String("bad-tls-url", "", "the same with a wrong token")
	flag.String("workdir", "", "scratch directory (unused)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	w := &workload{ctx: ctx}
	emit("CLIENT", "spark-connect-go", "(module version "+clientVersion+", spark "+spark.Version()+")")

	spark, err := w.session(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot build a session:", err)
		os.Exit(1)
	}
	type check struct {
		name string
		run  func() (string, string, error)
	}
	na := func(reason string) func() (string, string, error) {
		return func() (string, string, error) { return "na", reason, nil }
	}
	checks := []check{
		{"range_filter_agg_join", func() (string, string, error) { return w.rangeFilterAggJoin(spark) }},
		{"sql", func() (string, string, error) { return w.sqlCheck(spark) }},
		{"temp_view", func() (string, string, error) { return w.tempView(spark) }},
		{"large_result", func() (string, string, error) { return w.largeResult(spark, 600000) }},
		{"error_class", func() (string, string, error) { return w.errorClass(spark) }},
		{"config", func() (string, string, error) { return w.config(spark) }},
		{"interrupt", na("spark-connect-go has no interrupt API")},
		{"reattach", func() (string, string, error) { return w.reattach(*url) }},
		{"artifacts", na("spark-connect-go has no artifact API")},
		{"cached_local_relation", na("spark-connect-go always sends local data inline (no CachedLocalRelation, no ArtifactStatus)")},
		{"clone_session", na("spark-connect-go has no CloneSession API")},
		{"release_session", na("spark-connect-go never sends ReleaseSession (SparkSession.Stop does nothing)")},
	}
	if *tlsURL != "" {
		checks = append(checks,
			check{"tls_token", func() (string, string, error) { return w.tlsToken(*tlsURL) }},
			check{"tls_wrong_token", func() (string, string, error) { return w.tlsWrongToken(*badTLSURL) }})
	} else {
		reason := na("the server has no TLS listener (checked through the gateway)")
		checks = append(checks, check{"tls_token", reason}, check{"tls_wrong_token", reason})
	}
	for _, c := range checks {
		st, d, err := func() (st, d string, err error) {
			defer func() {
				if r := recover(); r != nil {
					st, d, err = "fail", short(fmt.Sprintf("panic: %v", r)), nil
				}
			}()
			return c.run()
		}()
		if err != nil {
			st, d = outcome(err)
		}
		emit("RESULT", c.name, st, d)
	}
}
