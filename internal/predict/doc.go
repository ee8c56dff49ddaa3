// Package predict is the mock ML service behind the rate limiter: a
// deterministic model (a fixed-weight logistic regression over NumFeatures
// inputs, see StandardModel and PremiumModel) and the API Gateway REST proxy
// handler that serves it.
//
// # Routes
//
//	GET  /model-info        model description, "input_features": NumFeatures; no authorizer, no rate limit
//	POST /predict           {"inputs": [[x0, x1, x2, x3], ...]}, at most MaxRowsPredict rows
//	POST /predict/batch     the same, at most MaxRowsBatch rows (the authorizer charges more for it)
//	POST /premium/predict   the same as /predict with PremiumModel; premium tier only
//
// A prediction answers 200 with
//
//	{"predictions": [{"score": 0.731059, "label": 1}, ...], "model": {"name": ..., "version": ...}, "tier": "premium"}
//
// where score is the churn probability (rounded to 6 decimals) and label is 1
// when score >= 0.5. "tier" is the caller's tier from the authorizer, or null
// when the request carries no authorizer context.
//
// Routes are found by the API Gateway resource (req.Resource), then by the
// request path, so the handler also works behind a {proxy+} resource. An
// unknown route is a 404, a known route with another method a 405 with an
// Allow header. Every answer is JSON with a "message" on errors; the handler
// never returns an error, because API Gateway turns a proxy function's error
// into a bare 502.
//
// # Validation
//
// The body is decoded from base64 first when isBase64Encoded is set (invalid
// base64 is a 400). A decoded body over MaxBodyBytes is a 413. The body must
// be a JSON object whose only field is "inputs" (unknown fields are rejected,
// so a misspelt field is reported rather than ignored), holding a non-empty
// array of rows, each of exactly NumFeatures numbers that fit in a float64.
// Every violation is a 400 whose message says what is wrong and where: the
// line and column of a syntax error, the row and column of a non-number, the
// expected number of features, the route's maximum number of rows.
//
// The Content-Type header is not checked: the body is parsed as JSON whatever
// it says, so `curl -d` (which sends application/x-www-form-urlencoded) works.
// The contract in DESIGN.md has no 415, and rejecting a correct JSON body over
// a header would only get in a client's way.
//
// # The authorizer's context
//
// Every route but /model-info sits behind the rate-limiting Lambda
// authorizer, whose verdict arrives in requestContext.authorizer (package
// authctx). Whenever that context is present, the six rate-limit headers it
// carries are echoed on the answer, whatever its status. When it is missing
// on a rate-limited route (a misconfigured gateway), the handler still
// answers, without those headers, and logs a warning; on /premium/predict it
// then answers 403, because without the authorizer nobody vouches for the
// caller's tier.
//
// The authorizer, not this function, decides who may call a premium route;
// the function enforces that decision. When the caller's tier may not use
// the route, the authorizer Allows the request with "forbidden": "true" in
// its context, charging nothing, and this handler answers 403. The 403 cannot
// come from the authorizer itself: API Gateway maps every authorizer Deny to
// one gateway response (ACCESS_DENIED, configured as the 429 in
// template.yaml), so a Deny cannot mean 429 for one caller and 403 for
// another.
//
// # Logs
//
// One JSON line per request (log/slog): requestId, method, route, status,
// tier, rows, a reason from a fixed vocabulary for non-200 answers, and the
// latency (latencyMs). Never a header (X-Api-Key reaches this function), a body, a path
// that matched no route, or an error message that may quote the body.
package predict
