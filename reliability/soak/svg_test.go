package soak_test

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// plotData is what the decisions-by-source plot shows.
type plotData struct {
	Start, End time.Time
	Decisions  []decision // the authorizer's, by Source
	Errors     []time.Time
	Faults     []window
	Title      string
}

// plotSources are the stacked series, bottom first, with their colours.
var plotSources = []struct{ name, color, label string }{
	{"upstash", "#1f77b4", "upstash (shared bucket)"},
	{"cache", "#9ecae1", "cache (repeated denial)"},
	{"memory", "#ff7f0e", "memory (fallback)"},
	{"none", "#9467bd", "none (403, no bucket)"},
}

// faultColors colour the fault bands and event lines by kind.
var faultColors = map[string]string{
	"upstash hang": "#d62728", "upstash 500": "#e377c2", "upstash reset": "#8c564b",
	"redis-server down": "#bcbd22", "key store reset": "#17becf",
	"SCRIPT FLUSH": "#2ca02c", "kill authorizer": "#000000", "kill predict": "#7f7f7f",
}

// faultKinds orders the fault lanes and the legend.
var faultKinds = []string{"upstash hang", "upstash 500", "upstash reset", "redis-server down", "key store reset", "SCRIPT FLUSH", "kill authorizer", "kill predict"}

// plotSVG renders decisions per second by source over time as a stacked
// area chart, with each kind of fault in a lane above it (and its windows
// as faint bands behind the data), instantaneous events as dashed lines
// and 5xx replies as ticks under the axis: a self-contained SVG document.
func plotSVG(w io.Writer, p plotData) error {
	const (
		width, height            = 1000, 520
		left, right, top, bottom = 110, 190, 116, 50
		laneTop, laneH           = 34, 9 // one lane per kind of fault, above the plot
	)
	plotW, plotH := float64(width-left-right), float64(height-top-bottom)
	span := p.End.Sub(p.Start)
	if span <= 0 {
		return fmt.Errorf("plot: empty time span")
	}
	bins := int(min(300, max(span/time.Second, 10))) // bins of at least a second, up to 300
	binW := span / time.Duration(bins)
	counts := make([][]float64, len(plotSources))
	for i := range counts {
		counts[i] = make([]float64, bins)
	}
	index := map[string]int{}
	for i, s := range plotSources {
		index[s.name] = i
	}
	for _, d := range p.Decisions {
		si, ok := index[d.Source]
		if !ok {
			continue
		}
		b := int(d.At.Sub(p.Start) / binW)
		if b >= 0 && b < bins {
			counts[si][b] += 1 / binW.Seconds() // per second
		}
	}
	maxV := 1.0
	for b := 0; b < bins; b++ {
		sum := 0.0
		for i := range counts {
			sum += counts[i][b]
		}
		maxV = max(maxV, sum)
	}
	maxV = niceCeil(maxV)
	x := func(t time.Time) float64 { return left + plotW*float64(t.Sub(p.Start))/float64(span) }
	y := func(v float64) float64 { return top + plotH - plotH*v/maxV }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">%s</text>`+"\n", left, xmlEscape(p.Title))
	// Fault lanes above the plot, and faint bands under the data.
	lane := map[string]int{}
	for i, k := range faultKinds {
		lane[k] = i
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-size="8" fill="#555">%s</text>`+"\n", left-6, laneTop+i*laneH+7, k)
	}
	for _, f := range p.Faults {
		c := faultColors[f.Kind]
		if c == "" {
			c = "#cccccc"
		}
		ly := laneTop + lane[f.Kind]*laneH
		w := max(x(f.End)-x(f.Start), 1.5)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
			x(f.Start), ly, w, laneH-2, c, xmlEscape(f.Kind))
		if f.End.After(f.Start) {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%.0f" fill="%s" fill-opacity="0.18"/>`+"\n",
				x(f.Start), top, w, plotH, c)
		}
	}
	// Stacked areas.
	cum := make([]float64, bins)
	for i, s := range plotSources {
		lower := append([]float64(nil), cum...)
		for k := range cum {
			cum[k] += counts[i][k]
		}
		var pts []string
		for k := 0; k < bins; k++ {
			t := p.Start.Add(binW*time.Duration(k) + binW/2)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(t), y(cum[k])))
		}
		for k := bins - 1; k >= 0; k-- {
			t := p.Start.Add(binW*time.Duration(k) + binW/2)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(t), y(lower[k])))
		}
		fmt.Fprintf(&b, `<polygon points="%s" fill="%s" fill-opacity="0.85" stroke="none"><title>%s</title></polygon>`+"\n",
			strings.Join(pts, " "), s.color, xmlEscape(s.label))
	}
	// Instantaneous events, over the data.
	for _, f := range p.Faults {
		if !f.End.After(f.Start) {
			c := faultColors[f.Kind]
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="1" stroke-opacity="0.5" stroke-dasharray="3,3"/>`+"\n",
				x(f.Start), top, x(f.Start), top+plotH, c)
		}
	}
	// 5xx replies.
	for _, e := range p.Errors {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#d62728" stroke-width="2"/>`+"\n",
			x(e), top+plotH, x(e), top+plotH+8)
	}
	// Axes and ticks.
	fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333"/>`+"\n", left, top+plotH, left+plotW, top+plotH)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%.0f" stroke="#333"/>`+"\n", left, top, left, top+plotH)
	for i := 0; i <= 5; i++ {
		v := maxV * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left-6, y(v)+4, math.Round(v*10)/10)
	}
	step := tickStep(span)
	for t := time.Duration(0); t <= span; t += step {
		xx := x(p.Start.Add(t))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#333"/>`+"\n", xx, top+plotH, xx, top+plotH+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", xx, top+plotH+22, fmtSpan(t))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">time since the start of the run</text>`+"\n", left+plotW/2, height-8)
	fmt.Fprintf(&b, `<text x="16" y="%.0f" transform="rotate(-90 16 %.0f)" text-anchor="middle">authorizer decisions per second</text>`+"\n", top+plotH/2, top+plotH/2)
	// Legend.
	lx, ly := width-right+14, top+4
	for i := len(plotSources) - 1; i >= 0; i-- {
		s := plotSources[i]
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx, ly, s.color, lx+18, ly+10, xmlEscape(s.label))
		ly += 18
	}
	ly += 8
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">faults</text>`+"\n", lx, ly+10)
	ly += 18
	for _, k := range faultKinds {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s" fill-opacity="0.5"/><text x="%d" y="%d">%s</text>`+"\n", lx, ly, faultColors[k], lx+18, ly+10, k)
		ly += 18
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="4" fill="#d62728"/><text x="%d" y="%d">5xx reply</text>`+"\n", lx, ly+4, lx+18, ly+10)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func tickStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
		if span/s <= 12 {
			return s
		}
	}
	return 30 * time.Minute
}

func fmtSpan(d time.Duration) string {
	if d%time.Minute == 0 && d > 0 {
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	if d >= time.Minute {
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// TestPlotSVG: the plot is a well-formed SVG document with every series,
// band and error tick.
func TestPlotSVG(t *testing.T) {
	p := plotData{Start: at(0), End: at(60), Title: "test <plot>",
		Faults: []window{{Kind: "upstash hang", Start: at(5), End: at(10), Upstash: true}, {Kind: "SCRIPT FLUSH", Start: at(20), End: at(20)}},
		Errors: []time.Time{at(31)}}
	for i := range 600 {
		src := plotSources[i%len(plotSources)].name
		p.Decisions = append(p.Decisions, decision{At: at(float64(i) / 10), Source: src})
	}
	var b strings.Builder
	if err := plotSVG(&b, p); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(b.String()))
	elems := map[string]int{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elems[se.Name.Local]++
		}
	}
	if elems["svg"] != 1 || elems["polygon"] != len(plotSources) {
		t.Errorf("elements %v: want one svg and %d polygons", elems, len(plotSources))
	}
	for _, want := range []string{"test &lt;plot&gt;", "memory (fallback)", `fill="#d62728" fill-opacity="0.18"`, `stroke-dasharray="3,3"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plot lacks %q", want)
		}
	}
}
