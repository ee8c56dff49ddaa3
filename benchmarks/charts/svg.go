package charts

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Drawing constants: one width for every chart, so that they line up in
// the document; sizes in SVG user units (pixels at 100%).
const (
	width      = 820.0
	fontFamily = `Inter, "Segoe UI", Roboto, "Helvetica Neue", Helvetica, Arial, sans-serif`
	colText    = "#1f2937"
	colMuted   = "#6b7280"
	colGrid    = "#e5e7eb"
	colAxis    = "#9ca3af"
	colBack    = "#ffffff"
)

// seriesColors tell contenders apart (blue for bucketgate, orange for the
// peer: distinguishable with the common colour-vision deficiencies).
var seriesColors = []string{"#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#ca8a04"}

// partColors tell the parts of a stacked bar apart.
var partColors = []string{"#1e3a8a", "#3b82f6", "#f59e0b", "#93c5fd", "#10b981", "#a3a3a3"}

// svg accumulates an SVG document.
type svg struct{ b strings.Builder }

func (s *svg) f(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

// text writes one line of text; anchor is start, middle or end.
func (s *svg) text(x, y float64, size float64, fill, anchor, weight, content string) {
	s.f(`<text x="%.1f" y="%.1f" font-size="%.1f" fill="%s" text-anchor="%s"`, x, y, size, fill, anchor)
	if weight != "" {
		s.f(` font-weight="%s"`, weight)
	}
	s.f(`>%s</text>`+"\n", html.EscapeString(content))
}

func (s *svg) line(x1, y1, x2, y2 float64, stroke string, w float64, dash string) {
	s.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"`, x1, y1, x2, y2, stroke, w)
	if dash != "" {
		s.f(` stroke-dasharray="%s"`, dash)
	}
	s.b.WriteString("/>\n")
}

func (s *svg) rect(x, y, w, h float64, fill string, rx float64) {
	s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" rx="%.1f"/>`+"\n", x, y, max(w, 0), h, fill, rx)
}

// open starts a document of height h: the root element, its title (for
// screen readers) and a white background.
func (s *svg) open(h float64, c Chart) {
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family='%s' role="img" aria-label="%s">`+"\n",
		width, h, width, h, fontFamily, html.EscapeString(c.Title))
	s.f("<title>%s</title>\n", html.EscapeString(c.Title))
	s.rect(0, 0, width, h, colBack, 0)
}

// header draws the title and the note, returning the y below them.
func header(s *svg, c Chart) float64 {
	s.text(24, 34, 18, colText, "start", "600", c.Title)
	y := 34.0
	for _, l := range noteLines(c.Note) {
		y += 18
		s.text(24, y, 12.5, colMuted, "start", "", l)
	}
	return y + 14
}

// noteLines splits the note at its newlines and wraps each line at the
// chart's width.
func noteLines(note string) []string {
	if note == "" {
		return nil
	}
	var out []string
	for _, para := range strings.Split(note, "\n") {
		line := ""
		for _, w := range strings.Fields(para) {
			// Muted small text averages narrower than textWidth's
			// estimate; 0.47 em per character measured on the figures.
			if line != "" && float64(len([]rune(line+" "+w)))*12.5*0.47 > width-48 {
				out = append(out, line)
				line = w
				continue
			}
			if line != "" {
				line += " "
			}
			line += w
		}
		out = append(out, line)
	}
	return out
}

// headerHeight is the height header takes.
func headerHeight(c Chart) float64 { return 34 + 18*float64(len(noteLines(c.Note))) + 14 }

// textWidth estimates the width of s at size: the average advance of a
// proportional sans-serif face, which is all the layout needs.
func textWidth(s string, size float64) float64 {
	return float64(len([]rune(s))) * size * 0.56
}

// legendWidth is the width of a legend entry's name.
func legendWidth(n string) float64 { return textWidth(n, 12.5) * 0.92 }

// legend draws swatches and names from x at y, wrapping at the right
// margin; it returns the y below it.
func legend(s *svg, x, y float64, names, colors []string) float64 {
	x0 := x
	for i, n := range names {
		w := 14 + 6 + legendWidth(n) + 22
		if x+w > width-24 && x > x0 {
			x, y = x0, y+22
		}
		s.rect(x, y-10.5, 14, 14, colors[i%len(colors)], 3)
		s.text(x+20, y+1, 12.5, colText, "start", "", n)
		x += w
	}
	return y + 20
}

// niceMax returns a round axis maximum at or above v and its tick step
// (1, 2, 2.5 or 5 times a power of ten, 4 to 6 ticks).
func niceMax(v float64) (top, step float64) {
	if v <= 0 {
		return 1, 0.25
	}
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10} {
		step = m * mag
		if top = math.Ceil(v/step) * step; top/step <= 6 {
			return top, step
		}
	}
	return math.Ceil(v/(10*mag)) * 10 * mag, 10 * mag
}

// fmtTick renders an axis value without trailing zeros.
func fmtTick(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		return "0"
	}
	return s
}

// renderBars draws grouped (KindBars) or stacked (KindStacked) horizontal
// bars.
func renderBars(c Chart) []byte {
	stacked := c.Kind == KindStacked
	format := c.Format
	if format == "" {
		format = "%.2f"
	}
	barH, barGap, groupGap := 17.0, 4.0, 20.0
	if stacked {
		barH = 26
	}
	perGroup := barH
	if !stacked {
		perGroup = float64(len(c.Series))*barH + float64(len(c.Series)-1)*barGap
	}
	labelW := 120.0
	for _, g := range c.Groups {
		labelW = max(labelW, textWidth(g.Label, 13), textWidth(g.Sub, 11.5))
	}
	labelW = min(labelW, 330)
	plotX := 24 + labelW + 14
	plotW := width - plotX - 84

	var vmax float64
	for _, g := range c.Groups {
		if stacked {
			var sum float64
			for _, v := range g.Values {
				sum += v
			}
			vmax = max(vmax, sum)
		} else {
			for _, v := range g.Values {
				vmax = max(vmax, v)
			}
		}
	}
	top, step := niceMax(vmax)
	xOf := func(v float64) float64 { return plotX + v/top*plotW }

	colors := seriesColors
	if stacked {
		colors = partColors
	}
	// The legend names the series that appear (a part that is zero in
	// every bar draws nothing).
	var legendNames, legendColors []string
	for j, n := range c.Series {
		shown := !stacked
		for _, g := range c.Groups {
			shown = shown || g.Values[j] > 0
		}
		if shown {
			legendNames, legendColors = append(legendNames, n), append(legendColors, colors[j%len(colors)])
		}
	}
	legendRows := 1.0
	{ // legend wraps: count its rows the way legend lays them out
		x := 24.0
		for _, n := range legendNames {
			w := 14 + 6 + legendWidth(n) + 22
			if x+w > width-24 && x > 24 {
				x, legendRows = 24, legendRows+1
			}
			x += w
		}
	}
	plotTop := headerHeight(c) + 22*legendRows + 14
	plotH := float64(len(c.Groups))*(perGroup+groupGap) + groupGap/2
	h := plotTop + plotH + 56

	s := &svg{}
	s.open(h, c)
	y := header(s, c)
	legend(s, 24, y+4, legendNames, legendColors)

	// Grid and ticks.
	for v := 0.0; v <= top+step/2; v += step {
		x := xOf(v)
		s.line(x, plotTop, x, plotTop+plotH, colGrid, 1, "")
		s.text(x, plotTop+plotH+18, 12, colMuted, "middle", "", fmtTick(v))
	}
	s.line(plotX, plotTop, plotX, plotTop+plotH, colAxis, 1.2, "")
	s.text(plotX+plotW/2, plotTop+plotH+40, 13, colText, "middle", "", c.Axis)

	gy := plotTop + groupGap/2
	for _, g := range c.Groups {
		mid := gy + perGroup/2
		if g.Sub == "" {
			s.text(plotX-12, mid+4.5, 13, colText, "end", "", g.Label)
		} else {
			s.text(plotX-12, mid-1, 13, colText, "end", "", g.Label)
			s.text(plotX-12, mid+14, 11.5, colMuted, "end", "", g.Sub)
		}
		if stacked {
			x, sum := plotX, 0.0
			for j, v := range g.Values {
				w := v / top * plotW
				s.rect(x, gy, w, barH, colors[j%len(colors)], 0)
				label := fmt.Sprintf(format, v)
				if v > 0 && textWidth(label, 11.5)+8 < w {
					fill := "#ffffff"
					if isLight(colors[j%len(colors)]) {
						fill = colText
					}
					s.text(x+w/2, gy+barH/2+4, 11.5, fill, "middle", "", label)
				}
				x += w
				sum += v
			}
			s.text(x+8, gy+barH/2+4.5, 13, colText, "start", "600", fmt.Sprintf(format, sum))
		} else {
			for j, v := range g.Values {
				by := gy + float64(j)*(barH+barGap)
				w := v / top * plotW
				s.rect(plotX, by, w, barH, colors[j%len(colors)], 2.5)
				s.text(plotX+w+6, by+barH/2+4.3, 12, colText, "start", "", fmt.Sprintf(format, v))
			}
		}
		gy += perGroup + groupGap
	}
	s.b.WriteString("</svg>\n")
	return []byte(s.b.String())
}

// isLight reports whether a "#rrggbb" colour needs dark text on it.
func isLight(hex string) bool {
	var r, g, b int
	if _, err := fmt.Sscanf(hex, "#%02x%02x%02x", &r, &g, &b); err != nil {
		return false
	}
	return 0.299*float64(r)+0.587*float64(g)+0.114*float64(b) > 150
}

// fmtMicros renders a latency given in microseconds.
func fmtMicros(us float64) string {
	switch {
	case us >= 10000:
		return fmt.Sprintf("%.1f ms", us/1000)
	case us >= 1000:
		return fmt.Sprintf("%.2f ms", us/1000)
	case us >= 10:
		return fmt.Sprintf("%.0f µs", us)
	}
	return fmt.Sprintf("%.1f µs", us)
}

// fmtTickMicros renders an axis value given in microseconds: "20 µs",
// "1 ms", "2.5 ms".
func fmtTickMicros(us float64) string {
	if us >= 1000 {
		return fmtTick(us/1000) + " ms"
	}
	return fmtTick(us) + " µs"
}

// quantile returns the latency of a line at quantile q (the first point at
// or above it).
func quantile(l Line, q float64) float64 {
	for _, p := range l.Points {
		if p[1] >= q-1e-9 {
			return p[0]
		}
	}
	return l.Points[len(l.Points)-1][0]
}

// logTicks are the 1-2-5 values between lo and hi.
func logTicks(lo, hi float64) []float64 {
	var out []float64
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= lo*0.999 && v <= hi*1.001 {
				out = append(out, v)
			}
		}
	}
	return out
}

// renderCDF draws latency distributions: one panel per condition, side by
// side, sharing a logarithmic time axis so that they compare at a glance.
func renderCDF(c Chart) []byte {
	// Names in order of first appearance, one colour each across panels.
	var names []string
	color := map[string]string{}
	lo, hi := math.Inf(1), 0.0
	for _, p := range c.Panels {
		for _, l := range p.Lines {
			if _, ok := color[l.Name]; !ok {
				color[l.Name] = seriesColors[len(names)%len(seriesColors)]
				names = append(names, l.Name)
			}
			for _, pt := range l.Points {
				lo, hi = min(lo, pt[0]), max(hi, pt[0])
			}
		}
	}
	// Round the range out to 1-2-5 values.
	lo = niceDown(lo)
	hi = niceUp(hi)
	colors := make([]string, len(names))
	for i, n := range names {
		colors[i] = color[n]
	}

	n := float64(len(c.Panels))
	gap := 46.0
	left, right := 70.0, 24.0
	panelW := (width - left - right - gap*(n-1)) / n
	plotTop := headerHeight(c) + 22 + 34
	plotH := 280.0
	maxLines := 0
	for _, p := range c.Panels {
		maxLines = max(maxLines, len(p.Lines))
	}
	h := plotTop + plotH + 52 + 18*float64(maxLines) + 12

	s := &svg{}
	s.open(h, c)
	y := header(s, c)
	legend(s, 24, y+4, names, colors)

	yOf := func(q float64) float64 { return plotTop + plotH - q*plotH }
	for i, p := range c.Panels {
		px := left + float64(i)*(panelW+gap)
		xOf := func(us float64) float64 {
			return px + (math.Log10(us)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*panelW
		}
		s.text(px+panelW/2, plotTop-12, 13.5, colText, "middle", "600", p.Title)
		// Grid.
		for _, q := range []float64{0, 0.25, 0.5, 0.75, 1} {
			s.line(px, yOf(q), px+panelW, yOf(q), colGrid, 1, "")
			if i == 0 {
				s.text(px-8, yOf(q)+4, 12, colMuted, "end", "", fmt.Sprintf("%.0f%%", q*100))
			}
		}
		for _, q := range []float64{0.5, 0.99} {
			s.line(px, yOf(q), px+panelW, yOf(q), colAxis, 1, "4 3")
			s.text(px+panelW-3, yOf(q)-4, 11, colMuted, "end", "", fmt.Sprintf("p%.0f", q*100))
		}
		// Every 1-2-5 value gets a grid line; only powers of ten get a
		// label unless a decade is wide enough for three.
		decadeW := panelW / (math.Log10(hi) - math.Log10(lo))
		for _, v := range logTicks(lo, hi) {
			x := xOf(v)
			s.line(x, plotTop, x, plotTop+plotH, colGrid, 1, "")
			if m := v / math.Pow(10, math.Floor(math.Log10(v)+1e-9)); decadeW >= 150 || math.Abs(m-1) < 1e-6 {
				s.text(x, plotTop+plotH+17, 11.5, colMuted, "middle", "", fmtTickMicros(v))
			}
		}
		s.line(px, plotTop+plotH, px+panelW, plotTop+plotH, colAxis, 1.2, "")
		s.line(px, plotTop, px, plotTop+plotH, colAxis, 1.2, "")
		s.text(px+panelW/2, plotTop+plotH+38, 12.5, colText, "middle", "", "decision latency (log scale)")
		// Lines.
		for _, l := range p.Lines {
			var pts strings.Builder
			for _, pt := range l.Points {
				fmt.Fprintf(&pts, "%.1f,%.1f ", xOf(pt[0]), yOf(pt[1]))
			}
			s.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2.4" stroke-linejoin="round" stroke-linecap="round"/>`+"\n",
				strings.TrimSpace(pts.String()), color[l.Name])
			p50 := quantile(l, 0.5)
			s.f(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="#ffffff" stroke-width="1.5"/>`+"\n", xOf(p50), yOf(0.5), color[l.Name])
		}
		// Percentiles under the panel.
		ty := plotTop + plotH + 62
		for _, l := range p.Lines {
			s.rect(px, ty-9.5, 10, 10, color[l.Name], 2)
			s.text(px+16, ty, 12, colText, "start", "", fmt.Sprintf("p50 %s · p99 %s", fmtMicros(quantile(l, 0.5)), fmtMicros(quantile(l, 0.99))))
			ty += 18
		}
	}
	if len(c.Panels) > 0 {
		s.f(`<text transform="translate(20 %.1f) rotate(-90)" font-size="12.5" fill="%s" text-anchor="middle">decisions at or below (cumulative %%)</text>`+"\n",
			plotTop+plotH/2, colText)
	}
	s.b.WriteString("</svg>\n")
	return []byte(s.b.String())
}

// niceDown and niceUp round v to a 1-2-5 value below or above it.
func niceDown(v float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2, 1} {
		if m*e <= v {
			return m * e
		}
	}
	return e
}

func niceUp(v float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}
