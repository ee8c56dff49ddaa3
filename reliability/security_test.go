package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/bucketgate/bucketgate/internal/apikey"
	"github.com/bucketgate/bucketgate/internal/authorizer"
	"github.com/bucketgate/bucketgate/internal/limiter"
	"github.com/bucketgate/bucketgate/internal/testutil/dynamotest"
	"github.com/bucketgate/bucketgate/internal/testutil/fakeclock"
	"github.com/bucketgate/bucketgate/internal/testutil/faultproxy"
	"github.com/bucketgate/bucketgate/internal/testutil/upstashtest"
)

// TestSecretsNeverLogged drives the authorizer through every path that
// logs or fails — good, revoked, unknown and malformed keys, a corrupt key
// file, and Upstash answering 401, 500 or garbage whose bodies echo the
// token and a key — at LOG_LEVEL=debug, and checks that no API key and no
// Upstash token appears in any log line, EMF line, returned error or
// authorizer response.
func TestSecretsNeverLogged(t *testing.T) {
	env := upstashtest.StartRedis(t)
	px := faultproxy.Start(t, env.URL)
	keys := newKeySet(t)
	st := newStack(t, upstashEnv(px.URL, env.Token, keys, "LOG_LEVEL", "debug"))
	unknown, _, _, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"authenticated key": keys.Auth, "premium key": keys.Premium, "revoked key": keys.Revoked,
		"unknown key": unknown, "upstash token": env.Token,
	}
	// Malformed variants of a real key: a lookup must not echo them either.
	malformed := []string{keys.Auth + "x", keys.Auth[:len(keys.Auth)-1], strings.ToUpper(keys.Auth), keys.Auth + "\x00"}
	for i, m := range malformed {
		secrets[fmt.Sprintf("malformed key %d", i)] = m
	}
	var seen []string // every error and response value
	try := func(headers map[string]string) {
		res, err := st.h.Handle(context.Background(), authEvent(freshIP(), headers))
		if err != nil {
			seen = append(seen, err.Error())
		}
		seen = append(seen, res.PrincipalID)
		for k, v := range res.Context {
			seen = append(seen, k+"="+fmt.Sprint(v))
		}
	}
	allKeys := []string{keys.Auth, keys.Premium, keys.Revoked, unknown}
	allKeys = append(allKeys, malformed...)
	round := func() {
		for _, k := range allKeys {
			try(keyHeader(k))
			try(map[string]string{"x-api-key": " " + k + " "})
		}
		try(nil)
	}
	// A server (or proxy) echoing the token in its error message. (It
	// cannot echo an API key: none is ever sent to Upstash, checked below.)
	echo := fmt.Sprintf(`{"error":"WRONGPASS token %s rejected"}`, env.Token)
	for _, f := range []faultproxy.Fault{
		faultproxy.Pass(),
		faultproxy.StatusBody(http.StatusUnauthorized, []byte(echo)),
		faultproxy.StatusBody(http.StatusInternalServerError, []byte(echo)),
		faultproxy.StatusBody(http.StatusBadRequest, []byte(echo)),
		{Mode: faultproxy.ModeGarbage, Body: []byte("<html>" + env.Token + "</html>")},
	} {
		px.Set(f)
		round()
	}
	// A key file broken while running (holding a key in plain text, as a
	// bad hand edit might): lookups of keys not in the cache fail with a
	// backend error, which is logged.
	fresh, _, _, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	secrets["key looked up while the key file is broken"] = fresh
	allKeys = append(allKeys, fresh)
	if err := os.WriteFile(keys.Path, []byte(`{"version": 1, "keys": {"`+apikey.Hash(fresh)+`": "`+fresh+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	px.Set(faultproxy.Pass())
	round()

	// What reached Redis: bucket keys name key IDs and addresses only.
	redisKeys := env.Redis.Do(t, "KEYS", "*")
	if !strings.Contains(redisKeys, "bg:"+keys.Recs[keys.Auth].ID) {
		t.Errorf("no bucket for the authenticated key's ID among the Redis keys %q", redisKeys)
	}
	for _, k := range strings.Split(redisKeys, "\n") {
		for what, secret := range secrets {
			if strings.Contains(k, secret) {
				t.Errorf("the %s reached Redis in key %q", what, k)
			}
		}
	}

	logged := st.logs.String() + st.metrics.String()
	if !strings.Contains(logged, "key store failed") || !strings.Contains(logged, "HTTP 401") {
		t.Fatalf("the scenario did not reach the failure paths; log:\n%s", logged)
	}
	for what, secret := range secrets {
		if strings.Contains(logged, secret) {
			t.Errorf("the %s appears in the logs", what)
		}
		for _, s := range seen {
			if strings.Contains(s, secret) {
				t.Errorf("the %s appears in an error or response: %q", what, s)
			}
		}
	}
	t.Logf("MEASURED secrets: %d log bytes and %d errors/response values checked for %d secrets", len(logged), len(seen), len(secrets))
}

// TestConfigErrorsOmitSecrets: start-up errors name the variable and what
// is wrong, never the token or a URL that may carry one.
func TestConfigErrorsOmitSecrets(t *testing.T) {
	const token = "AXsecretTOKENvalue123"
	tests := []struct {
		name     string
		url, tok string
		wantVar  string
	}{
		{"token in the URL's user info", "https://default:" + token + "@eu1.upstash.io", token, "UPSTASH_REDIS_REST_URL"},
		{"token in the URL's query", "https://eu1.upstash.io/?_token=" + token, token, "UPSTASH_REDIS_REST_URL"},
		{"token with a space", "https://eu1.upstash.io", token + " x", "UPSTASH_REDIS_REST_TOKEN"},
		{"token with a newline", "https://eu1.upstash.io", token + "\nX-Evil: 1", "UPSTASH_REDIS_REST_TOKEN"},
		{"URL without token", "https://eu1.upstash.io", "", "UPSTASH_REDIS_REST_TOKEN"},
		{"not a URL", "::" + token, token, "UPSTASH_REDIS_REST_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"UPSTASH_REDIS_REST_URL": tt.url, "UPSTASH_REDIS_REST_TOKEN": tt.tok, "API_KEYS_FILE": "keys.json"}
			_, err := authorizer.LoadSettings(func(k string) string { return vars[k] })
			if err == nil {
				t.Fatal("LoadSettings accepted the configuration")
			}
			if !strings.Contains(err.Error(), tt.wantVar) {
				t.Errorf("error %q does not name %s", err, tt.wantVar)
			}
			if strings.Contains(err.Error(), token) || (tt.url != "" && strings.Contains(err.Error(), tt.url)) {
				t.Errorf("error %q contains the token or the URL", err)
			}
		})
	}
}

// TestClientHeadersCannotSelectBucket: once a caller's bucket is empty, no
// client-controlled header moves its requests to another bucket —
// forwarding headers, X-Api-Key tricks, oversized or look-alike headers —
// and IPv6 callers cannot escape by rotating addresses inside their /64.
func TestClientHeadersCannotSelectBucket(t *testing.T) {
	env := upstashtest.Start(t)
	keys := newKeySet(t)
	st := newStack(t, upstashEnv(env.URL, env.Token, keys))
	other := "203.0.113.250" // a caller with a full bucket
	exhaust := func(ip string, headers map[string]string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if d := st.decide(authEvent(ip, headers)); d.Effect != "Allow" {
				t.Fatalf("exhausting: request %d of %d: %+v", i+1, n, d)
			}
		}
		if d := st.decide(authEvent(ip, headers)); d.Effect != "Deny" {
			t.Fatalf("after %d requests the bucket is not empty: %+v", n, d)
		}
	}
	const ip = "198.51.100.77"
	exhaust(ip, nil, anonBurst)
	exhaust("2001:db8:1:2::1", nil, anonBurst)
	exhaust(freshIP(), keyHeader(keys.Auth), 50) // authenticated burst
	authID := keys.Recs[keys.Auth].ID

	big := strings.Repeat("A", 64<<10)
	tests := []struct {
		name       string
		sourceIP   string
		headers    map[string]string
		multi      map[string][]string
		wantEffect string // "" means Unauthorized
		wantCaller string
	}{
		{"X-Forwarded-For", ip, map[string]string{"X-Forwarded-For": other}, nil, "Deny", "ip:" + ip},
		{"X-Forwarded-For chain", ip, map[string]string{"X-Forwarded-For": other + ", " + other}, nil, "Deny", "ip:" + ip},
		{"X-Real-IP", ip, map[string]string{"X-Real-Ip": other, "X-Real-IP": other}, nil, "Deny", "ip:" + ip},
		{"Forwarded", ip, map[string]string{"Forwarded": "for=" + other}, nil, "Deny", "ip:" + ip},
		{"True-Client-IP and CF-Connecting-IP", ip, map[string]string{"True-Client-Ip": other, "Cf-Connecting-Ip": other, "X-Client-Ip": other}, nil, "Deny", "ip:" + ip},
		{"multi-value X-Forwarded-For", ip, nil, map[string][]string{"X-Forwarded-For": {other, other}}, "Deny", "ip:" + ip},
		{"oversized unrelated header", ip, map[string]string{"X-Padding": big}, nil, "Deny", "ip:" + ip},
		{"look-alike header name (Cyrillic e)", ip, map[string]string{"X-Api-K\u0435y": keys.Premium}, nil, "Deny", "ip:" + ip},
		{"IPv6 address rotated inside its /64", "2001:db8:1:2:ffff:ffff:ffff:fffe", nil, nil, "Deny", "ip:2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6 form of the same address", "::ffff:" + ip, nil, nil, "Deny", "ip:" + ip},
		{"key header in lower case", other, map[string]string{"x-api-key": keys.Auth}, nil, "Deny", authID},
		{"key header in upper case", other, map[string]string{"X-API-KEY": keys.Auth}, nil, "Deny", authID},
		{"key with surrounding spaces", other, map[string]string{"X-Api-Key": "  " + keys.Auth + "\t"}, nil, "Deny", authID},
		{"key header given twice, same key", other, map[string]string{"X-Api-Key": keys.Auth, "x-api-key": keys.Auth}, nil, "Deny", authID},
		{"key header given twice, another key", other, map[string]string{"X-Api-Key": keys.Auth, "x-api-key": keys.Premium}, nil, "", ""},
		{"multi-value key header, another key", other, nil, map[string][]string{"X-Api-Key": {keys.Auth, keys.Premium}}, "", ""},
		{"key plus a forwarded address", other, map[string]string{"X-Api-Key": keys.Auth, "X-Forwarded-For": freshIP()}, nil, "Deny", authID},
		{"empty key header", ip, map[string]string{"X-Api-Key": ""}, nil, "", ""},
		{"blank key header", ip, map[string]string{"X-Api-Key": "   "}, nil, "", ""},
		{"oversized key header", ip, map[string]string{"X-Api-Key": big}, nil, "", ""},
		{"revoked key", ip, keyHeader(keys.Revoked), nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := authEvent(tt.sourceIP, tt.headers)
			ev.MultiValueHeaders = tt.multi
			d := st.decide(ev)
			if tt.wantEffect == "" {
				if !errors.Is(d.Err, authorizer.ErrUnauthorized) {
					t.Errorf("got %+v, want Unauthorized", d)
				}
				return
			}
			if d.Err != nil || d.Effect != tt.wantEffect || d.Caller != tt.wantCaller {
				t.Errorf("got effect %q caller %q (err %v), want %q for %q", d.Effect, d.Caller, d.Err, tt.wantEffect, tt.wantCaller)
			}
		})
	}
	// The other caller's own bucket was never charged by any of the above.
	if d := st.decide(authEvent(other, nil)); d.Effect != "Allow" || d.Caller != "ip:"+other {
		t.Errorf("the spoofed address's own bucket: %+v, want Allow", d)
	}
	// A neighbouring /64 is another caller.
	if d := st.decide(authEvent("2001:db8:1:3::1", nil)); d.Effect != "Allow" {
		t.Errorf("another /64: %+v, want Allow", d)
	}
}

// TestHTTPSpoofedForwardedFor: through start-api, the anonymous bucket is
// the TCP peer's; X-Forwarded-For and friends change nothing.
func TestHTTPSpoofedForwardedFor(t *testing.T) {
	env := upstashtest.Start(t)
	keys := newKeySet(t)
	api := startLocalAPI(t, upstashEnv(env.URL, env.Token, keys), 1)
	c := clientFrom(freshLoopback())
	for i := 0; i < anonBurst; i++ {
		if r := api.predict(c, nil); r.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	spoof := freshLoopback()
	for _, h := range []map[string]string{
		{"X-Forwarded-For": spoof},
		{"X-Real-Ip": spoof},
		{"Forwarded": "for=" + spoof},
		{"X-Forwarded-For": spoof, "X-Api-Key-": keys.Premium},
	} {
		if r := api.predict(c, h); r.Status != http.StatusTooManyRequests {
			t.Errorf("with %v: %d %s, want 429", h, r.Status, r.Body)
		}
	}
	if r := api.predict(clientFrom(spoof), nil); r.Status != http.StatusOK {
		t.Errorf("the spoofed address itself: %d, want 200 (its bucket untouched)", r.Status)
	}
}

// tamperedDynamo is a DynamoDB whose GetItem returns a record stored under
// a hash altered by tamper: what a lookup would meet if the read returned
// another key's item.
type tamperedDynamo struct {
	apikey.DynamoAPI
	tamper func(string) string
}

func (d tamperedDynamo) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	h := in.Key[apikey.AttrKeyHash].(*types.AttributeValueMemberS).Value
	return &dynamodb.GetItemOutput{Item: map[string]types.AttributeValue{
		apikey.AttrKeyHash: &types.AttributeValueMemberS{Value: d.tamper(h)},
		apikey.AttrID:      &types.AttributeValueMemberS{Value: "key_aaaaaaaaaaaaaaaa"},
		apikey.AttrTier:    &types.AttributeValueMemberS{Value: "premium"},
		apikey.AttrRevoked: &types.AttributeValueMemberBOOL{Value: false},
	}}, nil
}

func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return string(b)
}

// TestKeyComparisonIsConstantTime: the stored hash is compared with the
// computed one in constant time (crypto/subtle) and must match exactly. A
// structural check of package apikey's source plus a behavioural one: a
// record whose hash differs in its first or in its last byte is refused
// alike. (Timing is not measured: such a test would flake.)
func TestKeyComparisonIsConstantTime(t *testing.T) {
	t.Run("source", func(t *testing.T) {
		fset := token.NewFileSet()
		files, err := filepath.Glob("../internal/apikey/*.go")
		if err != nil || len(files) == 0 {
			t.Fatalf("apikey sources: %v", err)
		}
		constantTimeIn := map[string]bool{}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range f.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					switch n := n.(type) {
					case *ast.CallExpr:
						if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "ConstantTimeCompare" {
							if x, ok := sel.X.(*ast.Ident); ok && x.Name == "subtle" {
								constantTimeIn[fn.Name.Name] = true
							}
						}
						if sel, ok := n.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Equal" || sel.Sel.Name == "EqualFold" || sel.Sel.Name == "Compare") {
							for _, a := range n.Args {
								if mentionsHash(a) {
									t.Errorf("%s: %s compares a hash with %s", fset.Position(n.Pos()), fn.Name.Name, sel.Sel.Name)
								}
							}
						}
					case *ast.BinaryExpr:
						if (n.Op == token.EQL || n.Op == token.NEQ) && (isHashSelector(n.X) || isHashSelector(n.Y)) && !isEmptyString(n.X) && !isEmptyString(n.Y) {
							t.Errorf("%s: %s compares a record's Hash with %s", fset.Position(n.Pos()), fn.Name.Name, n.Op)
						}
					}
					return true
				})
			}
		}
		for _, fn := range []string{"lookup", "ValidFormat"} {
			if !constantTimeIn[fn] {
				t.Errorf("apikey.%s does not call subtle.ConstantTimeCompare", fn)
			}
		}
	})

	key, hash, _, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tamper  func(string) string
		wantErr error
	}{
		{"stored hash matches", func(h string) string { return h }, nil},
		{"differs in the first byte", func(h string) string { return flip(h, 0) }, apikey.ErrNotFound},
		{"differs in the last byte", func(h string) string { return flip(h, len(h)-1) }, apikey.ErrNotFound},
		{"a prefix of the hash", func(h string) string { return h[:len(h)-1] }, apikey.ErrNotFound},
		{"the hash in upper case", strings.ToUpper, apikey.ErrNotFound},
		{"empty", func(string) string { return "" }, apikey.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds, err := apikey.NewDynamoStore(apikey.DynamoConfig{Client: tamperedDynamo{tamper: tt.tamper}, Table: "t"})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := ds.Lookup(context.Background(), key)
			if !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && err == nil) {
				t.Fatalf("Lookup: %v, want %v", err, tt.wantErr)
			}
			if err == nil && rec.Hash != hash {
				t.Errorf("record hash %q, want %q", rec.Hash, hash)
			}
		})
	}
}

func isHashSelector(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Hash"
}

func mentionsHash(e ast.Expr) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Hash" {
			found = true
		}
		return !found
	})
	return found
}

func isEmptyString(e ast.Expr) bool {
	lit, ok := e.(*ast.BasicLit)
	return ok && lit.Kind == token.STRING && (lit.Value == `""` || lit.Value == "``")
}

// TestRevokedKeyStopsWithinTTL: a key revoked in the store keeps working in
// a container that has it cached for at most apikey.DefaultHitTTL (60 s,
// the documented revocation delay) and is refused after that, for the file
// store and for DynamoDB. While the store is down, a cached record may be
// served stale for up to DefaultMaxStale: a revocation made just before an
// outage then takes effect when the store answers again (documented
// trade-off; checked here too).
func TestRevokedKeyStopsWithinTTL(t *testing.T) {
	type store struct {
		name   string
		lookup apikey.Store
		admin  apikey.Admin
		down   func(bool) // make the backend fail (true) or work
	}
	fileStore := func(t *testing.T) store {
		path := filepath.Join(t.TempDir(), "keys.json")
		reader, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		// Revocations come from another FileStore on the same file, as
		// from cmd/apikeys in another process.
		admin, err := apikey.NewFileStore(apikey.FileConfig{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		var saved []byte
		return store{"file", reader, admin, func(down bool) {
			if down {
				saved, _ = os.ReadFile(path)
				_ = os.WriteFile(path, []byte("{broken"), 0o600)
			} else {
				_ = os.WriteFile(path, saved, 0o600)
			}
		}}
	}
	dynamoStore := func(t *testing.T) store {
		dk := newDynamoKeys(t, dynamotest.Start(t))
		return store{"dynamodb", dk.store, dk.store, func(down bool) {
			if down {
				dk.px.Set(faultproxy.Reset())
			} else {
				dk.px.Set(faultproxy.Pass())
			}
		}}
	}
	for _, mk := range []func(*testing.T) store{fileStore, dynamoStore} {
		s := mk(t)
		t.Run(s.name, func(t *testing.T) {
			clock := fakeclock.New(time.Now())
			lim, err := limiter.New(limiter.Config{})
			if err != nil {
				t.Fatal(err)
			}
			h, err := authorizer.New(authorizer.Config{
				Keys:    apikey.NewCache(s.lookup, apikey.CacheConfig{Now: clock.Now}), // the production defaults
				Limiter: lim,
				Tiers:   defaultTiers(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			st := &stack{h: h}
			issue := func() (string, apikey.Record) {
				key, rec, err := apikey.New("revocation", "authenticated", time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if err := s.admin.Create(context.Background(), rec); err != nil {
					t.Fatal(err)
				}
				return key, rec
			}
			allowed := func(key string) bool {
				d := st.decide(authEvent(freshIP(), keyHeader(key)))
				if d.Err != nil && !errors.Is(d.Err, authorizer.ErrUnauthorized) {
					t.Fatalf("unexpected error: %v", d.Err)
				}
				return d.Effect == "Allow"
			}

			key, rec := issue()
			if !allowed(key) {
				t.Fatal("a new key is refused")
			}
			if err := s.admin.Revoke(context.Background(), rec.ID); err != nil {
				t.Fatal(err)
			}
			steps := []struct {
				name    string
				advance time.Duration
				want    bool
			}{
				{"just revoked: still cached", time.Second, true},
				{"just under the TTL", apikey.DefaultHitTTL - 2*time.Second, true},
				{"TTL passed: refused", 2 * time.Second, false},
				{"and stays refused", apikey.DefaultMissTTL + time.Second, false},
			}
			for _, step := range steps {
				clock.Advance(step.advance)
				if got := allowed(key); got != step.want {
					t.Errorf("%s: allowed = %v, want %v", step.name, got, step.want)
				}
			}

			// Revoked just before an outage: served stale while the store
			// is down, refused once it answers.
			key2, rec2 := issue()
			if !allowed(key2) {
				t.Fatal("a new key is refused")
			}
			if err := s.admin.Revoke(context.Background(), rec2.ID); err != nil {
				t.Fatal(err)
			}
			s.down(true)
			clock.Advance(apikey.DefaultHitTTL + time.Second)
			if !allowed(key2) {
				t.Errorf("store down: a cached key (revoked meanwhile) is refused, want served stale")
			}
			s.down(false)
			clock.Advance(apikey.DefaultErrorBackoff + time.Second)
			if allowed(key2) {
				t.Errorf("store back: the revoked key still works")
			}
		})
	}
}
