// Command validate checks rendered Kubernetes manifests for sparkgate offline.
//
//	validate FILE...                        strict decoding and sparkgate's own checks
//	validate -check-config SPARKGATE FILE...  runs `SPARKGATE --check-config` on the gateway
//	                                        configuration of every sparkgate container
//
// Every YAML document is decoded into its typed Kubernetes object (k8s.io/api, and the
// Prometheus Operator's monitoring/v1 for ServiceMonitor) by apimachinery's strict
// serializer: an unknown field, a duplicate key, a wrong type or an unknown kind is an
// error. Then come the checks that matter for sparkgate: probes on paths and ports the
// gateway serves, terminationGracePeriodSeconds longer than drain.timeout plus the preStop
// delay, Services, PodDisruptionBudgets, autoscalers and ServiceMonitors that select what
// was rendered, and a gateway configuration that parses and names only files and
// environment variables the pod provides. See tests/deploy/run.sh.
//
// It prints one line per file ("ok FILE: ..." or "FAIL FILE: ..." followed by the
// problems) and exits 1 if any file failed, 2 on a usage error.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	checkConfig := flag.String("check-config", "", "path of the sparkgate binary: run --check-config on each gateway configuration instead of the manifest checks")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: validate [-check-config SPARKGATE] FILE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	failed := 0
	for _, file := range flag.Args() {
		var problems []string
		var summary string
		set, err := loadFile(file)
		if err != nil {
			problems = append(problems, err.Error())
		} else if *checkConfig != "" {
			summary, problems = runCheckConfig(set, *checkConfig)
		} else {
			problems = validate(set)
			summary = set.summary()
		}
		if len(problems) > 0 {
			failed++
			fmt.Printf("FAIL %s\n", file)
			for _, p := range problems {
				fmt.Printf("  - %s\n", strings.ReplaceAll(p, "\n", "\n    "))
			}
			continue
		}
		fmt.Printf("ok   %s: %s\n", file, summary)
	}
	if failed > 0 {
		os.Exit(1)
	}
}
