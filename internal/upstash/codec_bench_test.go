package upstash

import "testing"

// BenchmarkCodec measures the client's own work per call, without
// net/http: encoding a limiter-like EVALSHA into a pooled buffer and
// decoding a limiter-like reply.
func BenchmarkCodec(b *testing.B) {
	keys := []string{"bg:k:premium:0123456789abcdef", "bg:global"}
	args := []string{"120", "60000", "200", "1"}
	reply := []byte(`{"result":[1,200,199,0,500]}`)
	sha := NewScript("return 1").SHA1()
	b.ReportAllocs()
	for b.Loop() {
		buf := getBuffer()
		var err error
		if buf.b, err = appendScriptCall(buf.b[:0], "EVALSHA", sha, keys, nil, args); err != nil {
			b.Fatal(err)
		}
		putBuffer(buf)
		if _, _, _, err := parseSingle(reply, false); err != nil {
			b.Fatal(err)
		}
	}
}
