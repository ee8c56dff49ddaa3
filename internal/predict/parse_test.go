package predict

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseInputsAllocations(t *testing.T) {
	// The scanner's point: one allocation for the values, whatever the rows.
	body := rowsBody(MaxRowsPredict, row1)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := parseInputs(body, MaxRowsPredict, "POST /predict", ""); err != nil {
			t.Fatal(err.msg)
		}
	})
	if allocs != 1 {
		t.Errorf("parseInputs allocates %v times for %d rows, want 1", allocs, MaxRowsPredict)
	}
}

func TestParseInputsKeepsOnlyMaxRows(t *testing.T) {
	// Rows past the maximum are counted, not kept.
	vals, rows, err := parseInputs(rowsBody(3, row1), 3, "r", "")
	if err != nil {
		t.Fatal(err.msg)
	}
	if rows != 3 || len(vals) != 3*NumFeatures {
		t.Errorf("rows %d, %d values; want 3, %d", rows, len(vals), 3*NumFeatures)
	}
	_, rows, err = parseInputs(rowsBody(7, row1), 3, "r", "")
	if err == nil || err.reason != reasonTooManyRows || rows != 7 {
		t.Errorf("7 rows with max 3: rows %d, err %+v; want 7, too_many_rows", rows, err)
	}
}

// FuzzParseInputs checks the hand-written scanner against encoding/json: a
// body it accepts is valid JSON that encoding/json decodes to the same
// numbers, and a body encoding/json rejects as a syntax error is rejected
// with invalid_json.
func FuzzParseInputs(f *testing.F) {
	for _, s := range []string{
		`{"inputs": [[1,2,3,4]]}`, `{"inputs": [[0.5, -1.2, 2.0, 0.3], [-1.0, 0.4, -0.5, -0.8]]}`,
		`{"inputs": []}`, `{}`, `[]`, `{"inputs": [[1,2,3]]}`, `{"inputs": [[1e400,2,3,4]]}`,
		`{"\u0069nputs": [[1,2,3,4]]}`, `{"inputs": [["1",2,3,4]]}`, `{"inputs": [[01,2,3,4]]}`,
		` {"inputs" : [ [ -0 , 1E+2 , 3.5e-3 , 4 ] ] } `, `{"inputs": [[1,2,3,4]]}}`, `{"a\"b": 1}`,
		`{"inputs": [[1,2,3,4],]}`, `{"inputs": [[1,2,3,4] [5,6,7,8]]}`, "{\"inputs\": [[1,2,3,4]]}\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		const maxRows = 5
		vals, rows, rerr := parseInputs(body, maxRows, "r", "")
		var ref struct {
			Inputs [][]float64 `json:"inputs"`
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(body)))
		dec.DisallowUnknownFields()
		refErr := dec.Decode(&ref)
		if rerr == nil {
			if refErr != nil {
				t.Fatalf("accepted %q, which encoding/json rejects: %v", body, refErr)
			}
			if !json.Valid([]byte(body)) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			var flat []float64
			for _, r := range ref.Inputs {
				flat = append(flat, r...)
			}
			if diff := cmp.Diff(flat, vals); diff != "" || rows != len(ref.Inputs) || rows > maxRows || rows == 0 {
				t.Fatalf("%q: rows %d (encoding/json %d), values (-encoding/json +scanner):\n%s", body, rows, len(ref.Inputs), diff)
			}
			return
		}
		if rerr.msg == "" || rerr.status != 400 {
			t.Fatalf("%q: error %+v has no message or a wrong status", body, rerr)
		}
		if !json.Valid([]byte(body)) && rerr.reason != reasonInvalidJSON && rerr.reason != reasonEmptyBody {
			t.Fatalf("%q is not JSON, but the error is %s: %s", body, rerr.reason, rerr.msg)
		}
	})
}
