package limiter

import (
	"sort"
	"strconv"
	"strings"
)

// RouteCosts says how many tokens a request to a route costs. Routes are
// matched exactly: the method case-insensitively, the path byte for byte
// (no prefixes, no trailing-slash folding, no patterns). Unlisted routes
// cost 1.
//
// The zero value has no routes (everything costs 1). A RouteCosts is
// read-only after ParseRouteCosts and safe for concurrent use.
type RouteCosts struct {
	costs map[route]int64
}

type route struct{ method, path string }

// ParseRouteCosts parses ROUTE_COSTS: comma-separated "METHOD PATH=N" items,
// e.g. "POST /predict/batch=5". METHOD is an HTTP method token (stored upper
// case); PATH starts with '/' and holds no spaces; N is a whole number of
// tokens from 1 to MaxCost. Spaces around items and parts are ignored, as
// are empty items; an empty string gives no routes. A route given twice is an
// error. Errors quote the offending item; the caller prefixes the variable's
// name.
func ParseRouteCosts(s string) (RouteCosts, error) {
	rc := RouteCosts{costs: make(map[route]int64)}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		i := strings.LastIndexByte(item, '=')
		if i < 0 {
			return RouteCosts{}, invalid("%q: want METHOD PATH=N, e.g. POST /predict/batch=5", item)
		}
		fields := strings.Fields(item[:i])
		if len(fields) != 2 {
			return RouteCosts{}, invalid("%q: want METHOD PATH=N, e.g. POST /predict/batch=5", item)
		}
		method, path := strings.ToUpper(fields[0]), fields[1]
		if !isToken(method) {
			return RouteCosts{}, invalid("%q: method %q is not an HTTP method", item, fields[0])
		}
		if !strings.HasPrefix(path, "/") {
			return RouteCosts{}, invalid("%q: path %q must start with '/'", item, path)
		}
		n, err := parseCount("cost", item[i+1:])
		if err != nil {
			return RouteCosts{}, invalidf(item, err)
		}
		if n > MaxCost {
			return RouteCosts{}, invalid("%q: cost %d exceeds the maximum of %d", item, n, MaxCost)
		}
		r := route{method, path}
		if _, dup := rc.costs[r]; dup {
			return RouteCosts{}, invalid("%q: route %s %s is given twice", item, method, path)
		}
		rc.costs[r] = n
	}
	return rc, nil
}

// invalidf prefixes err's text with the quoted item, keeping ErrInvalidConfig.
func invalidf(item string, err error) error {
	return invalid("%q: %s", item, err.Error())
}

// isToken reports whether s is a non-empty run of upper-case letters, the
// shape of every registered HTTP method.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// Cost returns the tokens a request with this method and path costs: the
// listed cost, or 1 for an unlisted route. It does not allocate when method
// is already upper case (as API Gateway sends it).
func (rc RouteCosts) Cost(method, path string) int64 {
	if len(rc.costs) == 0 {
		return 1
	}
	if !isToken(method) {
		method = strings.ToUpper(method)
	}
	if n, ok := rc.costs[route{method, path}]; ok {
		return n
	}
	return 1
}

// Max returns the highest listed cost, or 1 when no route is listed. A tier
// whose burst is below Max can never pass that route.
func (rc RouteCosts) Max() int64 {
	m := int64(1)
	for _, n := range rc.costs {
		m = max(m, n)
	}
	return m
}

// Len returns the number of listed routes.
func (rc RouteCosts) Len() int { return len(rc.costs) }

// String renders the costs as ParseRouteCosts reads them, sorted by path then
// method.
func (rc RouteCosts) String() string {
	routes := make([]route, 0, len(rc.costs))
	for r := range rc.costs {
		routes = append(routes, r)
	}
	sort.Slice(routes, func(i, j int) bool {
		if routes[i].path != routes[j].path {
			return routes[i].path < routes[j].path
		}
		return routes[i].method < routes[j].method
	})
	var b strings.Builder
	for i, r := range routes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.method + " " + r.path + "=" + strconv.FormatInt(rc.costs[r], 10))
	}
	return b.String()
}

// RouteLimits are extra per-caller buckets for some routes (ROUTE_LIMITS),
// optionally for one tier only. Routes match as in RouteCosts. The zero
// value has none. Read-only after ParseRouteLimits; safe for concurrent use.
type RouteLimits struct {
	limits map[routeTier]Limit
}

type routeTier struct {
	route
	tier string // "" for every tier
}

// ParseRouteLimits parses ROUTE_LIMITS: comma-separated
// "METHOD PATH[@TIER]=RATE/PERIOD[:burst=N]" items, e.g.
// "POST /predict=10/minute,POST /predict@premium=100/minute:burst=20". An
// entry with @TIER applies to that tier only and wins over one without. An
// empty string gives none. Errors quote the offending item; the caller
// prefixes the variable's name.
func ParseRouteLimits(s string) (RouteLimits, error) {
	rl := RouteLimits{limits: make(map[routeTier]Limit)}
	const want = "want METHOD PATH[@TIER]=RATE/PERIOD[:burst=N], e.g. POST /predict=10/minute"
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		head, spec, ok := strings.Cut(item, "=")
		fields := strings.Fields(head)
		if !ok || len(fields) != 2 {
			return RouteLimits{}, invalid("%q: %s", item, want)
		}
		method := strings.ToUpper(fields[0])
		path, tier, hasTier := strings.Cut(fields[1], "@")
		switch {
		case !isToken(method):
			return RouteLimits{}, invalid("%q: method %q is not an HTTP method", item, fields[0])
		case !strings.HasPrefix(path, "/"):
			return RouteLimits{}, invalid("%q: path %q must start with '/'", item, path)
		}
		if hasTier {
			if err := checkName("tier", tier); err != nil {
				return RouteLimits{}, invalidf(item, err)
			}
		}
		l, err := ParseLimit(spec)
		if err != nil {
			return RouteLimits{}, invalidf(item, err)
		}
		k := routeTier{route{method, path}, tier}
		if _, dup := rl.limits[k]; dup {
			return RouteLimits{}, invalid("%q: route %s %s is given twice", item, method, fields[1])
		}
		rl.limits[k] = l
	}
	return rl, nil
}

// Lookup returns the limit for a request to method and path by a caller of
// tier: the tier's own entry, else the entry for every tier.
func (rl RouteLimits) Lookup(method, path, tier string) (Limit, bool) {
	if len(rl.limits) == 0 {
		return Limit{}, false
	}
	if !isToken(method) {
		method = strings.ToUpper(method)
	}
	r := route{method, path}
	if l, ok := rl.limits[routeTier{r, tier}]; ok {
		return l, true
	}
	l, ok := rl.limits[routeTier{r, ""}]
	return l, ok
}

// Each calls fn for every entry (tier "" for every tier), in no order.
func (rl RouteLimits) Each(fn func(method, path, tier string, l Limit)) {
	for k, l := range rl.limits {
		fn(k.method, k.path, k.tier, l)
	}
}
