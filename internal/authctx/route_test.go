package authctx

import "testing"

func TestRoutePath(t *testing.T) {
	proxy := func(v string) map[string]string { return map[string]string{"proxy": v} }
	tests := []struct {
		name     string
		resource string
		params   map[string]string
		path     string
		want     string
	}{
		{name: "literal resource", resource: "/predict/batch", path: "/predict/batch", want: "/predict/batch"},
		{name: "literal resource, trailing slash in the path", resource: "/predict", path: "/predict/", want: "/predict"},
		{name: "custom domain base path is not part of it", resource: "/premium/predict", path: "/api/premium/predict", want: "/premium/predict"},
		{name: "greedy resource", resource: "/{proxy+}", params: proxy("premium/predict"), path: "/premium/predict", want: "/premium/predict"},
		{name: "greedy, trailing slash", resource: "/{proxy+}", params: proxy("predict/batch/"), path: "/predict/batch/", want: "/predict/batch"},
		{name: "greedy, doubled slash", resource: "/{proxy+}", params: proxy("/predict"), path: "//predict", want: "/predict"},
		{name: "greedy, letter case kept", resource: "/{proxy+}", params: proxy("Predict"), path: "/Predict", want: "/Predict"},
		{name: "greedy, encoded slashes arrive decoded", resource: "/{proxy+}", params: proxy("/premium/predict"), path: "/%2Fpremium%2Fpredict", want: "/premium/predict"},
		{name: "greedy, dot segments", resource: "/{proxy+}", params: proxy("x/../premium/./predict"), want: "/premium/predict"},
		{name: "greedy, dot segments above the root", resource: "/{proxy+}", params: proxy("../../premium/predict"), want: "/premium/predict"},
		{name: "nested greedy", resource: "/v1/{proxy+}", params: proxy("predict"), path: "/v1/predict", want: "/v1/predict"},
		{name: "parameter holding a slash", resource: "/items/{id}", params: map[string]string{"id": "a/b"}, want: "/items/a/b"},
		{name: "missing parameter: the path", resource: "/{proxy+}", path: "/premium/predict/", want: "/premium/predict"},
		{name: "root", resource: "/", path: "/", want: "/"},
		{name: "no resource: the path, decoded", path: "/predict%2Fbatch/", want: "/predict/batch"},
		{name: "no resource: undecodable path kept", path: "/predict%zz", want: "/predict%zz"},
		{name: "nothing at all", want: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RoutePath(tt.resource, tt.params, tt.path); got != tt.want {
				t.Errorf("RoutePath(%q, %v, %q) = %q, want %q", tt.resource, tt.params, tt.path, got, tt.want)
			}
		})
	}
}
