package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain checks that no producer goroutine outlives the program's work.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunPrintsAPageAndAFallback(t *testing.T) {
	var out bytes.Buffer

	require.NoError(t, run(&out))

	assert.Equal(t, `/hello -> <html>hello, deferred!</html>
recovering from: /missing: not found
/missing -> <html>fallback</html>
`, out.String())
}
