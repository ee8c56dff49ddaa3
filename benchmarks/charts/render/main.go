// Command render draws the benchmark charts: it reads the JSON the harness
// writes (package benchmarks, BUCKETGATE_BENCH_CHARTS) and writes one SVG
// per chart into a directory.
//
//	go run ./benchmarks/charts/render -in bin/bench-charts.json -out docs/bench
//
// `make bench` runs it after the harness, so the pictures in
// docs/BENCHMARKS.md always show the figures of the same run.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/bucketgate/bucketgate/benchmarks/charts"
)

func main() {
	in := flag.String("in", "bin/bench-charts.json", "the harness's chart data (JSON)")
	out := flag.String("out", "docs/bench", "directory to write the SVG files to")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "render: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	cs, err := charts.Read(*in)
	if err == nil {
		err = charts.WriteAll(*out, cs)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "render: %v\n", err)
		os.Exit(1)
	}
	for _, c := range cs {
		fmt.Printf("wrote %s/%s\n", *out, c.File)
	}
}
