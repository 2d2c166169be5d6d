package alibaba_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/alibaba"
)

func TestReadWithHealthReadsBothOrOnlyServers(t *testing.T) {
	servers := func(context.Context) (string, error) { return "servers", nil }
	health := func(context.Context) (int, error) { return 7, nil }
	s, h, err, herr := alibaba.ReadWithHealth(context.Background(), true, servers, health)
	require.Equal(t, "servers", s)
	require.Equal(t, 7, h)
	require.NoError(t, err)
	require.NoError(t, herr)

	s, h, err, herr = alibaba.ReadWithHealth(context.Background(), false, servers,
		func(context.Context) (int, error) { t.Error("health read without a listener"); return 0, nil })
	require.Equal(t, "servers", s)
	require.Zero(t, h)
	require.NoError(t, err)
	require.NoError(t, herr)
}

func TestReadWithHealthCancelsTheHealthReadWhenServersFail(t *testing.T) {
	boom := errors.New("servers unavailable")
	_, _, err, herr := alibaba.ReadWithHealth(context.Background(), true,
		func(context.Context) (string, error) { return "", boom },
		func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
	require.ErrorIs(t, err, boom)
	require.ErrorIs(t, herr, context.Canceled, "the health read ends with the failed servers read")
}
