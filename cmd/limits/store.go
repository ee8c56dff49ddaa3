package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/upstash"
)

// maxAttempts bounds the read-modify-write retries of one command.
const maxAttempts = 8

// store reads and writes the live limit changes in Upstash.
type store struct {
	client      *upstash.Client
	prefix      string
	beforeWrite func() // see cli.beforeWrite
}

func (st *store) settingsKey() string { return limiter.SettingsKey(st.prefix) }
func (st *store) warmupKey() string   { return limiter.WarmupKey(st.prefix) }

// get returns the value of key, "" when it is absent.
func (st *store) get(ctx context.Context, key string) (string, error) {
	var v *string
	if err := st.client.Do(ctx, &v, "GET", key); err != nil {
		return "", fmt.Errorf("reading the limits: %w", err)
	}
	if v == nil {
		return "", nil
	}
	return *v, nil
}

// casScript replaces KEYS[1] only if it still holds what the caller read:
// a compare-and-set in one atomic step, which a GET followed by SET ... GET
// is not (with three writers at once, one may build on a value that a
// second writer's SET already clobbered, and a change is lost).
//
// ARGV[1] the value read ("" = absent); ARGV[2] the new value ("" =
// delete the key); ARGV[3] the key's TTL in ms ("0" = none). Reply:
// {1, old} when written, {0, current} when the key had changed.
var casScript = upstash.NewScript(`local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return {0, cur} end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
elseif ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return {1, cur}`)

// update applies change to the stored changes and writes the result,
// dropping changes that no longer do anything. The key expires when the
// last change stops mattering (never, if one applies until cleared) and is
// deleted when none is left. When another writer changed the key between
// the read and the write, change is applied again to what that writer
// stored, up to maxAttempts times. It returns what was written.
func (st *store) update(ctx context.Context, now time.Time, change func([]limiter.Scale) []limiter.Scale) ([]limiter.Scale, error) {
	key := st.settingsKey()
	cur, err := st.get(ctx, key)
	if err != nil {
		return nil, err
	}
	for range maxAttempts {
		next := live(change(limiter.ParseScales(cur)), now)
		val := ""
		if len(next) > 0 {
			val = limiter.FormatScales(next)
		}
		if val == cur {
			return next, nil // nothing to change
		}
		if st.beforeWrite != nil {
			st.beforeWrite()
		}
		var reply []json.RawMessage
		if err := casScript.Run(ctx, st.client, &reply, []string{key}, cur, val, ttlMs(next, now)); err != nil {
			return nil, fmt.Errorf("writing the limits: %w", err)
		}
		ok, seen, err := parseCAS(reply)
		if err != nil {
			return nil, err
		}
		if ok {
			return next, nil
		}
		cur = seen // someone else wrote: apply the change to theirs
	}
	return nil, fmt.Errorf("the limits changed %d times while this command ran; nothing was written, try again", maxAttempts)
}

// live returns the changes that still change something at now.
func live(scales []limiter.Scale, now time.Time) []limiter.Scale {
	out := scales[:0:0]
	for _, s := range scales {
		if o := s.Over(); o.IsZero() || o.After(now) {
			out = append(out, s)
		}
	}
	return out
}

// ttlMs is the key's TTL for scales: until the last one stops mattering;
// 0 (none) when one applies until cleared, or when there are none.
func ttlMs(scales []limiter.Scale, now time.Time) int64 {
	var last time.Time
	for _, s := range scales {
		o := s.Over()
		if o.IsZero() {
			return 0
		}
		if o.After(last) {
			last = o
		}
	}
	if last.IsZero() {
		return 0
	}
	return max(last.Sub(now).Milliseconds(), 1)
}

// parseCAS reads casScript's reply.
func parseCAS(reply []json.RawMessage) (ok bool, value string, err error) {
	if len(reply) != 2 {
		return false, "", fmt.Errorf("writing the limits: unexpected reply of %d elements", len(reply))
	}
	flag, err := strconv.Atoi(string(reply[0]))
	if err != nil || (flag != 0 && flag != 1) {
		return false, "", fmt.Errorf("writing the limits: unexpected reply flag %.20q", reply[0])
	}
	if err := json.Unmarshal(reply[1], &value); err != nil {
		return false, "", fmt.Errorf("writing the limits: unexpected reply value: %w", err)
	}
	return flag == 1, value, nil
}
