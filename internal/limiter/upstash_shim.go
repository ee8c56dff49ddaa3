package limiter

// TEMPORARY: until the client on encoding/json lands (Script.Run with an
// out parameter), this adapts the old Value-returning API.

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/bucketgate/bucketgate/internal/upstash"
)

func runScript(ctx context.Context, c *upstash.Client, out *[]json.RawMessage, keys []string, args ...any) error {
	v, err := decideScript.Run(ctx, c, keys, args...)
	if err != nil {
		return err
	}
	arr, err := v.Array()
	if err != nil {
		return err
	}
	res := make([]json.RawMessage, len(arr))
	for i, e := range arr {
		if n, err := e.Int(); err == nil && e.Type() == upstash.TypeInt {
			res[i] = json.RawMessage(strconv.FormatInt(n, 10))
			continue
		}
		s, _ := e.String()
		b, _ := json.Marshal(s)
		res[i] = b
	}
	*out = res
	return nil
}
