package bucketgate_test

import (
	"os/exec"
	"strings"
	"testing"
)

// productPackages are what ships to AWS or runs against production: the two
// functions, the admin commands and the packages they are built from.
var productPackages = []string{
	"./functions/...",
	"./cmd/apikeys",
	"./cmd/limits",
}

// TestProductDoesNotImportLocalTooling checks that nothing deployed depends
// on internal/local/... (the template parser, the API Gateway and Lambda
// emulation, start-api, the Upstash-compatible server): those serve local
// development only.
func TestProductDoesNotImportLocalTooling(t *testing.T) {
	for _, pkg := range productPackages {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/bucketgate/bucketgate/internal/local/") ||
				strings.HasPrefix(dep, "github.com/bucketgate/bucketgate/internal/testutil/") {
				t.Errorf("%s depends on %s, which serves local development and tests only", pkg, dep)
			}
		}
	}
}
