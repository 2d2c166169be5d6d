package nacostest

import "go.uber.org/goleak"

// IgnoreSDKGoroutines returns goleak options for the goroutines that
// nacos-sdk-go v2.3.5 leaves behind after CloseClient, for the TestMain of
// packages whose tests use its naming client:
//
//   - every naming client starts a UDP push receiver for the 1.x protocol
//     (clients/naming_client/naming_http/push_receiver.go) whose read loop
//     checks its context only between packets, so it blocks forever;
//   - its file logger (lumberjack) runs a mill goroutine that never ends.
func IgnoreSDKGoroutines() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_http.(*PushReceiver).startServer.func1"),
		goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
	}
}
