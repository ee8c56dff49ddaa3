package startapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/bucketgate/bucketgate/internal/local/sam"
)

// ErrBuild: building a function failed; the error carries the build output.
var ErrBuild = errors.New("build failed")

// defaultBuildDir is where builds go when no directory is given: a
// directory per template under the user's cache directory.
func defaultBuildDir(templatePath string) (string, error) {
	abs, err := filepath.Abs(templatePath)
	if err != nil {
		return "", err
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(base, "bucketgate-local", hex.EncodeToString(sum[:6])), nil
}

// Build builds each function for the host, the way `sam build` would for
// Lambda, into dir/<LogicalID>/, and returns the executable per logical ID.
// templateDir anchors relative CodeUri paths. Functions build in parallel.
//
// Build methods:
//   - makefile: `make build-<LogicalID> ARTIFACTS_DIR=<out> GOOS=<host>
//     GOARCH=<host>` in the CodeUri directory (SAM runs the same target with
//     ARTIFACTS_DIR set; overriding GOOS/GOARCH builds for this machine
//     instead of Lambda's linux/arm64).
//   - go1.x: `go build -tags lambda.norpc -o <out>/bootstrap .` in CodeUri.
//   - none: an executable named after the Handler (normally "bootstrap") must
//     already be in CodeUri; it is used as is.
//
// The build's combined output goes to logs (nil = discard) and is included
// in the error, which wraps ErrBuild, when a build fails.
func Build(ctx context.Context, templateDir string, fns []sam.Function, dir string, logs io.Writer) (map[string]string, error) {
	lw := newLockedWriter(logs)
	type result struct {
		id, exe string
		err     error
	}
	results := make(chan result, len(fns))
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exe, err := buildOne(ctx, templateDir, f, filepath.Join(dir, f.LogicalID), lw)
			results <- result{f.LogicalID, exe, err}
		}()
	}
	wg.Wait()
	close(results)
	out := map[string]string{}
	var errs []error
	for r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		out[r.id] = r.exe
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func buildOne(ctx context.Context, templateDir string, f sam.Function, out string, logs *lockedWriter) (string, error) {
	if strings.HasPrefix(f.CodeURI, "s3://") {
		return "", fmt.Errorf("%w: %s: CodeUri %s is in S3; only local code can run", ErrBuild, f.LogicalID, f.CodeURI)
	}
	codeDir := codeDir(templateDir, f)
	handler := f.Handler
	if handler == "" {
		handler = "bootstrap"
	}
	if !strings.HasPrefix(f.Runtime, "provided") && f.Runtime != "go1.x" && f.Runtime != "" {
		return "", fmt.Errorf("%w: %s: runtime %s is not supported (provided.al2023, provided.al2 and go1.x are)", ErrBuild, f.LogicalID, f.Runtime)
	}
	if strings.HasPrefix(f.Runtime, "provided") {
		handler = "bootstrap" // custom runtimes always start the bootstrap executable
	}
	var cmd *exec.Cmd
	switch strings.ToLower(f.BuildMethod) {
	case "makefile":
		if err := os.MkdirAll(out, 0o755); err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrBuild, f.LogicalID, err)
		}
		cmd = exec.CommandContext(ctx, "make", "--no-print-directory", "build-"+f.LogicalID,
			"ARTIFACTS_DIR="+out, "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	case "go1.x":
		if err := os.MkdirAll(out, 0o755); err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrBuild, f.LogicalID, err)
		}
		cmd = exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-o", filepath.Join(out, handler), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	case "":
		exe := filepath.Join(codeDir, handler)
		if st, err := os.Stat(exe); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w: %s has no Metadata.BuildMethod and %s is not an executable", ErrBuild, f.LogicalID, exe)
		}
		return exe, nil
	default:
		return "", fmt.Errorf("%w: %s: BuildMethod %q is not supported (makefile and go1.x are)", ErrBuild, f.LogicalID, f.BuildMethod)
	}
	cmd.Dir = codeDir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		output := strings.TrimSpace(buf.String())
		if len(output) > 8192 {
			output = "...\n" + output[len(output)-8192:]
		}
		return "", fmt.Errorf("%w: %s: %s in %s: %v\n%s", ErrBuild, f.LogicalID, strings.Join(cmd.Args, " "), codeDir, err, output)
	}
	if logs != nil && buf.Len() > 0 {
		logs.lines("[build "+f.LogicalID+"] ", strings.TrimSpace(buf.String()))
	}
	exe := filepath.Join(out, handler)
	if st, err := os.Stat(exe); err != nil || st.IsDir() {
		return "", fmt.Errorf("%w: %s: the build succeeded but did not produce %s", ErrBuild, f.LogicalID, exe)
	}
	return exe, nil
}

// codeDir is the function's CodeUri as a directory, relative to the
// template.
func codeDir(templateDir string, f sam.Function) string {
	uri := f.CodeURI
	if uri == "" {
		uri = "."
	}
	if filepath.IsAbs(uri) {
		return uri
	}
	return filepath.Join(templateDir, uri)
}
