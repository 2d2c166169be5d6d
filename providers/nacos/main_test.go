package nacos_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/nacostest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(nacostest.SharedMain(m), nacostest.IgnoreSDKGoroutines()...)
}
