package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// diagnosticsDir is where a failed run keeps what is needed to diagnose it:
// build/e2e/ at the repository's root, a folder per failed test with the
// brokers' and the services' logs, and core dumps of crashed processes.
var diagnosticsDir = filepath.Join(repoRoot, "build", "e2e")

// allowCoreDumps raises this process's core size limit as far as it may go:
// the services it starts inherit it, so that a crash leaves a core (where
// the kernel's core_pattern writes one: "core" is the crashed process's
// working directory).
func allowCoreDumps() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_CORE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &lim)
	}
}

// testDir is build/e2e/<test>, where t's failure keeps its files.
func testDir(t *testing.T) string {
	return filepath.Join(diagnosticsDir, strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, t.Name()))
}

// keep writes content to build/e2e/<test>/<file> and says so in t's log.
func keep(t *testing.T, file, content string) {
	t.Helper()
	dir := testDir(t)
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644)
	}
	if err != nil {
		t.Logf("could not keep %s: %v", file, err)
		return
	}
	t.Logf("kept %s", filepath.Join("build", "e2e", filepath.Base(dir), file))
}

// keepCores moves core dumps left in dir to build/e2e/, with the binaries
// that made them, and returns how many it found.
func keepCores(dir string, binaries ...string) int {
	cores, _ := filepath.Glob(filepath.Join(dir, "core*"))
	if len(cores) == 0 {
		return 0
	}
	_ = os.MkdirAll(diagnosticsDir, 0o755)
	for _, c := range cores {
		_ = os.Rename(c, filepath.Join(diagnosticsDir, filepath.Base(dir)+"-"+filepath.Base(c)))
	}
	for _, b := range binaries {
		if data, err := os.ReadFile(b); err == nil {
			_ = os.WriteFile(filepath.Join(diagnosticsDir, filepath.Base(b)), data, 0o755)
		}
	}
	fmt.Printf("e2e: kept %d core dumps in build/e2e/\n", len(cores))
	return len(cores)
}
