package testdb

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

const childEnv = "REVENANT_TEST_CHILD"

// MainOrChild runs main instead of the tests when the test binary was
// re-executed by RunChild; otherwise it is Main. Example programs use it to
// be tested as real processes that can crash.
func MainOrChild(m *testing.M, main func()) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	Main(m)
}

// RunChild re-executes the test binary as the program (see MainOrChild)
// with DATABASE_URL set to dsn, and returns its output and exit code.
func RunChild(t testing.TB, dsn string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL="+dsn)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("testdb: running child: %v\n%s", err, out)
	}
	return string(out), 0
}
