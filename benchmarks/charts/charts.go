// Package charts draws the pictures of docs/BENCHMARKS.md as standalone
// SVG files from the benchmark harness's results (package benchmarks
// writes them as JSON; cmd render turns that file into docs/bench/*.svg).
//
// It knows three kinds of chart, enough for the figures and no more:
// grouped horizontal bars (a value per series per category, e.g. dollars
// per million requests, ours against the peer's), stacked horizontal bars
// (a total split into parts, e.g. Redis commands per decision by command)
// and latency distributions (cumulative percentiles on a logarithmic time
// axis, one panel per network condition). Only the standard library is
// used; the SVG needs no script, font or stylesheet from elsewhere.
package charts

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Kinds of Chart.
const (
	KindBars    = "bars"    // grouped horizontal bars: Groups[i].Values[j] is Series[j]'s value
	KindStacked = "stacked" // stacked horizontal bars: Groups[i].Values[j] is part Series[j]
	KindCDF     = "cdf"     // latency distributions: Panels
)

// Chart is one picture. Which fields are used depends on Kind.
type Chart struct {
	// File is the SVG's file name, e.g. "cost.svg": a plain name ending in
	// ".svg", no directory.
	File string `json:"file"`
	Kind string `json:"kind"`
	// Title is drawn at the top; Note under it, in smaller type (what was
	// measured, how, on what machine). Note may hold several lines
	// separated by "\n".
	Title string `json:"title"`
	Note  string `json:"note,omitempty"`
	// Axis is the value axis' label, units included (bars and stacked),
	// e.g. "$ per 1M allowed requests".
	Axis string `json:"axis,omitempty"`
	// Format is the fmt verb for values printed at the bars' ends, e.g.
	// "$%.2f" or "%.2f"; "" means "%.2f".
	Format string `json:"format,omitempty"`
	// Series names the bars of each group (bars) or the parts of each bar
	// (stacked), in the order of Group.Values.
	Series []string `json:"series,omitempty"`
	Groups []Group  `json:"groups,omitempty"`
	// Panels are the distributions (cdf), drawn side by side.
	Panels []Panel `json:"panels,omitempty"`
}

// Group is one category: a row of bars.
type Group struct {
	Label string `json:"label"`
	// Sub is an optional second line under Label.
	Sub    string    `json:"sub,omitempty"`
	Values []float64 `json:"values"`
}

// Panel is one latency plot: a line per contender.
type Panel struct {
	Title string `json:"title"`
	Lines []Line `json:"lines"`
}

// Line is one distribution: Points are (latency in microseconds, quantile
// in 0..1), quantiles increasing.
type Line struct {
	Name   string       `json:"name"`
	Points [][2]float64 `json:"points"`
}

// Validate reports what is wrong with c, if anything.
func (c Chart) Validate() error {
	if c.File == "" || filepath.Base(c.File) != c.File || !strings.HasSuffix(c.File, ".svg") {
		return fmt.Errorf("chart %q: file must be a plain name ending in .svg", c.File)
	}
	if c.Title == "" {
		return fmt.Errorf("chart %s: no title", c.File)
	}
	switch c.Kind {
	case KindBars, KindStacked:
		if len(c.Series) == 0 || len(c.Groups) == 0 {
			return fmt.Errorf("chart %s: needs series and groups", c.File)
		}
		for _, g := range c.Groups {
			if len(g.Values) != len(c.Series) {
				return fmt.Errorf("chart %s: group %q has %d values for %d series", c.File, g.Label, len(g.Values), len(c.Series))
			}
			for _, v := range g.Values {
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					return fmt.Errorf("chart %s: group %q: value %v is not a finite non-negative number", c.File, g.Label, v)
				}
			}
		}
	case KindCDF:
		if len(c.Panels) == 0 {
			return fmt.Errorf("chart %s: no panels", c.File)
		}
		for _, p := range c.Panels {
			if len(p.Lines) == 0 {
				return fmt.Errorf("chart %s: panel %q has no lines", c.File, p.Title)
			}
			for _, l := range p.Lines {
				if len(l.Points) < 2 {
					return fmt.Errorf("chart %s: line %q has %d points, want at least 2", c.File, l.Name, len(l.Points))
				}
				for i, pt := range l.Points {
					if !(pt[0] > 0) || math.IsInf(pt[0], 0) || pt[1] < 0 || pt[1] > 1 || (i > 0 && pt[1] < l.Points[i-1][1]) {
						return fmt.Errorf("chart %s: line %q: point %d (%v, %v) is not a positive latency with a rising quantile in 0..1", c.File, l.Name, i, pt[0], pt[1])
					}
				}
			}
		}
	default:
		return fmt.Errorf("chart %s: unknown kind %q", c.File, c.Kind)
	}
	return nil
}

// Render draws c as an SVG document.
func Render(c Chart) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	switch c.Kind {
	case KindCDF:
		return renderCDF(c), nil
	default:
		return renderBars(c), nil
	}
}

// Read decodes a results file: a JSON array of charts.
func Read(path string) ([]Chart, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cs []Chart
	if err := json.Unmarshal(data, &cs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%s: no charts", path)
	}
	return cs, nil
}

// WriteAll renders every chart into dir (created if missing), one file
// each. It writes nothing when any chart is invalid.
func WriteAll(dir string, cs []Chart) error {
	out := make([][]byte, len(cs))
	seen := map[string]bool{}
	for i, c := range cs {
		if seen[c.File] {
			return fmt.Errorf("two charts write %s", c.File)
		}
		seen[c.File] = true
		svg, err := Render(c)
		if err != nil {
			return err
		}
		out[i] = svg
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for i, c := range cs {
		if err := os.WriteFile(filepath.Join(dir, c.File), out[i], 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
