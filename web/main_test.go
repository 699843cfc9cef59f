package web_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// cancelled or timed-out GetPage must not leave its request running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
