package charts

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func validCharts() []Chart {
	cdf := func(lo float64) [][2]float64 {
		return [][2]float64{{lo, 0.01}, {lo * 1.5, 0.5}, {lo * 4, 0.99}}
	}
	return []Chart{
		{File: "bars.svg", Kind: KindBars, Title: "Bill <per> 1M", Note: "a note & more\nsecond line", Axis: "$ per 1M", Format: "$%.2f",
			Series: []string{"ours", "peer"},
			Groups: []Group{{Label: "(a) mix", Sub: "detail", Values: []float64{4, 8}}, {Label: "(b) mix", Values: []float64{0, 8}}}},
		{File: "stacked.svg", Kind: KindStacked, Title: "Commands", Axis: "commands",
			Series: []string{"EVALSHA", "SET", "never drawn"},
			Groups: []Group{{Label: "tier", Values: []float64{1, 1, 0}}, {Label: "tier + global", Values: []float64{1, 2, 0}}}},
		{File: "cdf.svg", Kind: KindCDF, Title: "Latency",
			Panels: []Panel{
				{Title: "loopback", Lines: []Line{{Name: "ours", Points: cdf(100)}, {Name: "peer", Points: cdf(800)}}},
				{Title: "+1 ms", Lines: []Line{{Name: "ours", Points: cdf(1500)}, {Name: "peer", Points: cdf(2500)}}},
			}},
	}
}

// texts returns the character data of every <text> and <title> element of
// an SVG document, failing the test when it is not well-formed XML.
func texts(t *testing.T, svg []byte) []string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(svg)))
	var out []string
	in := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			in = tk.Name.Local == "text" || tk.Name.Local == "title"
		case xml.CharData:
			if in {
				out = append(out, string(tk))
			}
		case xml.EndElement:
			in = false
		}
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name  string
		chart Chart
		want  []string // texts that must appear
		never []string // texts that must not
	}{
		{"grouped bars", validCharts()[0], []string{"Bill <per> 1M", "a note & more", "second line", "ours", "peer", "(a) mix", "detail", "$4.00", "$8.00", "$ per 1M"}, nil},
		{"stacked bars: totals, no legend for an empty part", validCharts()[1], []string{"EVALSHA", "SET", "2.00", "3.00", "tier + global"}, []string{"never drawn"}},
		{"latency panels", validCharts()[2], []string{"loopback", "+1 ms", "ours", "peer", "p50 150 µs · p99 400 µs", "100 µs", "1 ms"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg, err := Render(tt.chart)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			got := map[string]bool{}
			for _, s := range texts(t, svg) {
				got[s] = true
			}
			for _, w := range tt.want {
				if !got[w] {
					t.Errorf("text %q missing; texts: %q", w, texts(t, svg))
				}
			}
			for _, n := range tt.never {
				if got[n] {
					t.Errorf("text %q drawn, want it left out", n)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	mod := func(i int, f func(*Chart)) Chart {
		c := validCharts()[i]
		f(&c)
		return c
	}
	tests := []struct {
		name  string
		chart Chart
		want  string // part of the error
	}{
		{"directory in the file name", mod(0, func(c *Chart) { c.File = "../x.svg" }), "plain name"},
		{"not an svg", mod(0, func(c *Chart) { c.File = "x.png" }), "plain name"},
		{"no title", mod(0, func(c *Chart) { c.Title = "" }), "no title"},
		{"unknown kind", mod(0, func(c *Chart) { c.Kind = "pie" }), `unknown kind "pie"`},
		{"values do not match series", mod(0, func(c *Chart) { c.Groups[0].Values = []float64{1} }), "1 values for 2 series"},
		{"negative value", mod(1, func(c *Chart) { c.Groups[1].Values[0] = -1 }), "not a finite non-negative number"},
		{"no panels", mod(2, func(c *Chart) { c.Panels = nil }), "no panels"},
		{"one point", mod(2, func(c *Chart) { c.Panels[0].Lines[0].Points = c.Panels[0].Lines[0].Points[:1] }), "1 points"},
		{"quantile falls", mod(2, func(c *Chart) { c.Panels[1].Lines[1].Points[2][1] = 0.2 }), "rising quantile"},
		{"zero latency", mod(2, func(c *Chart) { c.Panels[1].Lines[0].Points[0][0] = 0 }), "positive latency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(tt.chart)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWriteAllAndRead(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "charts.json")
	if err := os.WriteFile(in, []byte(`[{"file":"a.svg","kind":"bars","title":"A","series":["s"],"groups":[{"label":"g","values":[1]}]}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	cs, err := Read(in)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := []Chart{{File: "a.svg", Kind: KindBars, Title: "A", Series: []string{"s"}, Groups: []Group{{Label: "g", Values: []float64{1}}}}}
	if diff := cmp.Diff(want, cs); diff != "" {
		t.Errorf("Read (-want +got):\n%s", diff)
	}
	out := filepath.Join(dir, "out")
	if err := WriteAll(out, append(cs, validCharts()...)); err != nil {
		t.Fatalf("WriteAll: %v", err)
	}
	var got []string
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff([]string{"a.svg", "bars.svg", "cdf.svg", "stacked.svg"}, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}

	t.Run("invalid chart writes nothing", func(t *testing.T) {
		bad := filepath.Join(dir, "bad")
		err := WriteAll(bad, []Chart{validCharts()[0], {File: "b.svg", Kind: "pie", Title: "B"}})
		if err == nil {
			t.Fatal("WriteAll wrote an invalid chart")
		}
		if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory %s: %v, want it not created", bad, err)
		}
	})
	t.Run("two charts, one file", func(t *testing.T) {
		c := validCharts()[0]
		if err := WriteAll(filepath.Join(dir, "dup"), []Chart{c, c}); err == nil || !strings.Contains(err.Error(), "two charts write bars.svg") {
			t.Errorf("WriteAll = %v, want the duplicate named", err)
		}
	})
	t.Run("bad JSON", func(t *testing.T) {
		p := filepath.Join(dir, "bad.json")
		_ = os.WriteFile(p, []byte(`{"file":`), 0o644)
		if _, err := Read(p); err == nil {
			t.Error("Read accepted truncated JSON")
		}
	})
}
