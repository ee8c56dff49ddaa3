package predict

import (
	"math"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseInputsKeepsOnlyMaxRows(t *testing.T) {
	// Rows past the maximum are counted, not kept.
	tests := []struct {
		name     string
		body     string
		wantRows int
		wantVals int
		reason   string // "" for success
	}{
		{name: "exactly the maximum", body: rowsBody(3, row1), wantRows: 3, wantVals: 3 * NumFeatures},
		{name: "over the maximum", body: rowsBody(7, row1), wantRows: 7, reason: reasonTooManyRows},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, rows, rerr := parseInputs(tt.body, 3, "r", "")
			gotReason := ""
			if rerr != nil {
				gotReason = rerr.reason
			}
			if rows != tt.wantRows || len(vals) != tt.wantVals || gotReason != tt.reason {
				t.Errorf("rows %d, %d values, reason %q; want %d, %d, %q", rows, len(vals), gotReason, tt.wantRows, tt.wantVals, tt.reason)
			}
		})
	}
}

func TestParseInputsValues(t *testing.T) {
	vals, rows, rerr := parseInputs(`{"inputs": [[0.5, -1.2, 2, 3e2], [-0, 1E-1, 0.25, -7]]}`, 5, "r", "")
	if rerr != nil {
		t.Fatal(rerr.msg)
	}
	want := []float64{0.5, -1.2, 2, 300, 0, 0.1, 0.25, -7}
	if diff := cmp.Diff(want, vals); diff != "" || rows != 2 {
		t.Errorf("rows %d, want 2; values (-want +got):\n%s", rows, diff)
	}
}

// FuzzParseInputs checks that no body makes the parser panic, that every
// error is a 400 with a message and a reason from the vocabulary, and that
// every accepted body yields between 1 and maxRows rows of NumFeatures
// finite numbers.
func FuzzParseInputs(f *testing.F) {
	for _, s := range []string{
		`{"inputs": [[1,2,3,4]]}`, `{"inputs": [[0.5, -1.2, 2.0, 0.3], [-1.0, 0.4, -0.5, -0.8]]}`,
		`{"inputs": []}`, `{}`, `[]`, `{"inputs": [[1,2,3]]}`, `{"inputs": [[1e400,2,3,4]]}`,
		`{"\u0069nputs": [[1,2,3,4]]}`, `{"inputs": [["1",2,3,4]]}`, `{"inputs": [[01,2,3,4]]}`,
		` {"inputs" : [ [ -0 , 1E+2 , 3.5e-3 , 4 ] ] } `, `{"inputs": [[1,2,3,4]]}}`, `{"a\"b": 1}`,
		`{"Inputs": [[1,2,3,4]]}`, `{"inputs": [[1,2,3,4]], "inputs": []}`, "{\"inputs\": [[1,2,3,4]]}\x00",
		rowsBody(6, row1),
	} {
		f.Add(s)
	}
	reasons := map[string]bool{
		reasonEmptyBody: true, reasonInvalidJSON: true, reasonWrongShape: true, reasonUnknownField: true,
		reasonNotANumber: true, reasonNotFinite: true, reasonFeatureCount: true, reasonEmptyInputs: true,
		reasonTooManyRows: true,
	}
	f.Fuzz(func(t *testing.T, body string) {
		const maxRows = 5
		vals, rows, rerr := parseInputs(body, maxRows, "r", "")
		if rerr != nil {
			if rerr.msg == "" || rerr.status != http.StatusBadRequest || !reasons[rerr.reason] {
				t.Fatalf("%q: error %+v: want a 400 with a message and a known reason", body, rerr)
			}
			if (rerr.reason == reasonTooManyRows) != (rows > maxRows) {
				t.Fatalf("%q: reason %s with %d rows (max %d)", body, rerr.reason, rows, maxRows)
			}
			return
		}
		if rows < 1 || rows > maxRows || len(vals) != rows*NumFeatures {
			t.Fatalf("%q accepted with %d rows and %d values; want 1..%d rows of %d", body, rows, len(vals), maxRows, NumFeatures)
		}
		for i, v := range vals {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("%q: value %d is %v, want a finite number", body, i, v)
			}
		}
	})
}
