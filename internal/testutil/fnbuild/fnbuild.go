// Package fnbuild builds the project's two functions for this machine, once
// per test binary, the way cmd/local does (make build-<LogicalId>), for the
// test packages that run them as real processes.
package fnbuild

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bucketgate/bucketgate/internal/local/sam"
	"github.com/bucketgate/bucketgate/internal/local/startapi"
	"github.com/bucketgate/bucketgate/internal/testutil/redistest"
)

var (
	once  sync.Once
	dir   string
	built map[string]string
	err   error
)

// Binaries returns the executables of AuthorizerFunction and
// PredictFunction by logical ID, building them on first use from the
// template.yaml in repoRoot.
func Binaries(t testing.TB, repoRoot string) map[string]string {
	t.Helper()
	redistest.Need(t, "make") // builds run the template's makefile targets
	redistest.Need(t, "go")
	once.Do(func() {
		var tmpl *sam.Template
		if tmpl, err = sam.Load(filepath.Join(repoRoot, "template.yaml")); err != nil {
			return
		}
		var fns map[string]sam.Function
		if fns, err = tmpl.Functions(nil); err != nil {
			return
		}
		if dir, err = os.MkdirTemp("", "bucketgate-functions-"); err != nil {
			return
		}
		built, err = startapi.Build(context.Background(), repoRoot,
			[]sam.Function{fns["AuthorizerFunction"], fns["PredictFunction"]}, dir, io.Discard)
	})
	if err != nil {
		t.Fatalf("building the functions: %v", err)
	}
	return built
}

// Cleanup removes the build directory; call it from TestMain after m.Run.
func Cleanup() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}
