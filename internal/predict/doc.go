// Package predict is the mock ML service behind the rate limiter: a
// deterministic model (a fixed-weight logistic regression over NumFeatures
// inputs, StandardModel and PremiumModel) and the API Gateway REST proxy
// handler that serves it. It exists to show what the limiter protects, so it
// validates like a real service and stays simple.
//
//	GET  /model-info        model description, "input_features": NumFeatures; no authorizer, no limit
//	POST /predict           {"inputs": [[x0, x1, x2, x3], ...]}, at most MaxRowsPredict rows
//	POST /predict/batch     the same, at most MaxRowsBatch rows (the authorizer charges more for it)
//	POST /premium/predict   the same with PremiumModel; premium tier only
//
// A prediction answers 200 {"predictions": [{"score": 0.731059, "label": 1},
// ...], "model": {...}, "tier": "premium"}. Routes are found by the API
// Gateway resource, then by the path (so it also works behind {proxy+});
// an unknown route is 404, a wrong method 405 with Allow. The handler never
// returns an error: API Gateway turns a proxy function's error into a bare
// 502.
//
// Validation: base64 bodies are decoded first; over MaxBodyBytes is 413; the
// body must be an object whose only field is "inputs", a non-empty array of
// rows of NumFeatures finite numbers. Every violation is a 400 saying what
// and where (line and column of a syntax error, row and column of a bad
// value). Content-Type is not checked, so `curl -d` works.
//
// The authorizer's verdict arrives in requestContext.authorizer (package
// authctx): its rate-limit headers are echoed on every answer, and a
// premium route called by another tier (context forbidden=true) is a 403 —
// from here, because API Gateway maps every authorizer Deny to one gateway
// response, the 429. Without that context a premium route is a 403 too
// (nobody vouches for the caller's tier).
//
// One JSON log line per request; never a header (X-Api-Key reaches this
// function), a body, or an unmatched path.
package predict
