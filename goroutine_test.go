package deferred

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGoFiresWithValue(t *testing.T) {
	v, err := Go(context.Background(), func(context.Context) (string, error) { return "hi", nil }).
		Await(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "hi", v)
}

func TestGoErrorAndPanicBecomeFailures(t *testing.T) {
	errBoom := errors.New("boom")
	_, err := Go(context.Background(), func(context.Context) (int, error) { return 0, errBoom }).
		Await(context.Background())
	assert.ErrorIs(t, err, errBoom)

	_, err = Go(context.Background(), func(context.Context) (int, error) { panic("kaboom") }).
		Await(context.Background())
	var f *Failure
	require.ErrorAs(t, err, &f)
	pv, ok := f.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "kaboom", pv)
	assert.Contains(t, f.Stack(), "TestGoErrorAndPanicBecomeFailures", "the stack is not the panic site's")
}

func TestGoRunsFAndChainOnNewGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		caller := timeGoroutineID()
		var fOn, chainOn string
		release := make(chan struct{})
		d := Go(t.Context(), func(context.Context) (int, error) {
			fOn = timeGoroutineID()
			<-release // Go must not wait for f
			return 1, nil
		})
		d.AddCallback(func(v int) (int, error) { chainOn = timeGoroutineID(); return v, nil })
		close(release)
		synctest.Wait()
		require.NotEmpty(t, fOn)
		assert.NotEqual(t, caller, fOn)
		assert.Equal(t, fOn, chainOn)
	})
}

func TestGoPassesChildContext(t *testing.T) {
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "v")
	var seen any
	var isParent bool
	_, err := Go(parent, func(ctx context.Context) (int, error) {
		seen, isParent = ctx.Value(key{}), ctx == parent
		return 0, nil
	}).Await(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "v", seen)
	assert.False(t, isParent)
}

func TestGoCancelFailsAtOnceAndDropsLateResult(t *testing.T) {
	// Repeated: f returns as soon as it sees its context end, racing
	// Cancel's own failing of the Deferred, which must always win.
	for range 200 {
		synctest.Test(t, func(t *testing.T) {
			var ctxErr atomic.Value
			d := Go(t.Context(), func(ctx context.Context) (int, error) {
				<-ctx.Done()
				ctxErr.Store(ctx.Err())
				return 99, nil
			})
			out := Capture(d)
			d.Cancel()
			fired, _, f := out.Get()
			require.True(t, fired, "Cancel did not fail the Deferred at once")
			require.ErrorIs(t, f, ErrCancelled)

			synctest.Wait() // f has returned and its goroutine ended
			require.Equal(t, context.Canceled, ctxErr.Load(), "Cancel did not cancel f's context")
			_, v, f := out.Get()
			require.ErrorIs(t, f, ErrCancelled)
			require.Zero(t, v)
		})
	}
}

func TestGoParentContextEndReachesF(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		d := Go(ctx, func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		})
		cancel()
		_, err := d.Await(context.Background())
		assert.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, ErrCancelled)
	})
}

func TestGoCancelAfterFReturnedChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := Go(t.Context(), func(context.Context) (int, error) { return 5, nil })
		synctest.Wait()
		d.Cancel()
		v, err := d.Await(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 5, v)
	})
}
