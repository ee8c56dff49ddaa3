// Package reliability holds bucketgate's cross-package reliability and
// security scenarios (issue 8). It has no code of its own: everything is in
// its tests, which build the real authorizer (internal/authorizer with the
// real Upstash client, limiter and key stores) against real servers —
// redis-server behind internal/local/upstashlocal, dynalite for DynamoDB, and
// cmd/local's API Gateway emulator running the function binaries as
// processes — with internal/testutil/faultproxy in between to inject faults.
//
// Scenarios and their measured outcomes are tabulated in
// docs/RELIABILITY.md. Run them with
//
//	BUCKETGATE_INTEGRATION=1 go test -race -count=1 -v ./reliability/
//
// Lines starting with "MEASURED" in the verbose output are the numbers that
// go into that document.
package reliability
