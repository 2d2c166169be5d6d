package providers

import "context"

// MetricValue is the answer to one analysis query: its value and how many
// series gave one (1 for a scalar). Whether the value is usable (exactly
// one series, a number) is for the planner to judge.
type MetricValue struct {
	Value  float64
	Series int
}

// MetricsQuerier evaluates PromQL instant queries at the current time
// against one metrics server (providers/prometheus). An error is an answer
// that could not be had: the server was unreachable, refused the query or
// answered with a type that is not a number.
type MetricsQuerier interface {
	Query(ctx context.Context, query string) (MetricValue, error)
}
